"""Commands on one study: create, run, worker, status, export, report."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ._base import (
    Command,
    budget_args,
    check_output,
    nonnegative_int,
    positive_int,
    stderr,
    stdout,
    study_args,
    target,
    write_json,
    write_text,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


class CreateCommand(Command):
    help = "Create the study from its file (once; later calls find it)."
    examples = ("nnsearch create studies/digits.toml",
                "nnsearch create studies/digits.toml --storage postgresql+psycopg://u@db/optuna")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        study_args(p, file_required=True)

    def take_action(self, args: argparse.Namespace) -> int:
        from ..study import create

        t = target(args)
        with create(t) as (opened, created):
            name = opened.study.study_name
            logger.info("%s study %r in %s", "created" if created else "found existing", name,
                        t.url)
            stdout.print(f"study {name} {'created' if created else 'exists'} in {t.url}")
        return 0


class RunCommand(Command):
    help = "Create the study if needed, run N workers to the budget, export the best trial."
    examples = ("nnsearch run studies/digits.toml --workers 2",
                "nnsearch run studies/article.toml --trials 50 --timeout 600",
                "nnsearch run --study digits --storage sqlite:///studies/digits.db --trials 80")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        study_args(p)
        p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                       help="worker processes (default 1)")
        budget_args(p)
        p.add_argument("--export", metavar="FILE",
                       help="where to write the best trial's config (default: "
                            "NAME-best.json beside the study file, or here with --study)")
        p.add_argument("--from-study", metavar="NAME",
                       help="add that study's finished trials (same storage, same objectives) "
                            "that fit this space as a prior, once; they count in no budget")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..ensemble import describe
        from ..prior import collect
        from ..run import budget_of, run_study
        from ..status import render_status

        t = target(args)
        if t.spec is not None:
            budget_of(t.spec, args.trials, args.timeout)  # before anything is written
        if args.export:
            check_output(args.export, export=True)
        # Checked before anything is written (with a study file; without one, the
        # study exists already).
        prior = collect(t.url, args.from_study, t.spec) \
            if args.from_study is not None and t.spec else None
        outcome = run_study(t, args.workers, args.trials, args.timeout, args.export, prior,
                            args.from_study, ["-q"] if args.quiet else ["-v"] * args.verbose,
                            stderr)
        spec, budget, timeout = outcome.spec, outcome.budget, outcome.timeout
        supervisor, status, counts = outcome.supervisor, outcome.status, outcome.counts
        render_status(status, stdout, stderr, summary_follows=not supervisor.signum)
        if outcome.rechecked:
            _render_recheck(outcome.rechecked, spec.metric, stdout)
        if outcome.document is None or outcome.choice is None or outcome.out is None:
            if supervisor.signum:  # (a re-check that finished is used)
                stderr.print(f"stopped by {supervisor.signal_name}; run the same command "
                             "again to resume")
                return 128 + supervisor.signum
            logger.error("%s", status.no_best)
            return 1
        write_json(outcome.document, str(outcome.out))
        choice, out = outcome.choice, outcome.out
        best = status.best
        assert best is not None
        mean = next((r.mean for r in outcome.rechecked if r.number == best.number), None)
        label = "the front's best" if spec.multi else "best"
        stdout.print(f"{label} trial {best.number}: {spec.metric}={best.values[0]:.4f}"
                     + (f", re-checked mean {mean:.4f} over {spec.recheck_seeds + 1} seeds"
                        if mean is not None else ""))
        if choice.settled and choice.single is not best:
            stdout.print(choice.settled, markup=False)  # (it says [selection])
        elif choice.settled:
            logger.info("%s", choice.settled)
        if choice.is_ensemble:
            stdout.print(describe(choice, spec.metric))
        elif spec.ensemble > 1:
            logger.info("exported trial %d alone: %s", choice.single.number,
                        choice.why_single)
        stdout.print(f"exported config: {out}")
        stdout.print(f"retrain it with: nnsearch train {out}")
        if supervisor.signum:
            stderr.print(f"stopped by {supervisor.signal_name} after the re-check")
            return 128 + supervisor.signum
        if outcome.done is not None:
            stdout.print(f"stopped: {outcome.done}")
            return 0
        if budget is not None and counts.finished < budget:
            if timeout is not None and supervisor.elapsed >= timeout:
                logger.info("the timeout of %gs ended the study at %d of %d finished trials",
                            timeout, counts.finished, budget)
                return 0
            logger.error("the study stopped at %d of %d finished trials: its workers gave up "
                         "(see the failed trials' fail_reason: nnsearch status)",
                         counts.finished, budget)
            return 1
        return 0


def _render_recheck(rechecked: list[Any], metric: str, out: Any) -> None:
    from rich.table import Table

    table = Table(title=f"re-check of the top {len(rechecked)} trial(s)",
                  caption="the export picks by the mean")
    for column in ("trial", f"{metric}", "with more seeds", "mean"):
        table.add_column(column, justify="right")
    for r in rechecked:
        table.add_row(str(r.number), f"{r.values[0]:.4f}",
                      ", ".join("diverged" if v is None else f"{v:.4f}" for v in r.values[1:]),
                      f"{r.mean:.4f}")
    out.print(table)


class WorkerCommand(Command):
    help = "Run one worker on an existing study (for other machines and containers)."
    examples = (
        "nnsearch worker studies/digits.toml --storage postgresql+psycopg://u@db/optuna",
        "NNSEARCH_STORAGE=postgresql+psycopg://u@db/optuna nnsearch worker --study digits")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        study_args(p)
        budget_args(p)
        p.add_argument("--sampler-seed-offset", type=nonnegative_int, metavar="K",
                       help=argparse.SUPPRESS)

    def take_action(self, args: argparse.Namespace) -> int:
        from .. import record
        from ..run import budget_of, warn_unused_grace
        from ..study import open_study
        from ..worker import ENV_RUN, Worker

        t = target(args)
        offset = args.sampler_seed_offset
        if offset is None:  # a standalone worker: its own seed, from its host and pid
            offset = record.standalone_offset()
        with open_study(t, heartbeat=True, sampler_offset=offset) as opened:
            spec = opened.spec
            if spec.reproducible:
                budget_of(spec, args.trials, args.timeout)  # a trial budget, no timeout
            warn_unused_grace(spec, args.timeout or spec.timeout)
            worker = Worker(opened, args.trials or spec.trials, args.timeout or spec.timeout)
            worker.install_signal_handlers()
            run_pid = os.environ.get(ENV_RUN, "")
            if run_pid.isdigit():  # started by `run`: stop once it is gone
                worker.watch_run(int(run_pid))
            n = worker.run()
        logger.info("worker %s ran %d trial(s)", worker.objective.worker, n)
        return 128 + worker.signum if worker.signum else 0


class StatusCommand(Command):
    help = "Trials by state, and the best value and params."
    examples = ("nnsearch status studies/digits.toml",
                "nnsearch status --study digits --storage sqlite:///studies/digits.db --json")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        study_args(p)
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..status import render_status, study_status
        from ..study import open_study

        with open_study(target(args)) as opened:
            render_status(study_status(opened, census=True), stdout, stderr,
                          as_json=args.json)
        return 0


def state_list(text: str) -> list[str]:
    """--state complete,pruned: names of trial states."""
    from ..trials_table import STATES

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in STATES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown state {(bad or [text])[0]!r}; valid: "
                                         f"{', '.join(STATES)}")
    return names


class TrialsCommand(Command):
    help = "Every trial as a row: state, value, parameters, diagnostics, why it was pruned."
    examples = ("nnsearch trials studies/digits.toml",
                "nnsearch trials studies/digits.toml --format csv > trials.csv",
                "nnsearch trials studies/digits.toml --state complete --sort value --limit 10")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from ..trials_table import SORTS

        study_args(p)
        p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="table (default), csv or json (a list of rows)")
        p.add_argument("--state", type=state_list, metavar="STATES",
                       help="only these states, e.g. complete,pruned (default: all)")
        p.add_argument("--sort", choices=SORTS, default="number",
                       help="number (default), value (best first) or duration (longest "
                            "first)")
        p.add_argument("--limit", type=positive_int, metavar="N", help="the first N rows")

    def take_action(self, args: argparse.Namespace) -> int:
        from rich.console import Console
        from rich.table import Table

        from ..record import PRIOR, RESUMED
        from ..study import open_study
        from ..trials_table import STATES, TABLE_DIAGNOSTICS, cell, study_rows, to_csv, to_json

        states = [STATES[n] for n in args.state] if args.state else None
        with open_study(target(args)) as opened:
            columns, rows = study_rows(opened, states, args.sort)
        rows = rows[:args.limit] if args.limit else rows
        if args.format == "csv":
            sys.stdout.write(to_csv(columns, rows))
        elif args.format == "json":
            sys.stdout.write(to_json(rows))
        else:  # the parameters and a few diagnostics; csv and json carry them all
            shown = [c for c in columns if (c in ("number", "state", "value", "duration_s",
                                                  "feasible", PRIOR, RESUMED, "reason",
                                                  *TABLE_DIAGNOSTICS)
                                            or c.startswith("param."))
                     and (c == "number" or any(r[c] is not None for r in rows))]
            table = Table(title=f"{len(rows)} trial(s)")
            for c in shown:
                table.add_column(c.removeprefix("param."), no_wrap=c != "reason")
            for r in rows:
                table.add_row(*(cell(r[c]) for c in shown))
            # Into a pipe or a file, as wide as it needs (rich would squeeze it to 80).
            wide = Console(soft_wrap=True, width=stdout.width if stdout.is_terminal
                           else 10_000)
            wide.print(table)
        return 0


class EnqueueCommand(Command):
    help = "Queue a configuration to run next, once: an export or a JSON table of parameters."
    examples = ("nnsearch enqueue studies/digits.toml best.json",
                "nnsearch enqueue studies/digits.toml params.json  "
                "# {\"n_layers\": 2, \"width\": [256, 128], \"dropout\": 0.2}")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        study_args(p)
        p.add_argument("config", metavar="CONFIG.json",
                       help="an export (nnsearch export), its --format params, or a JSON "
                            "object of searched parameters in the study file's names")

    def take_action(self, args: argparse.Namespace) -> int:
        from .._optuna import enqueued_params
        from ..counting import count_states
        from ..enqueue import check_sizes, to_params
        from ..export import read_config
        from ..stops import why_done
        from ..study import accepted_data, open_study

        table = read_config(args.config)
        with open_study(target(args), heartbeat=True) as opened:
            params = to_params(table, opened.spec.space, args.config)
            data = accepted_data(opened, notes=False)
            check_sizes([params], opened.spec.space, opened.spec.max_params,
                        data.n_features, data.n_outputs, args.config)
            opened.study.enqueue_trial(params)
            # Ours: the last trial queued with these params (a worker may have taken it).
            number = max(t.number for t in opened.study.get_trials(deepcopy=False)
                         if enqueued_params(t) == params)
            done = why_done(opened.study, opened.spec)
            finished = count_states(opened).finished
        stdout.print(f"enqueued trial {number}: the next worker runs it (nnsearch run or "
                     "worker)")
        budget = opened.spec.trials
        if done is not None:
            logger.warning("the study is done (%s): raise its budget.stall or change its "
                           "budget.target for a worker to take it", done)
        elif budget is not None and finished >= budget:
            logger.warning("the study already has its %d finished trials (budget.trials): run "
                           "it with --trials %d or more for a worker to take it", budget,
                           finished + 1)
        return 0


class ExportCommand(Command):
    help = "The best trial (or trial N) as a JSON config to retrain from."
    examples = ("nnsearch export studies/digits.toml -o best.json",
                "nnsearch export studies/digits.toml --trial 12")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        study_args(p)
        p.add_argument("--trial", type=nonnegative_int, metavar="N", help="this trial number")
        p.add_argument("--ensemble", action="store_true",
                       help="the ensemble of the best trials that run exports ([selection] "
                            "ensemble), or the best trial where none beats it")
        p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
        p.add_argument("--format", choices=("json", "yaml", "params"), default="json",
                       help="json (default: what train takes), yaml (the same), params (the "
                            "trial's parameters alone, as Optuna's enqueue_trial takes them)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..ensemble import Choice, choose_for, describe, export_for
        from ..export import pick_trial
        from ..noise import settle
        from ..status import read_census
        from ..study import open_study

        t = target(args)
        if args.ensemble and (args.trial is not None or args.format == "params"):
            raise UsageError("--ensemble exports several trials: not with --trial or "
                             "--format params.")
        if args.output and args.output != "-":
            check_output(args.output, export=True)  # never over a study file or a table
        with open_study(t) as opened:
            complete, counted = (None, None) if args.trial is not None else read_census(
                opened, complete=True)  # (the best and the starting points, by SQL)
            trial, skipped = pick_trial(opened.study, args.trial, opened.spec.constraints,
                                        complete)
            if skipped := skipped if counted is None else counted.skipped:
                logger.warning("skipped completed trial(s) %s: their values were not written "
                               "by a worker (e.g. set through the dashboard)", skipped)
            best, settled = trial, ""
            if args.trial is None:  # the export's pick, as run's (search/noise.py)
                trial, settled = settle(opened.study, opened.spec, best, complete)
                if settled:
                    logger.info("%s", settled)
            choice = choose_for(opened, trial, stood=trial is not best) if args.ensemble \
                else Choice(trial)
            if choice.is_ensemble:
                logger.info("%s", describe(choice, opened.spec.metric))
            elif args.ensemble:
                logger.info("no ensemble: %s; exporting trial %d", choice.why_single,
                            trial.number)
            export = export_for(opened, choice)
        if args.format == "params":
            write_json(trial.params, args.output)
        elif args.format == "yaml":
            import yaml  # PyYAML: Optuna's own dependency

            write_text(yaml.safe_dump(export, sort_keys=False), args.output)
        else:
            write_json(export, args.output)
        if args.output and args.output != "-":
            logger.info("wrote %s to %s", f"trial {trial.number}" if export.get("trial")
                        else "the ensemble", args.output)
        return 0


class ReportCommand(Command):
    help = ("Static PNGs: optimisation history, parameter importances, parallel coordinates, "
            "learning curves of the top 5.")
    examples = ("nnsearch report studies/digits.toml --out report/",)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        study_args(p)
        p.add_argument("--out", default="report", metavar="DIR",
                       help="folder for the PNGs (default: report)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..report import write_report
        from ..study import open_study

        with open_study(target(args)) as opened:
            for path in write_report(opened.study, opened.storage, Path(args.out)):
                stdout.print(str(path))
        return 0
