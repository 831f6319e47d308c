"""A study's status: trials by state and the best worker-written trial, as tables or JSON."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

from optuna.trial import FrozenTrial
from rich.console import Console
from rich.table import Table

from . import record
from .errors import UsageError
from .export import pick_trial
from .study import SUMMARY_ATTR, OpenStudy
from .worker import Counts, count_states


@dataclass
class Status:
    study: str
    metric: str
    counts: Counts
    best: FrozenTrial | None = None
    skipped: list[int] = field(default_factory=list)  # complete, but not written by a worker
    data: str = ""  # the preprocessing, in one line


def study_status(opened: OpenStudy, counts: Counts | None = None) -> Status:
    study = opened.study
    status = Status(study.study_name, (study.metric_names or ["value"])[0],
                    counts or count_states(opened.study),
                    data=study.user_attrs.get(SUMMARY_ATTR, ""))
    with contextlib.suppress(UsageError):  # no completed trial yet
        status.best, status.skipped = pick_trial(study, None)
    return status


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def render_status(status: Status, out: Console, err: Console, as_json: bool = False) -> None:
    """Print the status: two tables (counts, best trial's params) or one JSON object."""
    best = status.best
    if as_json:
        data: dict[str, Any] = {"study": status.study, **asdict(status.counts),
                                "data": status.data}
        data["best"] = None if best is None else {
            "number": best.number, "value": best.value, "params": best.params}
        out.print_json(data=data)
        return
    table = Table(title=f"study {status.study}", show_header=True)
    states = ("complete", "pruned", "failed", "running", "waiting")
    for col in states:
        table.add_column(col, justify="right")
    table.add_row(*(str(getattr(status.counts, c)) for c in states))
    out.print(table)
    if status.data:
        out.print(f"data: {status.data}", highlight=False)
    if best is None:
        out.print("no completed trial yet")
        return
    params = Table(title=f"best trial {best.number}: {status.metric}={best.value:.4f}")
    params.add_column("param")
    params.add_column("value", justify="right")
    for key, value in best.params.items():
        params.add_row(key, _fmt(value))
    for key in record.SHOWN_KEYS:
        if key in best.user_attrs:
            params.add_row(f"[dim]{key}[/]", _fmt(best.user_attrs[key]))
    out.print(params)
    if status.skipped:
        err.print(f"skipped completed trial(s) {status.skipped}: not written by a worker")
