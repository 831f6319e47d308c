"""SharedReads: one read of the trials serves the reads that follow it for a moment."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from nnsearch.search.shared_reads import share_reads


@pytest.fixture
def study(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    yield study
    storage.engine.dispose()


def other_process(study: optuna.Study) -> optuna.Study:
    """The same study through a storage of its own (as another worker sees it)."""
    return optuna.load_study(study_name="s", storage=study._storage._backend.url)


def test_reads_within_the_window_are_shared(study):
    reads = share_reads(study, window=60)
    study.enqueue_trial({"x": 1})
    assert len(study.get_trials()) == 1
    other_process(study).enqueue_trial({"x": 2})  # a change this process does not make
    assert len(study.get_trials()) == 1, "answered from the first read"
    assert (reads.reads, reads.shared) == (1, 1)
    reads.expire()
    assert len(study.get_trials()) == 2
    assert reads.reads == 2


def test_the_window_bounds_how_old_a_view_is(study, monkeypatch):
    now = [100.0]
    monkeypatch.setattr("nnsearch.search.shared_reads.time.monotonic", lambda: now[0])
    share_reads(study, window=1.0)
    assert study.get_trials() == []
    other_process(study).enqueue_trial({"x": 1})
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
        assert worker.reads.shared > 0, "reads within a trial were shared"
    assert seen == [(0, 0), (1, 1), (2, 2), (4, 4), (5, 5)]


def test_states_and_copies_are_honoured(study):
    reads = share_reads(study, window=60)
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


def test_remove_puts_the_storage_back(study):
    reads = share_reads(study, window=60)
    reads.remove()
    study.get_trials()
    study.get_trials()
    assert reads.reads == 0
    study.enqueue_trial({"x": 1})
    assert len(study.get_trials()) == 1
