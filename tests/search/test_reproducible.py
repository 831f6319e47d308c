"""[sampler] reproducible = true: the same trials with 1, 2 or 4 workers (issue #28)."""

import json
import os
import signal

import optuna
import pytest
from optuna.trial import TrialState

from nnsearch.search import record
from nnsearch.search.reproducible import LAG, final_trials, logical_numbers
from tests.helpers import run_cli
from tests.search.worker_runs import (
    run_to_its_end,
    running_with_worker,
    trials,
    wait_for,
    worker_pid,
)

STUDY = """
[study]
name = "rep"
metric = "val_loss"
seed = 9

[sampler]
name = "tpe"
n_startup_trials = 4
multivariate = true
group = true
constant_liar = true
reproducible = true

[pruner]
name = "median"
n_startup_trials = 3
n_warmup_steps = 2

[data]
source = "{source}"

[budget]
trials = {trials}

[space]
n_layers = {{ low = 1, high = 2 }}
width = {{ low = {low}, high = {width}, log = true }}
activation = ["relu", "tanh"]
learning_rate = {{ low = 1e-4, high = 1e-1, log = true }}
dropout = {{ low = 0.0, high = 0.3 }}
epochs = {epochs}
patience = {patience}
"""


def _study(path, source="iris", trials=LAG + 14, width=32, epochs=30, patience="5", low=8,
           queued=0):
    """The study file; ``queued``: that many [[enqueue]] tables naming every parameter
    (trials that sample nothing, and wait for their view only for the pruner)."""
    tables = "".join(f'\n[[enqueue]]\nn_layers = {1 + i % 2}\nwidth = {low + i}\n'
                     f'activation = "relu"\nlearning_rate = {0.001 * (i + 1)}\n'
                     "dropout = 0.0\n" for i in range(queued))
    path.write_text(STUDY.format(source=source, trials=trials, width=width, epochs=epochs,
                                 patience=patience, low=low) + tables)
    return path


def table(url: str) -> dict[int, tuple]:
    """The trials as they ended, by logical number: state, value, params."""
    ts = [t for t in trials(url, "rep")]
    logical = logical_numbers(ts)
    out = {}
    for t in ts:
        if t.state == TrialState.FAIL:
            continue
        assert logical[t.number] not in out, "one final trial per logical number"
        out[logical[t.number]] = (t.state.name, t.value, json.dumps(t.params, sort_keys=True))
    return out


