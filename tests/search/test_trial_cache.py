"""The reading commands' storage (search/trial_cache.py): the trials Optuna reads, with
the finished ones read once and the changed ones again."""

import warnings

import optuna
import pytest
from optuna.trial import TrialState

from nnsearch.search.trial_cache import TrialCache


@pytest.fixture
def storage(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    yield storage
    storage.engine.dispose()


def _ask(study, n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}) for _ in range(n)]


def test_later_reads_see_new_and_finished_trials_and_keep_the_finished_ones(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    first, second, third = _ask(study, 3)
    study.tell(first, 1.0)
    cache = TrialCache(storage)
    ours = optuna.load_study(study_name="s", storage=cache)
    study_id = storage.get_study_id_from_name("s")
    assert ours.trials == study.trials
    kept = cache.get_all_trials(study_id, deepcopy=False)[0]
    study.tell(second, 2.0)
    study.tell(third, state=TrialState.PRUNED)
    (fourth,) = _ask(study, 1)
    study.tell(fourth, 0.5)
    assert ours.trials == study.trials and ours.best_trial.number == 3
    assert cache.get_all_trials(study_id, deepcopy=False)[0] is kept, "read once"
    assert [t.number for t in ours.get_trials(states=(TrialState.PRUNED,))] == [2]
    assert cache.get_trial(kept._trial_id) == kept
    assert cache.reads(study_id) >= 3


def test_another_storage_is_read_through_optuna_s_own(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(_ask(study, 1)[0], 1.0)
    cache = TrialCache(storage)
    assert cache.rdb is None
    assert optuna.load_study(study_name="s", storage=cache).trials == study.trials


def test_a_large_study_is_read_with_the_best_and_latest_learning_curves_only(storage,
                                                                             monkeypatch):
    from nnsearch.search import trial_cache

    monkeypatch.setattr(trial_cache, "CURVES_FROM", 6)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for value in [5.0, 1.0, 9.0, 2.0, 3.0, 4.0, 0.5]:
        (trial,) = _ask(study, 1)
        trial.report(value, 1)
        study.tell(trial, value)
    (running,) = _ask(study, 1)
    running.report(0.0, 1)
    study_id = storage.get_study_id_from_name("s")
    read = TrialCache(storage, curves=2).get_all_trials(study_id, deepcopy=False)
    assert [t.number for t in read if t.intermediate_values] == [0, 2, 6, 7], \
        "the 2 best (9.0, 5.0), the 2 latest (one running) and every running one"
    assert [t.values for t in read] == [t.values for t in study.trials]
    for mine, theirs in zip(read, study.trials, strict=True):  # all else the same
        assert (mine.number, mine.state, mine.params, mine.user_attrs, mine.datetime_start,
                mine.datetime_complete) == (theirs.number, theirs.state, theirs.params,
                                            theirs.user_attrs, theirs.datetime_start,
                                            theirs.datetime_complete)
    assert TrialCache(storage).get_all_trials(study_id, deepcopy=False) == study.trials


def test_a_first_read_of_finished_trials_reads_those_alone(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    first, second, _running = _ask(study, 3)
    study.tell(first, 1.0)
    study.tell(second, state=TrialState.PRUNED)
    cache = TrialCache(storage)
    study_id = storage.get_study_id_from_name("s")
    complete = cache.get_all_trials(study_id, states=(TrialState.COMPLETE,))
    assert complete == study.get_trials(states=(TrialState.COMPLETE,))
    assert cache.reads(study_id) == 0, "not kept: the next read reads all"
    assert cache.get_all_trials(study_id) == study.trials and cache.reads(study_id) == 1
    assert cache.get_all_trials(study_id, states=(TrialState.PRUNED,)) == [study.trials[1]]
    assert cache.reads(study_id) == 2, "once it holds the study, from what it holds"


def test_run_s_supervisor_sweeps_stale_trials_through_it(tmp_path):
    """``run``'s supervisor reads through a TrialCache and fails a trial whose heartbeat
    stopped (Optuna's sweep asks the study's storage for its heartbeat)."""
    import sqlalchemy

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'h.db'}",
                                         heartbeat_interval=1, grace_period=2)
    try:
        study = optuna.load_study(study_name=optuna.create_study(
            study_name="s", storage=storage).study_name, storage=TrialCache(storage))
        (trial,) = _ask(study, 1)
        storage.record_heartbeat(trial._trial_id)
        with storage.engine.begin() as connection:
            connection.execute(sqlalchemy.text(
                "UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour')"))
        optuna.storages.fail_stale_trials(study)
        assert study.trials[0].state == TrialState.FAIL
        assert TrialCache(optuna.storages.RDBStorage(
            f"sqlite:///{tmp_path / 'h.db'}")).get_heartbeat_interval() is None
    finally:
        storage.engine.dispose()


def test_a_deleted_study_is_forgotten(storage):
    cache = TrialCache(storage)
    study = optuna.create_study(study_name="s", storage=cache)
    study.tell(_ask(study, 1)[0], 1.0)
    assert len(study.trials) == 1
    optuna.delete_study(study_name="s", storage=cache)
    again = optuna.create_study(study_name="s", storage=cache)
    assert again.trials == []
