"""WorkerStorage: the trial a worker runs is written in two transactions, and stored
exactly as Optuna's one-write-per-change path stores it; one read of the trials serves
the reads that follow it for a moment."""

from __future__ import annotations

import time

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from nnsearch.search._optuna import cached_storage, rdb_of
from nnsearch.search.objective import record_attrs
from nnsearch.search.worker_storage import WorkerStorage, training_ends, training_starts


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("pg_url")
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=60)
    yield storage
    storage.engine.dispose()


def worker_study(storage: optuna.storages.RDBStorage, name: str, **kwargs
                 ) -> tuple[optuna.Study, WorkerStorage]:
    """A study as a worker opens it: through a WorkerStorage."""
    ours = WorkerStorage(cached_storage(storage), rdb_of(storage))
    return optuna.create_study(study_name=name, storage=ours, **kwargs), ours


def elsewhere(storage: optuna.storages.RDBStorage, name: str) -> optuna.Study:
    """The study as another process sees it (a storage of its own)."""
    return optuna.load_study(study_name=name, storage=storage.url)


def heartbeats(storage: optuna.storages.RDBStorage) -> int:
    with storage.engine.connect() as connection:
        return connection.execute(sqlalchemy.text("SELECT count(*) FROM trial_heartbeats")) \
            .scalar_one()


def objective(trial: optuna.Trial, seen: dict | None = None,
              storage: optuna.storages.RDBStorage | None = None) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    n = trial.suggest_int("n", 1, 4)
    act = trial.suggest_categorical("act", ["relu", "tanh"])
    record_attrs(trial, {"worker": "w1", "shape": [n, 2]})
    trial.set_user_attr("direct", True)
    trial.set_constraint("size", n - 3.0)
    training_starts(trial)
    if seen is not None:  # what another process sees once training starts
        seen["during"] = elsewhere(storage, trial.study.study_name).trials[trial.number]
    for step in range(3):
        trial.report(x + step, step)
    record_attrs(trial, {"result": x, "act": act})
    return x * n


def comparable(t: optuna.trial.FrozenTrial) -> tuple:
    return (t.state, t.values, t.params, t.distributions, t.user_attrs,
            {k: v for k, v in t.system_attrs.items()}, t.intermediate_values)


def test_a_trial_is_stored_as_optuna_stores_it_in_two_transactions(storage):
    plain = optuna.create_study(study_name="plain", storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=3))
    plain.optimize(objective, n_trials=3)
    kept, own = worker_study(storage, "kept", sampler=optuna.samplers.RandomSampler(seed=3))
    seen: dict = {}
    kept.optimize(lambda t: objective(t, seen, storage), n_trials=3)
    assert own.transactions == 3 * 2, "training starts, and the result with its state"
    for a, b in zip(plain.trials, elsewhere(storage, "kept").trials, strict=True):
        assert comparable(a) == comparable(b)
        assert b.constraints == a.constraints
        # stored in Optuna's convention (naive UTC, read back as local time)
        assert abs((b.datetime_complete - a.datetime_complete).total_seconds()) < 60
    during = seen["during"]
    assert during.state == TrialState.RUNNING and set(during.params) == {"x", "n", "act"}
    assert during.user_attrs == {"worker": "w1", "shape": during.user_attrs["shape"],
                                 "direct": True}
    assert heartbeats(storage) == 3 + 3, "each trial's first beat (with its first writes)"


def test_a_trial_is_created_with_its_worker_s_claim_and_an_enqueued_one_is_not(storage):
    study, own = worker_study(storage, "s")
    claim = {"nnsearch.created_by": ["host:1", "tag"]}
    own.claim = claim
    seen = []

    def objective(trial):  # before its first writes, as another process sees it
        seen.append(elsewhere(storage, "s").trials[trial.number])
        trial.suggest_float("x", 0, 1)
        training_starts(trial)
        return 1.0

    study.optimize(objective, n_trials=1)
    study.enqueue_trial({"x": 0.5})
    study.optimize(objective, n_trials=1)
    assert seen[0].state == TrialState.RUNNING and seen[0].params == {}
    assert seen[0].user_attrs == claim, "in the creation's own transaction"
    assert seen[1].user_attrs == {}, "an enqueued trial is not created here"
    stored = elsewhere(storage, "s").trials
    assert stored[0].user_attrs == claim and stored[0].params.keys() == {"x"}
    assert own.transactions == 2 + 2, "the claim costs no transaction of its own"


