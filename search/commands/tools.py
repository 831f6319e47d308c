"""Commands around a study: init, train, predict, doctor, dashboard, proxy."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from ..errors import UsageError, require_file
from ..starter import EXAMPLES
from ._base import (
    Command,
    check_output,
    port,
    port_or_zero,
    positive_int,
    stdout,
    storage_args,
    storage_url,
)

logger = logging.getLogger(__name__)


class InitCommand(Command):
    help = "Write a study file for your table (or a bundled example) to start from."
    examples = ("nnsearch init churn.csv --target churned",
                "nnsearch init data/houses.csv --target price -o houses.toml",
                "nnsearch init --example digits")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("data", metavar="DATA.csv", nargs="?", help="your table (a CSV file "
                       "with a header row)")
        p.add_argument("--target", metavar="COL", help="the column to predict")
        p.add_argument("--example", choices=EXAMPLES, help="write a bundled study instead")
        p.add_argument("-o", "--output", metavar="FILE",
                       help="where to write it ('-': stdout; default: DATA's name with "
                            ".toml in this folder, or EXAMPLE.toml); never overwrites")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..cache import cache_dir, store_cached
        from ..starter import example_text, study_for_table, write_new
        from ..study import target_from_args

        if (args.data is None) == (args.example is None):
            raise UsageError("give a DATA.csv file or --example NAME (one of them).")
        if args.example and args.target:
            raise UsageError("--target goes with a DATA.csv file, not with --example.")
        output = args.output or f"{args.example or Path(args.data).stem}.toml"
        if output != "-":
            check_output(output, overwrite=False)  # before the data is read
        if args.example:
            text = example_text(args.example)
        else:
            text, info = study_for_table(args.data, args.target,
                                         None if output == "-" else Path(output))
            for line in info.lines:
                logger.info("%s", line)
        written = write_new(text, output)
        if written is not None:
            if not args.example and info.data is not None:  # run's first load, done:
                kept = target_from_args(str(written), None, None)  # kept where it looks
                assert kept.spec is not None  # (54k rows: its first trial ~1.5 s sooner)
                store_cached(cache_dir(kept.url), kept.spec.data, info.data)
            logger.info("wrote %s; next: nnsearch run %s --workers 2", written, written)
        return 0


class TrainCommand(Command):
    help = "Rebuild and retrain an exported config; print validation and test metrics."
    examples = ("nnsearch train best.json", "nnsearch train best.json -o model.npz --json")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("config", metavar="CONFIG.json", help="a file written by nnsearch export")
        p.add_argument("-o", "--output", metavar="MODEL.npz",
                       help="where to write the model (default: CONFIG with .npz); the "
                            "learning curve goes beside it as .png")
        p.add_argument("--json", action="store_true", help="print the metrics as JSON")
        p.add_argument("--holdout", action="store_true",
                       help="write the networks the test figure scores (trained without the "
                            "test rows); by default the model is refitted on every row")
        p.add_argument("--seeds", type=int, metavar="K",
                       help="average K networks of the configuration, with other seeds "
                            "(default: 5 up to 10,000 rows, fewer where they would cost over "
                            "~30 s more, else 1; 1: the trial's alone; "
                            "an ensemble export: K for each member)")

    def take_action(self, args: argparse.Namespace) -> int:
        from nnsearch.model import Ensemble, Network, save

        from ..ensemble import is_ensemble
        from ..export import check_export, check_reproduction, load_json, refit_all, retrain
        from ..plots import learning_curve_png
        from ..seeds import MAX_SEEDS, default_seeds, seed_members

        if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
            raise UsageError(f"--seeds must be in [1, {MAX_SEEDS}], but got {args.seeds}.")
        config = load_json(args.config)
        if is_ensemble(config):
            return self._train_ensemble(config, args)
        config = check_export(config, str(args.config))
        out = check_output(args.output or str(Path(args.config).with_suffix(".npz")))
        net, history, data, metrics = retrain(config, str(args.config))
        mismatch = check_reproduction(config, metrics)
        nets, configs, epochs = seed_members(config, data, net, history, metrics,
                                             args.seeds or default_seeds(data, config)) \
            if not mismatch else ([net], [config], [0])
        if not args.holdout and not mismatch:  # the epochs the search found, on every row
            refits = []
            for c, e in zip(configs, epochs, strict=True):
                try:
                    refits.append(refit_all(c, data, e))
                except UsageError as exc:  # a diverged refit: that seed is left out
                    logger.warning("seed %s left out of the model: %s", c["seed"], exc)
            if refits:
                nets, metrics["model_rows"] = [n for n, _ in refits], refits[0][1]
            else:
                logger.warning("every refit on every row diverged: the model is the "
                               "network(s) trained without the test rows, as the test "
                               "figure scores them")
        model: Network | Ensemble = nets[0] if len(nets) == 1 else Ensemble(nets)
        study, number = config["study"].get("name"), config["trial"].get("number")
        metadata = {"preprocessing": data.preprocessing(), "trial": number, "study": study,
                    "data_fingerprint": data.fingerprint}
        path = save(model, out, metadata=metadata)
        plot = learning_curve_png(history, path.with_suffix(".png"), f"{study} trial {number}")
        logger.info("wrote the model to %s and its learning curve to %s", path, plot)
        head = ["val_accuracy", "test_accuracy"] if data.task == "classification" \
            else ["val_rmse", "test_rmse"]
        if args.json:
            shown = {k: metrics[k] for k in [*head, "val_sd", "val_loss", "test_loss", "folds",
                                             "refit_epochs", "seeds", f"{head[1]}_single",
                                             "model_rows"] if k in metrics}
            sys.stdout.write(json.dumps(shown | {"model": str(path), "plot": str(plot)}) + "\n")
        else:
            line = " ".join(f"{k}={metrics[k]:.4f}" + (f" ± {metrics['val_sd']:.4f}"
                                                         if k.startswith("val_") and
                                                         "val_sd" in metrics else "")
                            for k in head)
            if "folds" in metrics:  # val_*: the folds' mean (± their sd); test_*: the refit's
                line += (f" (val: mean ± sd of {metrics['folds']} folds; test: refitted on "
                         f"train + validation for {metrics['refit_epochs']} epochs)")
            if "seeds" in metrics:
                line += (f"; test: the average of {metrics['seeds']} seeds (the trial's alone: "
                         f"{metrics[f'{head[1]}_single']:.4f})")
            if "model_rows" in metrics:
                line += f"; the model: refitted on all {metrics['model_rows']} rows"
            sys.stdout.write(line + "\n")
        if mismatch:
            print(f"nnsearch train: error: {mismatch}", file=sys.stderr)
            return 1
        return 0

    @staticmethod
    def _train_ensemble(config: dict[str, Any], args: argparse.Namespace) -> int:
        """An ``nnsearch.ensemble/1`` export: every member refitted (``train_members``);
        the ensemble's test figure, then each member's."""
        from nnsearch.model import save

        from ..ensemble_train import train_members
        from ..plots import learning_curve_png

        out = check_output(args.output or str(Path(args.config).with_suffix(".npz")))
        trained = train_members(config, str(args.config), args.seeds, args.holdout)
        data, metrics = trained.data, trained.metrics
        study = config["study"].get("name")
        numbers = [n for n, _, _ in trained.members]
        metadata = {"preprocessing": data.preprocessing(), "trials": numbers, "study": study,
                    "data_fingerprint": data.fingerprint}
        path = save(trained.model, out, metadata=metadata)
        plot = learning_curve_png(trained.history, path.with_suffix(".png"),
                                  f"{study} trial {numbers[0]}")
        logger.info("wrote the model (%d networks) to %s and the first member's learning "
                    "curve to %s", metrics["networks"], path, plot)
        test = "test_accuracy" if data.task == "classification" else "test_rmse"
        estimate = config.get("estimate") or {}
        metric = str(config["study"].get("metric"))
        mean, sd, folds = (estimate.get(k) for k in ("mean", "sd", "folds"))
        if args.json:
            shown = {metric: mean, "val_sd": sd, "folds": folds, test: metrics[test],
                     "test_loss": metrics["test_loss"], "members": [
                         {"trial": n, "weight": w, test: m[test],
                          f"trial_{metric}": m.get(f"trial_{metric}")}
                         for n, w, m in trained.members]}
            sys.stdout.write(json.dumps(shown | {"model": str(path), "plot": str(plot)}) + "\n")
        else:
            line = f"{test}={metrics[test]:.4f}"
            if isinstance(mean, int | float):
                line = f"{metric}={mean:.4f}" + (f" ± {sd:.4f}" if isinstance(
                    sd, int | float) else "") + " " + line
                line += (" (val: the ensemble's predictions on rows its members did not "
                         "train on" + (f", mean ± sd of {folds} folds" if folds else "") + ";")
            else:
                line += " ("
            line += f" test: the ensemble of {len(numbers)} trials)"
            sys.stdout.write(line + "\n")
            for n, w, m in trained.members:
                sys.stdout.write(f"  trial {n} (weight {w:.2f}): {test}={m[test]:.4f}\n")
            if trained.all_rows:
                sys.stdout.write("the model: refitted on every row\n")
        for mismatch in trained.mismatches:
            print(f"nnsearch train: error: {mismatch}", file=sys.stderr)
        return 1 if trained.mismatches else 0


class PredictCommand(Command):
    help = "Predict with a trained model; CSV to stdout."
    examples = ("nnsearch predict best.npz new_rows.csv > predictions.csv",
                "nnsearch predict best.npz new_rows.csv --proba")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("model", metavar="MODEL.npz", help="a model written by nnsearch train")
        p.add_argument("data", metavar="DATA.csv",
                       help="rows with the training's columns, found by name in any order "
                            "(others, and a target column, are ignored); or an .npz with X")
        p.add_argument("--proba", action="store_true",
                       help="add one column per class with its probability (classification)")

    def take_action(self, args: argparse.Namespace) -> int:
        from nnsearch.model import load

        from ..data import decode_predictions
        from ..readers import read_rows
        from ..tabular import OTHER, Preprocessor

        model_path = Path(args.model)
        require_file(model_path, "model file")
        require_file(args.data, "data file")  # before the model is read
        try:
            net = load(model_path)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        record = getattr(net, "metadata", {}).get("preprocessing")
        if not record:
            raise UsageError(f"{model_path}: has no preprocessing record; it was not written "
                             "by nnsearch train.")
        if args.proba and record["task"] != "classification":
            raise UsageError("--proba needs a classification model; this one is regression.")
        prep = Preprocessor.from_dict(record)
        table = read_rows(Path(args.data), prep.columns)
        unseen = prep.unseen(table)
        if unseen:
            counts = ", ".join(f"{name}: {n}" for name, n in unseen.items())
            logger.warning("rows with a category not seen in training, taken as %s: %s",
                           OTHER, counts)
        X = prep.transform(table)
        if X.shape[1] != net.n_inputs:
            raise UsageError(f"{model_path}: its preprocessing gives {X.shape[1]} inputs, but "
                             f"the network takes {net.n_inputs}.")
        header = ["prediction"]
        rows = [[p] for p in decode_predictions(net.predict(X), record)]
        if args.proba:
            header += [f"p({c})" for c in record["classes"]]
            for row, probs in zip(rows, net.predict_proba(X), strict=True):
                row.extend(f"{v:.6g}" for v in probs)
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *rows])
        sys.stdout.write(out.getvalue())
        return 0


class DoctorCommand(Command):
    help = "Check a storage for N workers: reachable, schema, connections, file system."
    examples = ("nnsearch doctor studies/digits.toml --workers 4",
                "nnsearch doctor --storage postgresql+psycopg://u@db/optuna --workers 32")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        storage_args(p, "check")
        p.add_argument("--workers", type=positive_int, default=2, metavar="N",
                       help="workers you plan to run (default 2)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..doctor import diagnose

        url = storage_url(args)
        checks = diagnose(url, args.workers)
        table = Table(title=f"nnsearch doctor: {url}, {args.workers} worker(s)")
        for col in ("", "check", "detail"):
            table.add_column(col)
        marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
        for check in checks:
            table.add_row(marks[check.status], check.name, check.detail)
        stdout.print(table)
        return 1 if any(c.status == "fail" for c in checks) else 0


class DashboardCommand(Command):
    help = ("Serve optuna-dashboard for the study's storage (loopback by default; read-only "
            "off loopback).")
    examples = ("nnsearch dashboard studies/digits.toml",
                "nnsearch dashboard --storage postgresql+psycopg://u@db/optuna --host 0.0.0.0",
                "NNSEARCH_DASHBOARD_USER=me NNSEARCH_DASHBOARD_PASSWORD=... nnsearch dashboard "
                "studies/digits.toml --host 0.0.0.0 --certfile cert.pem --keyfile key.pem")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        storage_args(p, "serve")
        p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        p.add_argument("--port", type=port_or_zero, default=8080,
                       help="port (default 8080; 0 picks a free one)")
        p.add_argument("--read-only", action="store_true",
                       help="refuse every request but GET/HEAD with 403 (the default when "
                            "--host is not loopback)")
        p.add_argument("--certfile", metavar="PEM",
                       help="serve HTTPS with this certificate (chain); its key too, unless "
                            "--keyfile is given")
        p.add_argument("--keyfile", metavar="PEM", help="the certificate's private key")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..dashboard import (
            credentials_from_env,
            is_loopback,
            make_dashboard,
            serve,
            tls_context,
        )

        url = storage_url(args)
        loopback = is_loopback(args.host)
        read_only = args.read_only or not loopback
        if not args.read_only and read_only:
            logger.info("%s is not a loopback address: serving read-only", args.host)
        credentials = credentials_from_env()
        if args.keyfile and not args.certfile:
            raise UsageError("--keyfile needs --certfile (the certificate it belongs to).")
        tls = tls_context(args.certfile, args.keyfile) if args.certfile else None
        if credentials and not loopback and tls is None:
            logger.warning("basic auth over plain HTTP on %s: the password crosses the network "
                           "in clear; add --certfile/--keyfile or a TLS proxy", args.host)
        app = make_dashboard(url, read_only, credentials, args.host if loopback else None)
        try:
            server = serve(app, args.host, args.port, tls)
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}.") \
                from None
        host = f"[{args.host}]" if ":" in args.host else args.host
        mode = ", read-only" if read_only else ""
        auth = ", basic auth" if credentials else ""
        scheme = "https" if tls else "http"
        stdout.print(f"optuna-dashboard for {url}{mode}{auth}: "
                     f"{scheme}://{host}:{server.server_port}/dashboard/")
        sys.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return 0


class ProxyCommand(Command):
    help = ("Serve the storage to many workers through Optuna's gRPC proxy (needs the grpc "
            "extra).")
    examples = ("nnsearch proxy --storage postgresql+psycopg://u@db/optuna --host 0.0.0.0",
                "nnsearch worker studies/digits.toml --storage grpc://proxy-host:13000")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        storage_args(p, "put behind the proxy")
        p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        p.add_argument("--port", type=port, default=13000, help="port (default 13000)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..storage import dispose, open_storage

        url = storage_url(args)
        if url.kind == "grpc":
            raise UsageError("the proxy needs the real storage behind it, not another proxy.")
        try:
            import grpc  # noqa: F401
            from optuna.storages import run_grpc_proxy_server
        except ImportError:
            raise UsageError("nnsearch proxy needs grpcio: pip install 'nnsearch[grpc]'.") \
                from None
        storage = open_storage(url)
        stdout.print(f"storage proxy for {url} on grpc://{args.host}:{args.port} "
                     "(workers: --storage grpc://HOST:PORT)")
        sys.stdout.flush()
        try:
            run_grpc_proxy_server(storage, host=args.host, port=args.port)
        except KeyboardInterrupt:
            pass
        finally:
            dispose(storage)
        return 0
