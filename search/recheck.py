"""A second look before the export: the top trials retrained with more seeds.

Picking the best of many trials by one validation score picks, in part, the luckiest
seed (the winner's curse). ``[selection] recheck = k`` retrains the k best trials
with ``seeds`` more seeds each (the same split, network and training config; only
the initialisation, dropout and shuffling seed changes; with folds, all the folds
again), and the export then picks
by the mean of the trial's own value and the re-check's. The values are stored with
the study (``export.RECHECK_ATTR``), so ``nnsearch export`` picks the same way, and
the export still carries the trial's own seed: ``train`` reproduces the trial.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import threadpool_limits

from . import record
from .cache import cache_dir, cached_data
from .errors import Stopped
from .export import RECHECK_ATTR, export_trial, rank_trials, recheck_mean, retrain
from .front import feasible
from .study import OpenStudy

logger = logging.getLogger(__name__)


@dataclass
class Rechecked:
    number: int
    values: list[float | None]  # the trial's own value first; None: a seed that diverged

    @property
    def mean(self) -> float:
        return recheck_mean(self.values)


def recheck(opened: OpenStudy, stop: threading.Event | None = None) -> list[Rechecked]:
    """Retrain the study's top ``spec.recheck`` trials with ``spec.recheck_seeds`` more
    seeds each, store the values with the study and return them (best trial first).
    A stored re-check of the same top trials with as many seeds is used again. Once
    ``stop`` is set (a signal), the next epoch raises ``Stopped``: nothing is stored."""
    spec, study = opened.spec, opened.study
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if record.written_by_worker(t) and feasible(t)]
    top: list[FrozenTrial] = rank_trials(study, done)[:spec.recheck]
    stored = study.user_attrs.get(RECHECK_ATTR) or {}
    if stored.keys() == {str(t.number) for t in top} and all(
            len(v) == spec.recheck_seeds + 1 for v in stored.values()):
        logger.info("the top %d trial(s) were re-checked already: using that", len(top))
        return [Rechecked(t.number, stored[str(t.number)]) for t in top]

    def on_epoch(epoch: int, metrics: dict[str, Any]) -> bool:
        if stop is not None and stop.is_set():
            raise Stopped("a signal")
        return False

    data = cached_data(spec.data, spec.base_dir, cache_dir(opened.url))  # once for all
    results = []
    for trial in top:
        config = export_trial(study, spec, trial, opened.url)
        assert trial.value is not None
        values: list[float | None] = [float(trial.value)]
        for k in range(1, spec.recheck_seeds + 1):
            again = copy.deepcopy(config)
            seed = record.other_seed(int(config["seed"]), k)
            again["network"]["seed"] = again["training"]["seed"] = again["seed"] = seed
            with threadpool_limits(limits=1, user_api="blas"):
                *_, metrics = retrain(again, f"trial {trial.number}", data, test=False,
                                      on_epoch_end=on_epoch)
            value = float(metrics[f"trial_{spec.metric}"])
            values.append(value if math.isfinite(value) else None)
        results.append(Rechecked(trial.number, values))
        logger.info("re-checked trial %d: %s=%s", trial.number, spec.metric,
                    ", ".join("diverged" if v is None else f"{v:.4f}" for v in values))
    study.set_user_attr(RECHECK_ATTR, {str(r.number): r.values for r in results})
    return results
