"""``nnsearch run`` from end to end, beside the supervisor it drives: create the study
(or resume it), add a prior, run the workers to the budget, re-check the top trials,
read the status and choose the export (an ensemble or the best trial). The command
parses its arguments, writes the export and prints what this returns."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from .checkpoint import remove_unneeded
from .counting import Counts
from .ensemble import Choice, choose_for, export_for
from .errors import Stopped, UsageError
from .noise import settle
from .prior import Prior, add, collect
from .recheck import recheck
from .retry import with_retry
from .status import Status, study_status
from .stops import why_done
from .study import Target, create, needs_note, save_note
from .studyfile import StudySpec
from .supervisor import Supervisor, worker_args_for

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a run did: its counts and status, the re-check, and what it exported."""

    spec: StudySpec
    counts: Counts
    status: Status
    supervisor: Supervisor
    budget: int | None
    timeout: float | None
    rechecked: list[Any] = field(default_factory=list)
    choice: Choice | None = None  # None: nothing to export (stopped first, or no best)
    document: dict[str, Any] | None = None  # the export, to write to ``out``
    out: Path | None = None
    done: str | None = None  # a study-level stop that holds


def budget_of(spec: StudySpec, trials: int | None, timeout: float | None
              ) -> tuple[int | None, float | None]:
    """The run's trial budget and timeout: the command line's, else the study file's."""
    budget, timeout = trials or spec.trials, timeout or spec.timeout
    if spec.reproducible and (timeout is not None or budget is None):
        raise UsageError(f"{spec.path or spec.name}: a reproducible study (sampler."
                         "reproducible) needs a trial budget and no timeout: which trials "
                         "exist would depend on the clock; pass --trials N, not --timeout.")
    if budget is None and timeout is None:
        raise UsageError(f"{spec.path or spec.name}: no budget: set budget.trials or "
                         "budget.timeout in the study file, or pass --trials N or "
                         "--timeout S.")
    return budget, timeout


def warn_unused_grace(spec: StudySpec, timeout: float | None) -> None:
    if spec.grace is not None and timeout is None:
        logger.warning("budget.grace applies only with a timeout (budget.timeout or "
                       "--timeout S); without one, trials run to their end")


def run_study(t: Target, workers: int, trials: int | None, timeout: float | None,
              export: str | None, prior: Prior | None, from_study: str | None,
              log_flags: list[str], console: Console) -> Outcome:
    """Run study ``t`` (see the module's note) for ``trials`` or ``timeout`` (else its
    file's budget); ``prior`` is ``from_study``'s trials when they were collected before
    anything was written (with a study file)."""
    with create(t, note=False) as (opened, created):
        spec = opened.spec
        budget, timeout = budget_of(spec, trials, timeout)
        warn_unused_grace(spec, timeout)
        logger.info("%s study %r in %s", "created" if created else "resuming", spec.name,
                    t.url)
        if from_study is not None:
            prior = prior or collect(t.url, from_study, spec)
            added = add(opened.study, prior)
            logger.info("prior: %d finished trial(s) of study %r added%s%s", added,
                        prior.source, f", {len(prior.trials) - added} before"
                        if added < len(prior.trials) else "",
                        f"; {prior.left_out} left out (outside this space or its "
                        "constraints)" if prior.left_out else "")
        file = t.spec.path if t.spec else None
        supervisor = Supervisor(opened, worker_args_for(file, spec.name, budget), workers,
                                budget, console, timeout=timeout)
        supervisor.log_flags = log_flags
        if needs_note(opened):  # (a new one's): once the workers are under way
            supervisor.after_first_trial = partial(save_note, opened)
        counts = supervisor.run()
        with contextlib.suppress(Exception):  # (a storage away: the next run does it)
            remove_unneeded(opened.url, opened.study)
        rechecked = []
        if spec.recheck and not supervisor.signum and counts.complete:
            with contextlib.suppress(Stopped):  # a signal: supervisor.signum says so
                rechecked = recheck(opened, supervisor.interrupted)
        status = with_retry(lambda: study_status(opened, counts), "read the study")
        outcome = Outcome(spec, counts, status, supervisor, budget, timeout, rechecked)
        best = outcome.status.best
        if (supervisor.signum and not outcome.rechecked) or best is None:
            return outcome  # (a re-check that finished is used)
        default = f"{spec.name}-best.json"
        outcome.out = Path(export) if export else \
            t.spec.path.with_name(default) if t.spec and t.spec.path else Path(default)
        pick, settled = with_retry(lambda: settle(opened.study, spec, best),
                                   "read the starting points")
        try:
            choice = with_retry(lambda: choose_for(opened, pick, stood=pick is not best),
                                "read the kept predictions")
        except Exception as exc:
            logger.warning("no ensemble (%s); exporting trial %d", exc, pick.number)
            choice = Choice(pick, why_single=str(exc))
        choice.settled = settled
        outcome.document = with_retry(lambda: export_for(opened, choice),
                                      "read the best trial")
        outcome.choice = choice
        outcome.done = with_retry(lambda: why_done(opened.study, spec), "check the stops")
    return outcome
