"""Study-level stops beyond the trial budget and the timeout: ``[budget] target`` (stop
at the first completed trial that reaches it) and ``[budget] stall`` (stop after that
many finished trials without a new best).

A worker asks ``why_done`` under the trial lock before it takes a trial, as it counts
the budget, and records the first stop it sees (``mark_done``): once the study is done
no trial starts, on any worker (trials already running finish), and it stays done.
``run`` asks again at the end, to say why it stopped.
"""

from __future__ import annotations

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from . import record
from .front import feasible, signs
from .studyfile import StudySpec


def active(spec: StudySpec) -> bool:
    """Whether the study file sets a target or a stall."""
    return spec.target is not None or spec.stall is not None


def reached(value: float, target: float, direction: StudyDirection) -> bool:
    return value >= target if direction == StudyDirection.MAXIMIZE else value <= target


DONE_ATTR = "nnsearch.done"  # the stop, once a worker saw it: {reason, target, stall}


def why_done(study: optuna.Study, spec: StudySpec) -> str | None:
    """Why the study is done by its target or stall, or None while it is not. Once a
    worker has seen it done (``mark_done``), it stays done for the same target and
    stall: a trial that was still running then and sets a new best does not undo a
    stall that already stopped the other workers."""
    if not active(spec):
        return None
    stored = study.user_attrs.get(DONE_ATTR)
    if isinstance(stored, dict) and (stored.get("target"), stored.get("stall")) == (
            spec.target, spec.stall):
        return str(stored.get("reason"))
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if feasible(t) and not record.is_prior(t)]
    if not complete:
        return None
    sign = signs(study.directions)[0]
    # The best value, first reached: a tie later is no improvement.
    best = min(complete, key=lambda t: (sign * t.value, t.datetime_complete))  # type: ignore[operator]
    assert best.value is not None
    if spec.target is not None and reached(best.value, spec.target, study.direction):
        return (f"trial {best.number} reached the target {spec.metric} {spec.target:g} "
                f"({best.value:.6g})")
    if spec.stall is not None and best.datetime_complete is not None:
        since = sum(1 for t in study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.PRUNED))
            if not record.is_prior(t) and t.datetime_complete is not None
            and t.datetime_complete > best.datetime_complete)
        if since >= spec.stall:
            return (f"{since} finished trials since the best, trial {best.number}, without "
                    f"improving on it (stall = {spec.stall})")
    return None


def mark_done(study: optuna.Study, spec: StudySpec, reason: str) -> None:
    """Record that the study is done (see ``why_done``); raising the stall or changing
    the target in a later run lets it go on."""
    study.set_user_attr(DONE_ATTR, {"reason": reason, "target": spec.target,
                                    "stall": spec.stall})