def test_logical_numbers_skip_retries_and_a_retry_ends_its_first_try():
    study = optuna.create_study()
    for _ in range(3):
        t = study.ask()
        if t.number == 1:
            study.tell(t, state=TrialState.FAIL)
        else:
            study.tell(t, 1.0)
    record.RETRY(study, study.get_trials()[1])  # trial 3: a retry of 1, waiting
    study.tell(study.ask(), 0.5)  # it runs (3), then a fresh trial (4)
    study.tell(study.ask(), 0.25)
    ts = study.get_trials()
    assert logical_numbers(ts) == {0: 0, 1: 1, 2: 2, 3: 1, 4: 3}
    view = final_trials(ts, 4)
    assert [(t.number, t.value) for t in view] == [(0, 1.0), (1, 0.5), (2, 1.0), (3, 0.25)]
    assert final_trials(ts, 5) is None  # logical 4 does not exist yet
    t = study.ask()  # trial 5, logical 4, running: not final
    assert final_trials(study.get_trials(), 5) is None
    study.tell(t, state=TrialState.FAIL)  # failed, no retry to come: final, as failed
    assert final_trials(study.get_trials(), 5)[4].state == TrialState.FAIL
    record.RETRY(study, study.get_trials()[5])  # a retry to come: not final any more
    assert final_trials(study.get_trials(), 5) is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_one_two_and_four_workers_give_the_same_trials(tmp_path, backend, request):
    """Sampled trials, and (SQLite) trials queued with all of their parameters first,
    past the lag, whose views are waited for where the pruner first asks."""
    study = _study(tmp_path / "rep.toml", queued=LAG + 3 if backend == "sqlite" else 0)
    runs = [(1, f"sqlite:///{tmp_path / 'w1.db'}")]
    if backend == "sqlite":
        runs += [(w, f"sqlite:///{tmp_path / f'w{w}.db'}") for w in (2, 4)]
    else:  # (one database: 4 workers there)
        runs.append((4, request.getfixturevalue("pg_url")))
    tables = []
    for workers, url in runs:
        res = run_cli("run", str(study), "--workers", str(workers), "--storage", url,
                      cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        tables.append(table(url))
        assert len(tables[-1]) == LAG + 14
    assert all(t == tables[0] for t in tables[1:])
    states = {s for s, _, _ in tables[0].values()}
    assert "PRUNED" in states and "COMPLETE" in states  # the pruner decided, the same way
    assert len({p for _, _, p in tables[0].values()}) == LAG + 14  # (all different)
    status = run_cli("status", str(study), "--storage", runs[-1][1], "--json", cwd=tmp_path)
    assert json.loads(status.stdout)["reproducible"] is True


def test_a_killed_and_resumed_worker_gives_the_same_trials(tmp_path):
    """Every trial queued whole: the killed trial's retry is queued behind the others,
    and taken first (its logical number is the lowest), not waited for by them all."""
    study = _study(tmp_path / "rep.toml", source="digits", trials=LAG + 2, low=512,
                   width=1024, epochs=60, patience='"none"',
                   queued=LAG + 2)  # (two layers: trials of two seconds or more)
    plain = f"sqlite:///{tmp_path / 'plain.db'}"
    res = run_cli("run", str(study), "--workers", "1", "--storage", plain, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    killed = f"sqlite:///{tmp_path / 'killed.db'}"
    with run_to_its_end(tmp_path, str(study), "--workers", "2", "--storage", killed):
        wait_for(lambda: sum(t.state == TrialState.COMPLETE for t in trials(killed, "rep"))
                 >= 1, what="a finished trial")
        victim = wait_for(lambda: running_with_worker(killed, "rep"), what="a running trial")
        os.kill(worker_pid(victim), signal.SIGKILL)
    assert any(t.state == TrialState.FAIL for t in trials(killed, "rep"))
    assert table(killed) == table(plain)


@pytest.mark.parametrize("how", ["flag", "file"])
def test_a_reproducible_study_with_a_timeout_is_refused(tmp_path, how):
    study = _study(tmp_path / "rep.toml")
    args = ["--timeout", "30"]
    if how == "file":
        study.write_text(study.read_text().replace("\ntrials = ", "\ntimeout = 30\ntrials = "))
        args = []
    res = run_cli("run", str(study), *args, cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "reproducible" in lines[0] and "clock" in lines[0], res.stderr
    assert not (tmp_path / "rep.db").exists() or not trials(
        f"sqlite:///{tmp_path / 'rep.db'}", "rep")


def test_a_queued_trial_waits_for_its_view_only_where_the_pruner_needs_it():
    """A trial queued with all of its parameters samples nothing: it starts at once, and
    waits for trials 0 .. n - LAG - 1 to end only when the pruner is first asked
    (``hold_view``); its logical number is known at its start."""
    import threading

    from nnsearch.search.reproducible import (
        LaggedSampler,
        LaggedStorage,
        hold_view,
        logical_number,
    )

    storage = LaggedStorage(optuna.storages.InMemoryStorage(), None)
    sampler = LaggedSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), 0, storage)
    study = optuna.create_study(storage=storage, sampler=sampler)
    first = study.ask()  # trial 0: its view is empty, and final
    first.suggest_float("x", 0.0, 1.0)
    storage.drop_view()
    for _ in range(LAG):
        study.add_trial(optuna.trial.create_trial(
            value=1.0, params={"x": 0.5},
            distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)}))
    study.enqueue_trial({"x": 0.25})
    queued = study.ask()  # trial LAG + 1: its view, trial 0, is still running
    frozen = storage.get_trial(queued._trial_id)
    assert logical_number(queued, frozen) == LAG + 1
    assert queued.suggest_float("x", 0.0, 1.0) == 0.25 and storage.view is None

    asked = threading.Thread(target=hold_view, args=(queued, lambda: frozen), daemon=True)
    asked.start()
    asked.join(1.0)
    assert asked.is_alive(), "it waits for trial 0"
    study.tell(first, 2.0)
    asked.join(10.0)
    assert not asked.is_alive()
    assert [(t.number, t.value) for t in storage.view] == [(0, 2.0)]
    sampler.stop.set()


def test_waiting_trials_are_taken_by_logical_number_a_retry_first():
    """A retry of a dead worker's trial is queued behind the trials queued before it;
    the worker takes the waiting trial with the lowest logical number first (taken in
    Optuna's order, the trials queued before it could all wait for it, holding every
    worker)."""
    from nnsearch.search.reproducible import LaggedStorage

    storage = LaggedStorage(optuna.storages.InMemoryStorage(), None)
    study = optuna.create_study(storage=storage)
    for _ in range(3):
        study.tell(study.ask(), 1.0)
    study.tell(study.ask(), state=TrialState.FAIL)  # trial 3: its worker died
    study.enqueue_trial({"x": 0.1})  # trials 4 and 5, queued before its retry
    study.enqueue_trial({"x": 0.2})
    record.RETRY(study, study.get_trials()[3])  # trial 6: logical number 3
    taken = []
    for _ in range(3):
        storage.queue_in_order(study.study_name)
        taken.append(study.ask().number)
        storage.next_taken = None
    assert taken == [6, 4, 5]
