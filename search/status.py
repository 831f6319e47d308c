"""A study's status: trials by state, the best worker-written trial and, on a
multi-objective study, its Pareto front; as tables or JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from . import record
from ._optuna import FIXED_PARAMS, Tally, heartbeat_ages, shortlist, tally
from .counting import Counts, count_states
from .errors import UsageError
from .export import RECHECK_ATTR, pick_best
from .fleet import WINDOW_MINUTES, Fleet, fleet_of
from .front import feasible, pareto_front, signs
from .noise import settle, starting_point
from .reproducible import LAG
from .study import SUMMARY_ATTR, OpenStudy


@dataclass
class Status:
    study: str
    metric: str
    counts: Counts
    best: FrozenTrial | None = None
    skipped: list[int] = field(default_factory=list)  # complete, but not written by a worker
    data: str = ""  # the preprocessing, in one line
    no_best: str = ""  # why there is no best trial to export
    objectives: list[str] = field(default_factory=list)  # a multi-objective study's
    front: list[FrozenTrial] = field(default_factory=list)  # its Pareto front, best first
    reproducible: bool = False  # [sampler] reproducible (search/reproducible.py)
    # the export's single pick (before any ensemble): ``best`` or a starting point that
    # stood (noise.settle), and why; "" when there was nothing to answer
    pick: int | None = None
    settled: str = ""
    fleet: Fleet = field(default_factory=Fleet)  # its running workers, pace and failures


SHORTLIST = 50  # the best completed trials ``status`` reads whole (``_optuna.census``)


def study_status(opened: OpenStudy, counts: Counts | None = None,
                 census: bool = False) -> Status:
    """The study's status. With ``census`` (the ``status`` command, one objective, an RDB
    storage), what it shows is asked of the storage, not read from every trial: counts
    over them all by SQL, and the best ``SHORTLIST`` completed, the unfinished ones and
    the starting points read whole (``_optuna.census``); all are read when none of those
    best is a worker's feasible trial."""
    study = opened.study
    status = Status(study.study_name, (study.metric_names or ["value"])[0],
                    counts or count_states(opened),
                    data=study.user_attrs.get(SUMMARY_ATTR, ""),
                    reproducible=opened.spec.reproducible)
    study_id = opened.storage.get_study_id_from_name(study.study_name)
    now = datetime.now()
    trials, counted = read_census(opened, now) if census else (None, None)
    if trials is None:
        trials, counted = study.get_trials(deepcopy=False), None
    status.fleet = fleet_of(trials, heartbeat_ages(opened.storage, study_id), now, counted)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    try:
        status.best, status.skipped = pick_best(study, complete)
    except UsageError as exc:  # no completed (and feasible) trial yet
        status.no_best = str(exc)
    if counted is not None:
        status.skipped = counted.skipped
    if status.best is not None and len(study.directions) == 1:
        pick, status.settled = settle(study, opened.spec, status.best, complete)
        status.pick = pick.number
    if len(study.directions) > 1:
        status.objectives = list(study.metric_names or [])
        genuine = [t for t in complete if record.written_by_worker(t)]
        status.front = pareto_front(genuine, study.directions)
    return status


def read_census(opened: OpenStudy, now: datetime | None = None, complete: bool = False
                ) -> tuple[list[FrozenTrial] | None, Tally | None]:
    """What ``status`` and ``export`` need of a single-objective study on an RDB storage,
    without reading every trial: the shortlist (its completed trials alone, with
    ``complete``) and the tally (``_optuna.census``; the pace's window ends ``now``).
    (None, None) elsewhere, or where the shortlist may not hold the export's pick: no
    trial it could pick, or (of many starting points) none that could stand."""
    study = opened.study
    rdb = opened.reader.rdb if opened.reader is not None else None
    if rdb is None or len(study.directions) > 1:
        return None, None
    study_id = opened.storage.get_study_id_from_name(study.study_name)
    now = now or datetime.now()
    counted = tally(rdb, study_id, now - timedelta(minutes=WINDOW_MINUTES),
                    record.RESULT_KEYS, record.SURPLUS, record.PRIOR)
    rechecked = [int(n) for n in study.user_attrs.get(RECHECK_ATTR) or {}]
    last_failed = [] if counted.last_failed is None else [counted.last_failed]
    sign = signs(study.directions)[0]
    short = shortlist(rdb, study_id, sign, SHORTLIST, FIXED_PARAMS, rechecked + last_failed)
    trials = [t for _, t in short.trials]
    best = [t for tid, t in short.trials if tid in short.best]
    held = [t for tid, t in short.trials if tid in short.marked]
    # (the best of those is the best of all; so of the starting points, if one is there)
    if not any(record.written_by_worker(t) and feasible(t) for t in best) or (
            short.cut and starting_point(held, opened.spec, sign) is None):
        return None, None
    if complete:
        trials = [t for t in trials if t.state == TrialState.COMPLETE]
    return trials, counted


