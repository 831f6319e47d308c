"""The trial's record: seeds, sampler-seed offsets, the worker's identity."""

import os
import socket

import pytest
from optuna.trial import TrialState, create_trial

from nnsearch.search import record


def test_trial_seed_depends_only_on_study_seed_and_number():
    assert record.trial_seed(1, 5) == record.trial_seed(1, 5)
    assert len({record.trial_seed(1, n) for n in range(100)}) == 100
    assert record.trial_seed(1, 5) != record.trial_seed(2, 5)
    assert all(0 <= record.trial_seed(s, 0) < 2**31 for s in (-1, 0, 2**32 - 1, 2**40))


def test_every_worker_and_restart_gets_its_own_sampler_offset():
    # Worker 1000's first run and worker 0's first restart used to share an offset.
    offsets = [record.seed_offset(i, r) for i in range(3000) for r in range(5)]
    assert len(set(offsets)) == len(offsets)
    assert min(offsets) >= 1  # offset 0 would sample like the study's own sampler
    assert record.seed_offset(1000, 0) != record.seed_offset(0, 1)
    # Hand-started workers sit in the upper half of the seed space, away from a run's.
    standalone = record.standalone_offset("host:123")
    assert standalone >= 2**31 > max(offsets)


@pytest.mark.parametrize("study_seed", [0, 42, -1, 2**32 - 1, 2**32, 2**40])
def test_sampler_seeds_are_valid_for_any_study_seed(study_seed):
    for offset in (1, record.seed_offset(7, 3), record.standalone_offset("h:1")):
        assert 0 <= record.sampler_seed(study_seed, offset) < 2**32


def test_worker_identity_and_worker_written_trials():
    assert record.worker_id() == f"{socket.gethostname()}:{os.getpid()}"
    assert record.worker_id(12) == f"{socket.gethostname()}:12"
    written = {key: 1 for key in record.RESULT_KEYS}
    assert record.written_by_worker(create_trial(value=1.0, user_attrs=written))
    for key in record.RESULT_KEYS:  # e.g. a value set through the dashboard
        partial = {k: v for k, v in written.items() if k != key}
        trial = create_trial(value=1.0, user_attrs=partial, state=TrialState.COMPLETE)
        assert not record.written_by_worker(trial)


def test_a_waiting_retry_holds_its_place_in_the_budget():
    # Trial 0 failed and its retry, trial 1, waits; trial 2 is created meanwhile. When the
    # retry runs it counts only the trials below it, so trial 2 must count the retry.
    import optuna

    from nnsearch.search.counting import trials_ahead

    study = optuna.create_study()
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({})
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]
    assert trials_ahead(study, 2) == 1
    assert trials_ahead(study, 1) == 0  # the failed trial holds no place
