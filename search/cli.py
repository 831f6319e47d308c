"""The ``nnsearch`` command line: a table of commands over one study.

Results go to stdout; diagnostics (progress, warnings, where files went) go to
stderr through ``logging``. A bad input ends with a one-line error and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import socket
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import optuna
from optuna.trial import FrozenTrial
from rich.console import Console
from rich.table import Table

from .errors import UsageError
from .storage import ENV_STORAGE, dispose, redact

logger = logging.getLogger(__name__)
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


# ----- helpers ------------------------------------------------------------------------------
def _add_study_args(p: argparse.ArgumentParser, file_required: bool = False) -> None:
    if file_required:
        p.add_argument("study_file", metavar="STUDY_FILE", help="the study's TOML file")
    else:
        p.add_argument("study_file", metavar="STUDY_FILE", nargs="?",
                       help="the study's TOML file (or use --study with --storage)")
        p.add_argument("--study", dest="study_name", metavar="NAME",
                       help="the study's name, when addressing it without its file")
    p.add_argument("--storage", metavar="URL",
                   help=f"storage URL; default: ${ENV_STORAGE}, else SQLite beside the "
                        "study file (sqlite:///PATH, postgresql+psycopg://USER@HOST/DB, "
                        "journal:///PATH)")


def _add_budget_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=_positive_int, metavar="N",
                   help="finished trials (complete + pruned) for the whole study, shared by "
                        "all its workers; default: budget.trials")
    p.add_argument("--timeout", type=_positive_float, metavar="S",
                   help="stop starting trials after S seconds; default: budget.timeout")


def _add_storage_args(p: argparse.ArgumentParser, verb: str) -> None:
    """For commands that need only a storage: the study file's default, or --storage."""
    p.add_argument("study_file", metavar="STUDY_FILE", nargs="?",
                   help=f"{verb} the study file's default storage")
    p.add_argument("--storage", metavar="URL", help=f"the storage to {verb}")


def _storage_url(args: argparse.Namespace) -> str:
    from .storage import resolve_url

    return resolve_url(args.storage, Path(args.study_file) if args.study_file else None)


def _target(args: argparse.Namespace) -> Any:
    from .study import target_from_args

    return target_from_args(args.study_file, getattr(args, "study_name", None), args.storage)


