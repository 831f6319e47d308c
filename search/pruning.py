"""Pruning a cross-validated trial: fold 0 epoch by epoch, then the folds' running mean.

With ``[data] folds``, the objective reports fold 0's epochs at steps 0..E-1 (as a
trial on one split is reported), then the mean so far after each fold at step E + i,
where E is the most epochs any trial can run. Optuna's median pruner compares the
*best* value a trial reported at any step with the other trials' values at the
current step; after a fold that would compare fold 0's best epoch, not the running
mean. ``FoldSteps`` shows the pruner, at a fold step, only the trial's fold steps.
"""

from __future__ import annotations

import copy

import optuna
from optuna.trial import FrozenTrial


class FoldSteps(optuna.pruners.BasePruner):
    """``inner`` as is up to step ``first_fold_step``; from there, on fold steps only."""

    def __init__(self, inner: optuna.pruners.BasePruner, first_fold_step: int) -> None:
        self.inner = inner
        self.first_fold_step = first_fold_step

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.first_fold_step:
            return self.inner.prune(study, trial)
        view = copy.copy(trial)
        view.intermediate_values = {s: v for s, v in trial.intermediate_values.items()
                                    if s >= self.first_fold_step}
        return self.inner.prune(study, view)
