"""``nnsearch report``: static PNGs of a study for people without a browser."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .errors import UsageError
from .record import written_by_worker

logger = logging.getLogger(__name__)

TOP = 5


def write_report(study: optuna.Study, out: Path) -> list[Path]:
    """Optimisation history, importances, parallel coordinates, top-5 learning curves;
    a multi-objective study's Pareto front (and no curves: its trials report none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if written_by_worker(t)]
    if len(complete) < 2:
        raise UsageError(f"study {study.study_name!r} has {len(complete)} completed trial(s); "
                         "a report needs at least 2.")
    out.mkdir(parents=True, exist_ok=True)
    names = study.metric_names or ["value"]
    metric = names[0]
    multi = len(study.directions) > 1
    # On a multi-objective study the plots of one value show the quality metric.
    first: Any = {"target": (lambda t: t.values[0])} if multi else {}
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
        save(ovm.plot_param_importances(study, target_name=metric, **first),
             "param_importances.png")
        save(ovm.plot_parallel_coordinate(study, target_name=metric, **first),
             "parallel_coordinate.png")
    else:
        logger.warning("importances and parallel coordinates need at least 2 searched "
                       "parameters; skipped")
    if multi:
        return written  # (no learning curves: a multi-objective trial reports none)
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    top = sorted(complete, key=lambda t: t.value or 0.0, reverse=reverse)[:TOP]
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