def _number(kind: type, minimum: float, strict: bool) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number above ``minimum`` (or equal, unless strict)."""
    noun = "whole number" if kind is int else "number"
    bound = f"> {minimum}" if strict else f">= {minimum}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {noun}, but got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {bound}, but got {text}")
        return value

    return parse


_positive_int = _number(int, 1, strict=False)
_nonnegative_int = _number(int, 0, strict=False)
_positive_float = _number(float, 0, strict=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# ----- commands -----------------------------------------------------------------------------
def cmd_create(args: argparse.Namespace) -> int:
    from .study import create

    target = _target(args)
    study, created = create(target)
    where = redact(target.url)
    logger.info("%s study %r in %s", "created" if created else "found existing",
                study.study_name, where)
    stdout.print(f"study {study.study_name} {'created' if created else 'exists'} in {where}")
    dispose(study._storage)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .export import export_trial
    from .study import create
    from .supervisor import Supervisor, worker_args_for
    from .worker import count_states

    target = _target(args)
    spec = target.spec
    budget = args.trials or spec.trials
    timeout = args.timeout or spec.timeout
    if budget is None and timeout is None:
        raise UsageError(f"{spec.path}: no budget: set budget.trials or budget.timeout in the "
                         "study file, or pass --trials N or --timeout S.")
    study, created = create(target)
    logger.info("%s study %r in %s", "created" if created else "resuming", spec.name,
                redact(target.url))
    supervisor = Supervisor(study, target.url,
                            worker_args_for(spec.path, spec.name, budget, timeout),
                            args.workers, budget, stderr)
    supervisor.log_flags = ["-q"] if args.quiet else ["-v"] * args.verbose
    supervisor.install_signal_handlers()
    if budget is not None and count_states(study).finished >= budget:
        logger.info("the study already has its %d finished trials", budget)
    else:
        supervisor.start()
        supervisor.watch()
    if supervisor.interrupted.is_set():
        name = signal.Signals(supervisor.signum).name
        stderr.print(f"[yellow]stopping: {name}; ending running trials as FAIL[/]")
        supervisor.stop(supervisor.signum)
    counts = count_states(study)
    trial = _print_status(study, counts)
    if supervisor.interrupted.is_set():
        stderr.print(f"stopped by {name}; run the same command again to resume")
        dispose(study._storage)
        return 128 + supervisor.signum
    if trial is None:
        logger.error("study %r has no completed trial to export", study.study_name)
        dispose(study._storage)
        return 1
    export = export_trial(study, spec, trial, target.url)
    out = Path(args.export) if args.export else spec.path.with_name(f"{spec.name}-best.json")
    out.write_text(json.dumps(export, indent=2) + "\n", encoding="utf-8")
    stdout.print(f"best trial {trial.number}: {spec.metric}={trial.value:.4f}")
    stdout.print(f"exported config: {out}")
    stdout.print(f"retrain it with: nnsearch train {out}")
    dispose(study._storage)
    failed_workers = [s for s in supervisor.slots if s.process.returncode not in (0, None)]
    if budget is not None and counts.finished < budget:
        logger.warning("the study stopped at %d of %d finished trials", counts.finished, budget)
        return 1 if failed_workers else 0
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .study import load
    from .worker import Worker

    target = _target(args)
    study, spec = load(target)
    budget = args.trials or spec.trials
    timeout = args.timeout or spec.timeout
    offset = args.sampler_seed_offset
    if offset is None:  # a standalone worker: its own seed, from its host and pid
        offset = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 100_000 + 1
    study = optuna.load_study(study_name=study.study_name, storage=study._storage,
                              sampler=spec.make_sampler(spec.seed + offset),
                              pruner=spec.make_pruner())
    worker = Worker(study, spec, budget, timeout, storage_url=target.url)
    worker.install_signal_handlers()
    try:
        n = worker.run()
    finally:
        worker.close()
    logger.info("worker %s ran %d trial(s)", worker.objective.worker, n)
    return 130 if worker.stop.is_set() else 0


def _print_status(study: optuna.Study, counts: Any) -> FrozenTrial | None:
    """Print the trial counts and the best trial's params; return that trial."""
    table = Table(title=f"study {study.study_name}", show_header=True)
    for col in ("complete", "pruned", "failed", "running", "waiting"):
        table.add_column(col, justify="right")
    table.add_row(*(str(getattr(counts, c)) for c in ("complete", "pruned", "failed",
                                                      "running", "waiting")))
    stdout.print(table)
    from .export import pick_trial

    try:
        best, skipped = pick_trial(study, None)
    except UsageError:
        stdout.print("no completed trial yet")
        return None
    names = study.metric_names or ["value"]
    params = Table(title=f"best trial {best.number}: {names[0]}={best.value:.4f}")
    params.add_column("param")
    params.add_column("value", justify="right")
    for key, value in best.params.items():
        params.add_row(key, _fmt(value))
    for key in ("epochs_run", "n_params", "train_seconds"):
        if key in best.user_attrs:
            params.add_row(f"[dim]{key}[/]", _fmt(best.user_attrs[key]))
    stdout.print(params)
    if skipped:
        stderr.print(f"skipped completed trial(s) {skipped}: not written by a worker")
    return best


