"""``init``'s choice of how a table's numbers become inputs (``data.numeric``).

Standardised numbers suit a column that is roughly bell-shaped, and a target that is
close to linear in it; a skewed column (money, counts) standardised leaves most rows
squeezed together beside a few far ones, which its quantiles to normal scores spread
evenly. Which one a table wants is an empirical question (the MLP defaults alone,
outer splits 0-4 of ``bench/first_trial.py``: creditcard 0.9568 -> 0.9788 accuracy
through the quantiles; the same pipeline in scikit-learn, 10 splits: carseats RMSE
1.147 -> 1.242 and boston 3.65 -> 4.27 worse), so ``init`` asks the table: the
study's first starting point (scikit-learn's MLP defaults), trained on the study's
folds both ways, fold by fold. Quantiles are written only when their folds' mean
validation loss is lower by more than one standard error of the paired differences
(the noise rule ``run`` uses to keep a starting point): a tie stays standardised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import optuna

from .data import Dataset, load_data
from .readers import Raw
from .record import trial_seed
from .space import build_configs, sample
from .studyfile import StudySpec
from .training import cross_validate


@dataclass
class Choice:
    quantile: bool
    standard_loss: float  # the folds' mean validation loss, standardised
    quantile_loss: float  # ...and through the quantiles
    se: float  # the standard error of the folds' paired differences
    folds: int
    seconds: float

    def line(self) -> str:
        """One line for ``init``'s report and the study file's comment."""
        how = "through their quantiles to normal scores" if self.quantile else "standardised"
        return (f"numbers: {how} (the MLP defaults' val_loss over {self.folds} folds: "
                f"{self.quantile_loss:.4g} through quantiles, {self.standard_loss:.4g} "
                f"standardised, paired se {self.se:.2g}; {self.seconds:.0f} s)")


def choose(spec: StudySpec, data: Dataset, raw: Raw
           ) -> tuple[Choice, Dataset] | None:
    """The choice and the data it picked, or None where there is none to make (no folds,
    no starting point, no numeric column of more than two values)."""
    if not data.n_folds or not spec.enqueue:
        return None
    start = time.perf_counter()
    other = load_data(replace(spec.data, numeric="quantile"), spec.base_dir, raw=raw)
    if not any("quantiles" in c for c in other.prep.columns):
        return None  # (tabular.py maps no column of two values or fewer: nothing changes)
    # the first starting point; what it leaves to the sampler (the batch size), drawn at
    # random with the study's seed, the same for both
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.seed))
    study.enqueue_trial(spec.enqueued_params()[0])
    values = sample(spec.space, study.ask())
    network, training = build_configs(values, data.n_features, data.n_outputs, data.task,
                                      trial_seed(spec.seed, 0))
    runs = [cross_validate(network, training, d, "val_loss", together=True)
            for d in (data, other)]
    if any(run.stopped for run in runs):  # (diverged: no comparison to make)
        return None
    losses = [np.asarray(run.losses, dtype=np.float64) for run in runs]
    diff = losses[0] - losses[1]  # > 0: the quantiles' loss is lower
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
    ok = bool(np.all(np.isfinite(diff))) and float(diff.mean()) > se
    choice = Choice(ok, float(losses[0].mean()), float(losses[1].mean()), se, len(diff),
                    time.perf_counter() - start)
    return choice, other if ok else data
