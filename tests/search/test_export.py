"""pick_trial: the best worker-written trial, its tie-breaks, and what it refuses."""

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from nnsearch.search import record
from nnsearch.search.errors import UsageError
from nnsearch.search.export import pick_trial

WRITTEN = {key: 1 for key in record.RESULT_KEYS}


def study_with(direction, *trials):
    """trials: (value, val_loss or None, worker-written?, state)."""
    study = optuna.create_study(direction=direction)
    for value, loss, written, state in trials:
        attrs = dict(WRITTEN) if written else {}
        if loss is not None:
            attrs[record.VAL_LOSS] = loss
        study.add_trial(create_trial(state=state, value=value if state == TrialState.COMPLETE
                                     else None, user_attrs=attrs))
    return study


C, P, F = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL


@pytest.mark.parametrize(("direction", "trials", "best"), [
    ("maximize", [(0.9, 0.3, True, C), (0.95, 0.4, True, C), (0.93, 0.1, True, C)], 1),
    ("minimize", [(0.9, 0.3, True, C), (0.95, 0.4, True, C), (0.93, 0.1, True, C)], 0),
    # equal values: the lower validation loss wins
    ("maximize", [(0.95, 0.3, True, C), (0.95, 0.2, True, C), (0.95, 0.25, True, C)], 1),
    # equal values and losses: the earlier trial
    ("maximize", [(0.9, 0.1, True, C), (0.95, 0.2, True, C), (0.95, 0.2, True, C)], 1),
    # a missing loss ranks after any known loss
    ("maximize", [(0.95, None, True, C), (0.95, 0.9, True, C)], 1),
    # a better value not written by a worker (e.g. set in the dashboard) is skipped
    ("maximize", [(0.9, 0.3, True, C), (0.99, 0.1, False, C), (0.5, 0.1, True, P)], 0),
])
def test_the_best_trial_and_its_tie_breaks(direction, trials, best):
    chosen, skipped = pick_trial(study_with(direction, *trials), None)
    assert chosen.number == best
    assert skipped == [i for i, t in enumerate(trials) if t[3] == C and not t[2]]


def test_a_trial_by_number_must_be_a_worker_written_completed_one():
    study = study_with("maximize", (0.9, 0.3, True, C), (None, 0.1, True, P),
                       (0.99, 0.1, False, C))
    assert pick_trial(study, 0)[0].number == 0
    for number, words in ((1, "is PRUNED"), (2, "not a completed trial written by a worker"),
                          (7, r"has no trial 7 \(trials are numbered 0..2\)")):
        with pytest.raises(UsageError, match=words):
            pick_trial(study, number)


def test_nothing_to_export_says_why():
    with pytest.raises(UsageError, match="none complete but 1 not written by a worker"):
        pick_trial(study_with("maximize", (0.9, 0.3, False, C), (None, None, True, F)), None)
    with pytest.raises(UsageError, match=r"0 trial\(s\) of its own, none complete"):
        pick_trial(optuna.create_study(), None)


@pytest.mark.parametrize(("rechecked", "best"), [
    ({}, 1),  # by the trials' own values
    ({"1": [0.97, 0.90, 0.91], "2": [0.96, 0.96, 0.95], "0": [0.95, 0.95, 0.95]}, 2),
    ({"1": [0.97, 0.97, 0.96], "2": [0.96, 0.96, 0.95]}, 1),  # the re-check agrees
    ({"0": [0.95, 0.99, 0.99]}, 1),  # a stale re-check (trial 1 came later) is not used
    # a seed that diverged (None) ranks the trial last, whatever its other values
    ({"1": [0.97, 0.99, None], "2": [0.96, 0.90, 0.90], "0": [0.95, 0.95, 0.95]}, 0),
])
def test_the_recheck_changes_the_pick_when_its_mean_says_so(rechecked, best):
    from nnsearch.search.export import RECHECK_ATTR

    study = study_with("maximize", (0.95, 0.3, True, C), (0.97, 0.3, True, C),
                       (0.96, 0.3, True, C))
    study.set_user_attr(RECHECK_ATTR, rechecked)
    assert pick_trial(study, None)[0].number == best