def cmd_status(args: argparse.Namespace) -> int:
    from .study import load
    from .worker import count_states

    study, _ = load(_target(args), heartbeat=False)
    counts = count_states(study)
    if args.json:
        from .export import pick_trial

        out: dict[str, Any] = {"study": study.study_name, **counts.__dict__}
        try:
            best, _ = pick_trial(study, None)
            out["best"] = {"number": best.number, "value": best.value, "params": best.params}
        except UsageError:
            out["best"] = None
        stdout.print_json(data=out)
    else:
        _print_status(study, counts)
    dispose(study._storage)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_trial, pick_trial
    from .study import load

    target = _target(args)
    study, spec = load(target, heartbeat=False)
    trial, skipped = pick_trial(study, args.trial)
    if skipped:
        logger.warning("skipped completed trial(s) %s: their values were not written by a "
                       "worker (e.g. set through the dashboard)", skipped)
    text = json.dumps(export_trial(study, spec, trial, target.url), indent=2) + "\n"
    dispose(study._storage)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        logger.info("wrote trial %d to %s", trial.number, args.output)
    else:
        sys.stdout.write(text)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from nnsearch.model import save

    from .export import learning_curve_png, read_export, retrain

    config = read_export(args.config)
    net, history, data, metrics = retrain(config, str(args.config))
    out = Path(args.output) if args.output else Path(args.config).with_suffix(".npz")
    metadata = {"preprocessing": data.preprocessing(), "trial": config["trial"].get("number"),
                "study": config["study"].get("name"), "data_fingerprint": data.fingerprint}
    path = save(net, out, metadata=metadata)
    plot = learning_curve_png(history, path.with_suffix(".png"),
                              f"{config['study'].get('name')} trial "
                              f"{config['trial'].get('number')}")
    metric = config["study"].get("metric", "val_accuracy")
    expected = config["trial"].get("value")
    got = metrics[f"trial_{metric}"]
    if expected is not None:
        if got == expected:
            logger.info("reproduced trial %s's %s=%s exactly", config["trial"].get("number"),
                        metric, expected)
        else:
            logger.warning("trial %s had %s=%s, the retrained network has %s",
                           config["trial"].get("number"), metric, expected, got)
    logger.info("wrote the model to %s and its learning curve to %s", path, plot)
    head = ["val_accuracy", "test_accuracy"] if data.task == "classification" \
        else ["val_rmse", "test_rmse"]
    if args.json:
        sys.stdout.write(json.dumps({k: metrics[k] for k in [*head, "val_loss", "test_loss"]}
                                    | {"model": str(path), "plot": str(plot)}) + "\n")
    else:
        sys.stdout.write(" ".join(f"{k}={metrics[k]:.4f}" for k in head) + "\n")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from nnsearch.model import load

    from .data import read_csv

    model_path = Path(args.model)
    if not model_path.is_file():
        raise UsageError(f"model file not found: {model_path}")
    try:
        net = load(model_path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    prep = getattr(net, "metadata", {}).get("preprocessing")
    if not prep:
        raise UsageError(f"{model_path}: has no preprocessing record; it was not written by "
                         "nnsearch train.")
    data_path = Path(args.data)
    if not data_path.is_file():
        raise UsageError(f"data file not found: {data_path}")
    names: list[str] = prep["feature_names"]
    if data_path.suffix.lower() == ".npz":
        try:
            with np.load(data_path, allow_pickle=False) as npz:
                X = np.asarray(npz["X"], dtype=np.float64)
        except Exception as exc:
            raise UsageError(f"{data_path}: cannot read X from the .npz ({exc}).") from None
    else:
        Xraw, _, header = read_csv(data_path, prep.get("target"), require_target=False)
        missing = [n for n in names if n not in header]
        if missing:
            raise UsageError(f"{data_path}: missing feature column(s) {missing[:5]}; the "
                             f"model needs {len(names)} columns named as in training.")
        X = Xraw[:, [header.index(n) for n in names]]
    if X.ndim != 2 or X.shape[1] != len(names):
        raise UsageError(f"{data_path}: needs {len(names)} feature columns, got "
                         f"{X.shape[1] if X.ndim == 2 else X.shape}.")
    if not np.isfinite(X).all():
        raise UsageError(f"{data_path}: holds NaN, empty or infinite values.")
    Xs = (X - np.asarray(prep["x_mean"])) / np.asarray(prep["x_scale"])
    pred = net.predict(Xs)
    lines = ["prediction"]
    if prep["task"] == "classification":
        classes = prep["classes"]
        lines += [str(classes[int(i)]) for i in pred]
    else:
        values = np.asarray(pred, dtype=np.float64) * prep["y_scale"] + prep["y_mean"]
        lines += [f"{v:.6g}" for v in values]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    url = _storage_url(args)
    checks = diagnose(url, args.workers)
    table = Table(title=f"nnsearch doctor: {redact(url)}, {args.workers} worker(s)")
    for col in ("", "check", "detail"):
        table.add_column(col)
    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    for check in checks:
        table.add_row(marks[check.status], check.name, check.detail)
    stdout.print(table)
    return 1 if any(c.status == "fail" for c in checks) else 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .dashboard import credentials_from_env, is_loopback, make_dashboard, serve

    url = _storage_url(args)
    read_only = args.read_only or not is_loopback(args.host)
    if not args.read_only and read_only:
        logger.info("%s is not a loopback address: serving read-only", args.host)
    credentials = credentials_from_env()
    app = make_dashboard(url, read_only, credentials)
    try:
        server = serve(app, args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}.") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    mode = ", read-only" if read_only else ""
    auth = ", basic auth" if credentials else ""
    stdout.print(f"optuna-dashboard for {redact(url)}{mode}{auth}: "
                 f"http://{host}:{server.server_port}/dashboard/")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report
    from .study import load

    study, _ = load(_target(args), heartbeat=False)
    out = Path(args.out)
    for path in write_report(study, out):
        stdout.print(str(path))
    dispose(study._storage)
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    from .storage import kind, open_storage

    url = _storage_url(args)
    if kind(url) == "grpc":
        raise UsageError("the proxy needs the real storage behind it, not another proxy.")
    try:
        import grpc  # noqa: F401
        from optuna.storages import run_grpc_proxy_server
    except ImportError:
        raise UsageError("nnsearch proxy needs grpcio: pip install 'nnsearch[grpc]'.") from None
    storage = open_storage(url)
    stdout.print(f"storage proxy for {redact(url)} on grpc://{args.host}:{args.port} "
                 "(workers: --storage grpc://HOST:PORT)")
    sys.stdout.flush()
    try:
        run_grpc_proxy_server(storage, host=args.host, port=args.port)
    except KeyboardInterrupt:
        pass
    finally:
        dispose(storage)
    return 0


# ----- the command table --------------------------------------------------------------------
Command = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nnsearch",
        description="Hyperparameter search for from-scratch NumPy networks, on Optuna.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("nnsearch run studies/digits.toml --workers 2",
                         "nnsearch status studies/digits.toml",
                         "nnsearch export studies/digits.toml -o best.json",
                         "nnsearch train best.json"))
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more diagnostics on stderr (-vv: Optuna's too)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Command, help_: str, examples: list[str]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=_examples(*examples))
        p.set_defaults(func=func)
        return p

    p = add("create", cmd_create, "Create the study from its file (once; later calls find it).",
            ["nnsearch create studies/digits.toml",
             "nnsearch create studies/digits.toml --storage postgresql+psycopg://u@db/optuna"])
    _add_study_args(p, file_required=True)

    p = add("run", cmd_run, "Create the study if needed, run N workers to the budget, export "
            "the best trial.",
            ["nnsearch run studies/digits.toml --workers 2",
             "nnsearch run studies/article.toml --trials 50 --timeout 600"])
    _add_study_args(p, file_required=True)
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="worker processes (default 1)")
    _add_budget_args(p)
    p.add_argument("--export", metavar="FILE",
                   help="where to write the best trial's config (default: "
                        "NAME-best.json beside the study file)")

    p = add("worker", cmd_worker, "Run one worker on an existing study (for other machines "
            "and containers).",
            ["nnsearch worker studies/digits.toml --storage postgresql+psycopg://u@db/optuna",
             "NNSEARCH_STORAGE=postgresql+psycopg://u@db/optuna nnsearch worker --study digits"])
    _add_study_args(p)
    _add_budget_args(p)
    p.add_argument("--sampler-seed-offset", type=_nonnegative_int, metavar="K",
                   help=argparse.SUPPRESS)

    p = add("status", cmd_status, "Trials by state, and the best value and params.",
            ["nnsearch status studies/digits.toml",
             "nnsearch status --study digits --storage sqlite:///studies/digits.db --json"])
    _add_study_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")

    p = add("export", cmd_export, "The best trial (or trial N) as a JSON config to retrain "
            "from.",
            ["nnsearch export studies/digits.toml -o best.json",
             "nnsearch export studies/digits.toml --trial 12"])
    _add_study_args(p)
    p.add_argument("--trial", type=_nonnegative_int, metavar="N", help="this trial number")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    p = add("train", cmd_train, "Rebuild and retrain an exported config; print validation and "
            "test metrics.",
            ["nnsearch train best.json", "nnsearch train best.json -o model.npz --json"])
    p.add_argument("config", metavar="CONFIG.json", help="a file written by nnsearch export")
    p.add_argument("-o", "--output", metavar="MODEL.npz",
                   help="where to write the model (default: CONFIG with .npz); the learning "
                        "curve goes beside it as .png")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")

    p = add("doctor", cmd_doctor, "Check a storage for N workers: reachable, schema, "
            "connections, file system.",
            ["nnsearch doctor studies/digits.toml --workers 4",
             "nnsearch doctor --storage postgresql+psycopg://u@db/optuna --workers 32"])
    _add_storage_args(p, "check")
    p.add_argument("--workers", type=_positive_int, default=2, metavar="N",
                   help="workers you plan to run (default 2)")

    p = add("dashboard", cmd_dashboard, "Serve optuna-dashboard for the study's storage "
            "(loopback by default; read-only off loopback).",
            ["nnsearch dashboard studies/digits.toml",
             "nnsearch dashboard --storage postgresql+psycopg://u@db/optuna --host 0.0.0.0",
             "NNSEARCH_DASHBOARD_USER=me NNSEARCH_DASHBOARD_PASSWORD=... nnsearch dashboard "
             "studies/digits.toml"])
    _add_storage_args(p, "serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_nonnegative_int, default=8080,
                   help="port (default 8080; 0 picks a free one)")
    p.add_argument("--read-only", action="store_true",
                   help="refuse every request but GET/HEAD with 403 (the default when --host "
                        "is not loopback)")

    p = add("report", cmd_report, "Static PNGs: optimisation history, parameter importances, "
            "parallel coordinates, learning curves of the top 5.",
            ["nnsearch report studies/digits.toml --out report/"])
    _add_study_args(p)
    p.add_argument("--out", default="report", metavar="DIR",
                   help="folder for the PNGs (default: report)")

    p = add("proxy", cmd_proxy, "Serve the storage to many workers through Optuna's gRPC "
            "proxy (needs the grpc extra).",
            ["nnsearch proxy --storage postgresql+psycopg://u@db/optuna --host 0.0.0.0",
             "nnsearch worker studies/digits.toml --storage grpc://proxy-host:13000"])
    _add_storage_args(p, "put behind the proxy")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_positive_int, default=13000, help="port (default 13000)")

    p = add("predict", cmd_predict, "Predict with a trained model; CSV to stdout.",
            ["nnsearch predict best.npz new_rows.csv > predictions.csv"])
    p.add_argument("model", metavar="MODEL.npz", help="a model written by nnsearch train")
    p.add_argument("data", metavar="DATA.csv",
                   help="rows with the training's feature columns (a target column is ignored)"
                        "; or an .npz with X")
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("nnsearch")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    optuna.logging.set_verbosity(logging.INFO if verbose >= 2 else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"nnsearch {args.command}: error: {exc}", file=sys.stderr)
        return UsageError.exit_code
    except KeyboardInterrupt:
        print(f"nnsearch {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an environment problem: one line, no traceback
        if args.verbose:
            raise
        text = textwrap.shorten(str(exc), 300)
        print(f"nnsearch {args.command}: error: {type(exc).__name__}: {text} (rerun with -v "
              "for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
