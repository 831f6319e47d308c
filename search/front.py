"""Which trials are best: the best of a single-objective study, the Pareto front of a
multi-objective one, and never an infeasible trial (``[constraints]``, recorded with
Optuna's ``trial.set_constraint``: feasible when every value is <= 0)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


def feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0.0 for v in trial.constraints.values())


def violations(trial: FrozenTrial, bounds: dict[str, float]) -> str:
    """Why a trial is infeasible, e.g. ``max_params: 120,394 > 100,000``."""
    parts = []
    for name, excess in sorted(trial.constraints.items()):
        if excess > 0:
            bound = bounds.get(name)
            parts.append(f"{name}: {_num(bound + excess)} > {_num(bound)}"
                         if bound is not None else f"{name} exceeded by {_num(excess)}")
    return ", ".join(parts)


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:.4g}"


def signs(directions: Sequence[StudyDirection]) -> list[float]:
    """+1 to minimise, -1 to maximise: sign * value is smaller when better."""
    return [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions]


def dominates(a: Sequence[float], b: Sequence[float], sign: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    pairs = [(s * x, s * y) for s, x, y in zip(sign, a, b, strict=True)]
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def pareto_front(trials: Sequence[FrozenTrial],
                 directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """The completed, feasible trials with finite values that no other such trial
    dominates; best first on the first objective, then the next ones, then earlier."""
    sign = signs(directions)
    pool = [t for t in trials if t.state == TrialState.COMPLETE and feasible(t)
            and t.values is not None and all(math.isfinite(v) for v in t.values)]
    front = [t for t in pool if not any(dominates(o.values, t.values, sign) for o in pool)]
    return sorted(front, key=lambda t: ([s * v for s, v in zip(sign, t.values, strict=True)],
                                        t.number))