def test_a_trial_pruned_ends_on_its_last_report_and_a_failed_one_keeps_its_record(storage):
    study, _ = worker_study(storage, "s")

    def pruned(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        trial.report(0.5, 0)
        trial.report(0.25, 4)
        record_attrs(trial, {"why": "pruned"})
        raise optuna.TrialPruned()

    def failing(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        record_attrs(trial, {"why": "failed"})
        raise RuntimeError("boom")

    study.optimize(pruned, n_trials=1)
    study.optimize(failing, n_trials=1, catch=(RuntimeError,))
    first, second = elsewhere(storage, "s").trials
    assert (first.state, first.value, first.intermediate_values) == \
        (TrialState.PRUNED, 0.25, {0: 0.5, 4: 0.25})
    assert first.user_attrs == {"why": "pruned"} and "x" in first.params
    assert (second.state, second.user_attrs) == (TrialState.FAIL, {"why": "failed"})


def test_a_trial_a_sweeper_ended_meanwhile_is_left_as_the_sweeper_left_it(storage, caplog):
    study, _ = worker_study(storage, "s")

    def swept(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        training_starts(trial)
        other = elsewhere(storage, "s")
        other._storage.set_trial_state_values(other.trials[0]._trial_id, TrialState.FAIL)
        record_attrs(trial, {"result": 1})
        return 1.0

    study.optimize(swept, n_trials=1)  # (Optuna's optimize would fail on an exception)
    (trial,) = elsewhere(storage, "s").trials
    assert trial.state == TrialState.FAIL and trial.user_attrs == {}
    assert "ended by the sweeper before its result was stored" in caplog.text


def test_an_enqueued_trial_taken_here_is_kept_too_and_other_storages_go_optuna_s_way(
        storage):
    study, own = worker_study(storage, "s")
    study.enqueue_trial({"x": 0.5})
    study.optimize(objective, n_trials=1)  # a WAITING trial, taken from the queue
    assert own.transactions == 2
    (stored,) = elsewhere(storage, "s").trials
    assert stored.params["x"] == 0.5 and stored.user_attrs["result"] == 0.5
    assert stored.intermediate_values == {0: 0.5, 1: 1.5, 2: 2.5}
    # in memory: no RDB parts, every write goes to the storage as it is made
    memory = WorkerStorage(optuna.storages.InMemoryStorage(), None)
    in_memory = optuna.create_study(storage=memory)
    in_memory.optimize(objective, n_trials=2)
    assert memory.transactions == 0 and in_memory.trials[1].user_attrs["result"] is not None


def test_a_sampler_slower_than_a_heartbeat_has_its_trial_written_by_the_next_beat(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}",
                                         heartbeat_interval=1)
    study, _ = worker_study(storage, "s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # x is known now
    seen = []
    # another process's storage, opened before the trial: opening one takes a second
    # or more on a loaded machine, and the next beat (at 1 s) writes what is kept back
    other = optuna.storages.RDBStorage(str(storage.url))

    def slow(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        record_attrs(trial, {"worker": "w1"})
        seen.append(optuna.load_study(study_name="s", storage=other).trials[1])  # kept back
        time.sleep(1.6)  # sampling on: the thread beats again at 1 s
        seen.append(optuna.load_study(study_name="s", storage=other).trials[1])
        return 1.0

    study.optimize(slow, n_trials=1)
    assert (seen[0].params, seen[0].user_attrs) == ({}, {})
    assert "x" in seen[1].params and seen[1].user_attrs == {"worker": "w1"}
    assert heartbeats(storage) == 1  # (the first trial ended before any flush: none)
    storage.engine.dispose()
    other.engine.dispose()


def test_a_value_optuna_would_refuse_fails_the_trial_where_optuna_did(storage):
    study, _ = worker_study(storage, "s")

    def bad(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        record_attrs(trial, {"not json": object()})
        return 1.0

    study.optimize(bad, n_trials=1, catch=(TypeError,))  # not the worker's end
    (trial,) = elsewhere(storage, "s").trials
    assert trial.state == TrialState.FAIL


def test_while_it_trains_a_pruner_s_records_are_written_at_once(storage):
    study, _ = worker_study(storage, "s")
    seen = []

    def rungs(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        trial.storage.set_trial_system_attr(trial._trial_id, "before", 1)  # kept
        training_starts(trial)
        trial.storage.set_trial_system_attr(trial._trial_id, "rung_0", 0.5)  # a pruner's
        seen.append(elsewhere(storage, "s").trials[0].system_attrs)
        assert trial.storage.get_trial_system_attrs(trial._trial_id)["rung_0"] == 0.5
        training_ends(trial)
        record_attrs(trial, {"result": 1})
        trial.storage.set_trial_system_attr(trial._trial_id, "after", 2)  # (an artifact's)
        seen.append(elsewhere(storage, "s").trials[0])
        return 1.0

    study.optimize(rungs, n_trials=1)
    assert seen[0] == {"before": 1, "rung_0": 0.5}
    assert seen[1].system_attrs == {"before": 1, "rung_0": 0.5}, "after training: kept"
    assert seen[1].user_attrs == {}, "the result waits for the trial's state"
    stored = elsewhere(storage, "s").trials[0]
    assert stored.system_attrs == {"before": 1, "rung_0": 0.5, "after": 2}
    assert stored.user_attrs == {"result": 1}


def test_optuna_s_read_back_of_a_told_trial_is_answered_from_its_copy(storage):
    study, own = worker_study(storage, "s")
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    training_starts(trial)
    trial.report(0.5, 0)
    told = study.tell(trial, 0.25)  # Optuna reads the trial back: no read of the storage
    stored = own.base.get_trial(trial._trial_id)
    assert own.transactions == 2 and comparable(stored) == comparable(told)
    assert abs((stored.datetime_complete - told.datetime_complete).total_seconds()) < 60
    assert (told.state, told.values, told.intermediate_values) == (
        TrialState.COMPLETE, [0.25], {0: 0.5})
    study.ask()  # the next trial: the last one is read from the storage again
    assert own.get_trial(trial._trial_id) == stored


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # (ask outside optimize)
def test_a_heartbeat_that_cannot_write_the_first_writes_does_not_end_the_thread(
        tmp_path, caplog, monkeypatch):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}",
                                         heartbeat_interval=60)
    study, own = worker_study(storage, "s")
    trial_id = study.ask()._trial_id
    monkeypatch.setattr(own.rdb, "write", lambda *a, **k: (_ for _ in ()).throw(
        OSError("the storage is away")))
    own.record_heartbeat(trial_id)  # the first beat: kept
    own.record_heartbeat(trial_id)  # the second: tries to write them, and says so
    assert "first writes not recorded by its heartbeat (the storage is away)" in caplog.text
    storage.engine.dispose()


# ----- shared reads ------------------------------------------------------------

@pytest.fixture
def plain(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    yield storage
    storage.engine.dispose()


def reading(storage: optuna.storages.RDBStorage, window: float
            ) -> tuple[optuna.Study, WorkerStorage]:
    ours = WorkerStorage(cached_storage(storage), rdb_of(storage), window=window)
    return optuna.create_study(study_name="s", storage=ours), ours


def other_process(storage: optuna.storages.RDBStorage) -> optuna.Study:
    """The same study through a storage of its own (as another worker sees it)."""
    return optuna.load_study(study_name="s", storage=storage.url)


def test_reads_within_the_window_are_shared(plain):
    study, reads = reading(plain, window=60)
    study.enqueue_trial({"x": 1})
    assert len(study.get_trials()) == 1
    other_process(plain).enqueue_trial({"x": 2})  # a change this process does not make
    assert len(study.get_trials()) == 1, "answered from the first read"
    assert (reads.reads, reads.shared) == (1, 1)
    reads.expire()
    assert len(study.get_trials()) == 2
    assert reads.reads == 2


def test_the_window_bounds_how_old_a_view_is(plain, monkeypatch):
    now = [100.0]
    monkeypatch.setattr("nnsearch.search.worker_storage.time.monotonic", lambda: now[0])
    study, _ = reading(plain, window=1.0)
    assert study.get_trials() == []
    other_process(plain).enqueue_trial({"x": 1})
    now[0] += 0.9
    assert study.get_trials() == []
    now[0] += 0.2
    assert len(study.get_trials()) == 1


def test_each_trial_a_worker_starts_sees_every_trial_finished_before_it(tmp_path,
                                                                      monkeypatch):
    # One read of the trials serves a second, but each trial's sampler (and pruner)
    # starts from a fresh one: its own last trial, and others', are in it.
    from nnsearch.search.objective import Objective
    from nnsearch.search.study import open_study, target_from_args
    from nnsearch.search.worker import Worker
    from tests.helpers import run_cli, write_study

    seen = []

    def objective(self, trial):
        seen.append((trial.number, len(trial.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,)))))
        if trial.number == 2:  # meanwhile, another process adds a finished trial
            other = optuna.load_study(study_name="small", storage=f"sqlite:///{db}")
            other.add_trial(optuna.trial.create_trial(value=0.5))
        return 0.5

    path = write_study(tmp_path / "small.toml", trials=6)
    db = tmp_path / "small.db"
    assert run_cli("create", str(path), cwd=tmp_path).returncode == 0
    target = target_from_args(str(path), None, None)
    with open_study(target, heartbeat=True, sampler_offset=0) as opened:
        monkeypatch.setattr(Objective, "__call__", objective)
        worker = Worker(opened, 6, None)  # the added trial takes number 3, and a slot
        assert worker.run() == 5
        assert worker.storage.shared > 0, "reads within a trial were shared"
    assert seen == [(0, 0), (1, 1), (2, 2), (4, 4), (5, 5)]


def test_states_and_copies_are_honoured(plain):
    study, reads = reading(plain, window=60)
    study.tell(study.ask(), 1.0)
    study.ask()
    reads.expire()
    assert [t.state for t in study.get_trials(states=(TrialState.RUNNING,))] \
        == [TrialState.RUNNING]
    copy = study.get_trials(deepcopy=True)[0]
    copy.user_attrs["x"] = 1
    assert study.get_trials(deepcopy=False)[0].user_attrs == {}, "a deep copy is a copy"
    shared = study.get_trials(deepcopy=False)
    shared.pop()
    assert len(study.get_trials(deepcopy=False)) == 2, "the list itself is never handed out"