def front_table(front: list[FrozenTrial], objectives: list[str]) -> Table:
    """The Pareto front, one row per trial: its objectives, then its parameters."""
    table = Table(title=f"Pareto front: {len(front)} trial(s) that no other beats on every "
                        "objective", caption="nnsearch export --trial N exports any of them")
    table.add_column("trial", justify="right")
    for name in objectives:
        table.add_column(name, justify="right")
    table.add_column("params")
    for t in front:
        table.add_row(str(t.number), *(_fmt(v) for v in t.values),
                      " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items()))
    return table


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def render_status(status: Status, out: Console, err: Console, as_json: bool = False,
                  summary_follows: bool = False) -> None:
    """Print the status: two tables (counts, best trial's params) or one JSON object.
    With ``summary_follows`` (``run``, which ends on a line naming the best trial and its
    value), the params table is titled by its trial alone."""
    best = status.best
    if as_json:
        data: dict[str, Any] = {"study": status.study, **asdict(status.counts),
                                "data": status.data, "reproducible": status.reproducible}
        data["best"] = None if best is None else {
            "number": best.number, "value": best.values[0], "params": best.params}
        if status.pick is not None:
            data["export_pick"] = {"number": status.pick, "why": status.settled or None}
        data["fleet"] = status.fleet.as_json()
        if status.objectives:
            data["front"] = [{"number": t.number, "params": t.params,
                              "values": dict(zip(status.objectives, t.values, strict=True))}
                             for t in status.front]
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
    out.print("reproducible: " + (f"yes (trial n is sampled and pruned from trials 0..n-"
                                  f"{LAG + 1} as they ended: the same trials with any number "
                                  "of workers)" if status.reproducible else
                                  "no (sampler.reproducible = true makes it so)"),
              highlight=False)
    if not summary_follows:  # (run ends with its own summary)
        _render_fleet(status.fleet, out)
    if best is None:
        out.print(status.no_best or "no completed trial yet", highlight=False)
        return
    if status.objectives:
        out.print(front_table(status.front, status.objectives))
    params = Table(title=f"trial {best.number}" if summary_follows else
                   f"the front's best on {status.metric}: trial {best.number} "
                   f"({best.values[0]:.4f})" if status.objectives else
                   f"best trial {best.number}: {status.metric}={best.values[0]:.4f}")
    params.add_column("param")
    params.add_column("value", justify="right")
    for key, value in best.params.items():
        params.add_row(key, _fmt(value))
    for key in record.SHOWN_KEYS:
        if key in best.user_attrs:
            params.add_row(f"[dim]{key}[/]", _fmt(best.user_attrs[key]))
    out.print(params)
    if status.settled and not summary_follows:  # (run prints it with the export)
        out.print(status.settled, highlight=False)
    if status.skipped:
        err.print(f"skipped completed trial(s) {status.skipped}: not written by a worker")


def _render_fleet(fleet: Fleet, out: Console) -> None:
    """The running workers (a table), then the pace, retries and failures (a line)."""
    if fleet.running:
        table = Table(title=f"running: {len(fleet.running)} trial(s)")
        for col in ("worker", "trial", "last step", "running s", "heartbeat age s"):
            table.add_column(col, justify="left" if col == "worker" else "right")
        for r in fleet.running:
            table.add_row(r.worker, str(r.trial), "-" if r.step is None else str(r.step),
                          f"{r.running_s:.0f}", "-" if r.heartbeat_age_s is None
                          else f"{r.heartbeat_age_s:.0f}")
        out.print(table)
    window = f"{fleet.minutes:.1f} min" if fleet.minutes >= 1 else f"{60 * fleet.minutes:.0f} s"
    line = (f"pace: {fleet.per_minute:.1f} trials/min over the last {window}; "
            f"{fleet.retried} retried, {fleet.failed} failed")
    if fleet.last_failure:
        line += f" (last: {fleet.last_failure})"
    out.print(line, highlight=False)
