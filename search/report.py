"""``nnsearch report``: static PNGs of a study for people without a browser."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Container
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .errors import UsageError
from .front import feasible, signs
from .record import is_prior, written_by_worker

logger = logging.getLogger(__name__)

TOP = 5


class OwnTrials(optuna.Study):
    """The study as its plots see it: its own trials, numbers kept, without the priors
    that ``run --from-study`` copied in (they count in no plot, as in no front)."""

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return [t for t in super().get_trials(deepcopy=deepcopy, states=states)
                if not is_prior(t)]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def write_report(study: optuna.Study, storage: optuna.storages.BaseStorage,
                 out: Path) -> list[Path]:
    """Optimisation history, importances, parallel coordinates, top-5 learning curves;
    a multi-objective study's Pareto front (and no curves: its trials report none)."""
    own = OwnTrials(study_name=study.study_name, storage=storage)
    with warnings.catch_warnings():  # Optuna's notes on experimental plots and targets
        warnings.simplefilter("ignore")
        return _write_report(own, out)


def _write_report(study: optuna.Study, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if written_by_worker(t) and feasible(t)]  # the curves: never an infeasible one
    if len(complete) < 2:
        raise UsageError(f"study {study.study_name!r} has {len(complete)} completed trial(s); "
                         "a report needs at least 2.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot make that folder ({exc.strerror}).") from None
    names = study.metric_names or ["value"]
    metric = names[0]
    multi = len(study.directions) > 1
    # On a multi-objective study the plots of one value show the quality metric; the
    # importances take a target to minimise, so a maximised one is negated there.
    first: Any = {"target": (lambda t: t.values[0])} if multi else {}
    sign = signs(study.directions)[0]
    towards: Any = {"target": (lambda t: sign * t.values[0])} if multi else {}
    written = []

    def save(ax_or_axes: object, name: str) -> None:
        fig = plt.gcf()
        fig.set_size_inches(9, 5.5)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100)
        plt.close("all")
        written.append(path)

    if multi:
        if len(names) <= 3:
            save(ovm.plot_pareto_front(study, target_names=names), "pareto_front.png")
        else:
            logger.warning("a Pareto front of %d objectives cannot be drawn; skipped",
                           len(names))
    save(ovm.plot_optimization_history(study, target_name=metric, **first),
         "optimization_history.png")
    distinct = {k for t in complete for k in t.params}
    if len(distinct) >= 2:
        save(ovm.plot_param_importances(study, target_name=metric, **towards),
             "param_importances.png")
        save(ovm.plot_parallel_coordinate(study, target_name=metric, **first),
             "parallel_coordinate.png")
    else:
        logger.warning("importances and parallel coordinates need at least 2 searched "
                       "parameters; skipped")
    if multi:
        return written  # (no learning curves: a multi-objective trial reports none)
    top = sorted(complete, key=lambda t: sign * t.values[0])[:TOP]
    _fig, ax = plt.subplots()
    for t in top:
        steps = sorted(t.intermediate_values)
        ax.plot([s + 1 for s in steps], [t.intermediate_values[s] for s in steps],
                marker=".", label=f"trial {t.number} ({t.value:.4f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"learning curves of the top {len(top)} trials")
    ax.legend()
    save(ax, "learning_curves_top5.png")
    return written
