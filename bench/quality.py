"""Quality: nnsearch's default study against what a user would otherwise reach for.

On each bundled dataset (digits, wine, breast_cancer, iris: test accuracy; diabetes:
test RMSE in the target's units) and each split seed (default 0, 1, 2), four sides
share one split -- nnsearch's own ``split_rows`` with the DataSpec the study file
gives (validation 0.2, test 0.2, ``data.seed`` = the split seed, stratified for
classification; with ``data.folds`` its folds over train + validation) -- and the
first two the same wall time:

- nnsearch: the default study file (--study, default studies/digits.toml) pointed
  at the dataset as a user would: copied into a temporary folder with
  ``data.source`` and ``data.seed`` set, the image-only keys (``shift``,
  ``image_shape``) dropped for a dataset that is not images, ``study.metric`` (and
  ``study.direction``) dropped if it does not apply to the task, and
  ``budget.trials`` dropped; every other key as the file has it. Then
  ``nnsearch -q run FILE --workers W --timeout S`` (its wall time is recorded) and
  ``nnsearch train NAME-best.json --json`` for the held-out test metric.
- (a) Optuna TPE over scikit-learn's MLPClassifier / MLPRegressor: depth 1-3, a width
  per layer (16-512, log), activation (relu, tanh, logistic), alpha (1e-6..1e-1, log),
  learning_rate_init (1e-4..1e-1, log), batch_size (16..256, log); StandardScaler
  fitted on train, the regression target standardised on train; fitted on train,
  scored on validation (with folds: the mean over the folds). W processes share one
  study (a journal file), each ``study.optimize(timeout=S)`` with one BLAS thread,
  TPE seeded (--sampler-seed + the process's index). The best trial's parameters
  are refitted on train (the same random_state) and scored on test.
- (b) scikit-learn's MLP with its defaults (random_state fixed; StandardScaler, and the
  regression target standardised, as in (a)), fitted on train + validation.
- (c) HistGradientBoostingClassifier / Regressor with its defaults (random_state
  fixed), fitted on train + validation.

The table gives each side's mean over the seeds, nnsearch's median wall time, and
whether nnsearch is at or above the better of (a) and (b) (for RMSE: at or below);
the goal is that it is, on every dataset. Progress goes to stderr as each side of
each (dataset, seed) finishes. The default run (5 datasets x 3 seeds x 2 searches of
60 s) takes about 35 minutes on 2 cores.

Run: python bench/quality.py [--datasets digits,wine,breast_cancer,iris,diabetes]
     [--seeds 0,1,2] [--seconds 60] [--workers 2] [--study studies/digits.toml]
     [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import multiprocessing
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from threadpoolctl import threadpool_limits

from nnsearch.search.builtin import BUILTIN, raw_builtin
from nnsearch.search.data import IMAGE_SHAPES, DataSpec, fold_rows, load_data, split_rows
from nnsearch.search.errors import UsageError
from nnsearch.search.studyfile import METRICS, load_study_file

ROOT = Path(__file__).resolve().parents[1]
NNSEARCH = [sys.executable, "-P", "-m", "nnsearch"]  # -P: nothing in the cwd shadows it
DATASETS = ("digits", "wine", "breast_cancer", "iris", "diabetes")
SIDES = ("nnsearch", "a", "b", "c")
LABELS = {"nnsearch": "nnsearch", "a": "(a) TPE+MLP", "b": "(b) MLP defaults",
          "c": "(c) HGB defaults"}
RANDOM_STATE = 0  # every scikit-learn model's
ENV_STORAGE = "NNSEARCH_STORAGE"  # would point nnsearch away from the temporary SQLite file


# --- the study file, pointed at a dataset ------------------------------------------------

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def dump_toml(doc: dict[str, Any]) -> str:
    """Tables of keys (a table within a table inline): what a study file holds. tomli_w
    is not a dependency; the text is read back and checked against ``doc``."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items()
             if not isinstance(v, dict)]
    for section, table in doc.items():
        if isinstance(table, dict):
            lines += ["", f"[{_toml_key(section)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    text = "\n".join(lines).lstrip("\n") + "\n"
    if tomllib.loads(text) != doc:
        raise ValueError("the study file did not survive the round trip through TOML")
    return text


def point_study(raw: dict[str, Any], dataset: str, seed: int) -> dict[str, Any]:
    """The study file as a user would point it at ``dataset`` with split seed ``seed``."""
    doc = copy.deepcopy(raw)
    data = doc.setdefault("data", {})
    data["source"], data["seed"] = dataset, seed
    # A bundled set has its own task, and the CSV keys do not apply to it.
    for key in ("task", "target", "drop", "categorical"):
        data.pop(key, None)
    if dataset not in IMAGE_SHAPES:
        data.pop("shift", None)
        data.pop("image_shape", None)
    study = doc.setdefault("study", {})
    task = BUILTIN[dataset]
    if task not in METRICS.get(study.get("metric", ""), ("", ()))[1]:
        study.pop("metric", None)  # one that does not apply to the task (val_accuracy on
        study.pop("direction", None)  # a regression): the task's default applies
    budget = doc.get("budget", {})
    budget.pop("trials", None)
    if "budget" in doc and not budget:
        del doc["budget"]
    return doc


# --- the split ---------------------------------------------------------------------------

@dataclasses.dataclass
class Split:
    task: str
    X: np.ndarray
    y: np.ndarray  # classification: class indices; regression: the target's units
    train: np.ndarray  # with folds: train + validation
    val: np.ndarray  # with folds: empty
    test: np.ndarray
    fold_ids: np.ndarray | None  # with folds: each train row's fold

    def pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(fit rows, validation rows) for one trial: one pair, or one per fold."""
        if self.fold_ids is None:
            return [(self.train, self.val)]
        return [(self.train[self.fold_ids != k], self.train[self.fold_ids == k])
                for k in range(int(self.fold_ids.max()) + 1)]


def make_split(spec: DataSpec) -> Split:
    """The rows nnsearch's study uses, checked against nnsearch's own ``load_data``."""
    task = BUILTIN[spec.source]
    X, y_raw, _ = raw_builtin(spec.source)
    if task == "classification":
        y = np.unique(y_raw, return_inverse=True)[1].astype(np.intp)
        stratify: np.ndarray | None = y
    else:
        y, stratify = y_raw.astype(np.float64), None
    fold_ids = None
    if spec.folds:
        train, fold_ids, test = fold_rows(spec, len(y), stratify)
        val = train[:0]
    else:
        train, val, test = split_rows(spec, len(y), stratify)
    loaded = load_data(dataclasses.replace(spec, shift=0))  # the shift changes no split
    got = loaded.y_test if task == "classification" else \
        loaded.y_test * loaded.y_scale + loaded.y_mean
    if len(got) != len(test) or not np.allclose(got, y[test]):
        raise SystemExit(f"{spec.source} seed {spec.seed}: the test rows differ from those "
                         "of nnsearch's load_data; the comparison would not be on one split.")
    return Split(task, X, y, train, val, test, fold_ids)


# --- scikit-learn sides ------------------------------------------------------------------

def _prepare(split: Split, fit_rows: np.ndarray, rows: np.ndarray) -> tuple[Any, ...]:
    """(X_fit, y_fit, X_rows, y_rows, y_mean, y_scale): features scaled on the fit rows,
    a regression target standardised on them (y_rows stays in the target's units)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(split.X[fit_rows])
    y_fit = split.y[fit_rows]
    mean, scale = 0.0, 1.0
    if split.task == "regression":
        mean, scale = float(y_fit.mean()), float(y_fit.std()) or 1.0
        y_fit = (y_fit - mean) / scale
    return (scaler.transform(split.X[fit_rows]), y_fit, scaler.transform(split.X[rows]),
            split.y[rows], mean, scale)


def score(task: str, model: Any, X: np.ndarray, y: np.ndarray, mean: float = 0.0,
          scale: float = 1.0) -> float:
    """Accuracy, or RMSE in the target's units (NaN if the model diverged)."""
    with np.errstate(all="ignore"):
        pred = model.predict(X)
        if task == "classification":
            return float(np.mean(pred == y))
        rmse = float(np.sqrt(np.mean((pred * scale + mean - y) ** 2)))
    return rmse if math.isfinite(rmse) else math.nan


def make_mlp(task: str, params: dict[str, Any], n_rows: int) -> Any:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = MLPClassifier if task == "classification" else MLPRegressor
    if not params:
        return cls(random_state=RANDOM_STATE)
    widths = tuple(params[f"width_{i}"] for i in range(params["n_layers"]))
    return cls(hidden_layer_sizes=widths, activation=params["activation"],
               alpha=params["alpha"], learning_rate_init=params["learning_rate_init"],
               batch_size=min(params["batch_size"], n_rows),  # what MLP* clip it to, quietly
               random_state=RANDOM_STATE)


def quiet_sklearn() -> None:
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a diverged trial's NaN: failed


def fit_mlp(task: str, params: dict[str, Any], prepared: tuple[Any, ...]) -> Any:
    X_fit, y_fit = prepared[0], prepared[1]
    model = make_mlp(task, params, len(X_fit))
    with np.errstate(all="ignore"):
        model.fit(X_fit, y_fit)
    return model


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    n_layers = trial.suggest_int("n_layers", 1, 3)
    for i in range(n_layers):
        trial.suggest_int(f"width_{i}", 16, 512, log=True)
    trial.suggest_categorical("activation", ["relu", "tanh", "logistic"])
    trial.suggest_float("alpha", 1e-6, 1e-1, log=True)
    trial.suggest_float("learning_rate_init", 1e-4, 1e-1, log=True)
    trial.suggest_int("batch_size", 16, 256, log=True)
    return dict(trial.params)


def journal(path: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(path))


def tpe_worker(path: str, seed: int, seconds: float, task: str,
               folds: list[tuple[Any, ...]]) -> None:
    """One process of side (a): TPE over the MLP, sharing the study in ``path``."""
    quiet_sklearn()

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial)
        values = [score(task, fit_mlp(task, params, f), f[2], f[3], f[4], f[5]) for f in folds]
        return float(np.mean(values))

    with threadpool_limits(1):
        study = optuna.load_study(study_name="mlp", storage=journal(path),
                                  sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(objective, timeout=seconds)


def tpe_search(path: str, task: str, worker: Any, args_of: Any, n: int
               ) -> tuple[optuna.Study, float, list[int | None]]:
    """(a)'s search: a study in the journal file ``path`` that ``n`` spawned processes of
    ``worker(*args_of(i))`` share; the study, the wall time and their exit codes."""
    direction = "maximize" if task == "classification" else "minimize"
    optuna.create_study(study_name="mlp", storage=journal(path), direction=direction)
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    procs = [ctx.Process(target=worker, args=args_of(i)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name="mlp", storage=journal(path))
    return study, wall, [p.exitcode for p in procs]


def run_tpe(split: Split, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    folds = [_prepare(split, fit_rows, rows) for fit_rows, rows in split.pairs()]
    path = str(tmp / "mlp.journal")
    study, wall, exitcodes = tpe_search(
        path, split.task, tpe_worker,
        lambda i: (path, args.sampler_seed + i, args.seconds, split.task, folds), args.workers)
    trials = study.get_trials(deepcopy=False)
    out: dict[str, Any] = {"wall": wall, "trials": len(trials),
                           "failed": sum(t.state.name == "FAIL" for t in trials),
                           "exitcodes": exitcodes}
    try:
        best = study.best_trial
    except ValueError:
        return out | {"test": math.nan, "error": "no completed trial"}
    quiet_sklearn()
    with threadpool_limits(1):
        refit = _prepare(split, split.train, split.test)
        model = fit_mlp(split.task, best.params, refit)
        test = score(split.task, model, *refit[2:])
        val = math.nan
        if split.fold_ids is None:  # the refit on train reproduces the trial's model
            val = score(split.task, model, *_prepare(split, split.train, split.val)[2:])
    return out | {"test": test, "val_best": best.value, "val_refit": val,
                  "params": best.params, "trial": best.number}


def run_defaults(split: Split, side: str) -> dict[str, Any]:
    """(b) the MLP or (c) histogram gradient boosting, defaults, on train + validation."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    fit_rows = np.concatenate([split.train, split.val])
    quiet_sklearn()
    start = time.perf_counter()
    with threadpool_limits(1):
        if side == "b":
            prepared = _prepare(split, fit_rows, split.test)
            test = score(split.task, fit_mlp(split.task, {}, prepared), *prepared[2:])
        else:
            cls = HistGradientBoostingClassifier if split.task == "classification" else \
                HistGradientBoostingRegressor
            model = cls(random_state=RANDOM_STATE).fit(split.X[fit_rows], split.y[fit_rows])
            test = score(split.task, model, split.X[split.test], split.y[split.test])
    return {"test": test, "wall": time.perf_counter() - start}


# --- the nnsearch side -------------------------------------------------------------------

def run_nnsearch(doc: dict[str, Any], folder: Path, args: argparse.Namespace,
                 error: str | None) -> dict[str, Any]:
    if error:
        return {"test": math.nan, "wall": math.nan, "error": error}
    toml = folder / "study.toml"
    env = {k: v for k, v in os.environ.items() if k != ENV_STORAGE}
    cmd = [*NNSEARCH, "-q", "run", str(toml), "--workers", str(args.workers),
           "--timeout", str(args.seconds)]
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    out: dict[str, Any] = {"wall": wall, "test": math.nan}
    try:
        study = optuna.load_study(study_name=doc["study"]["name"],
                                  storage=f"sqlite:///{toml.with_suffix('.db')}")
        trials = study.get_trials(deepcopy=False)
        out |= {"trials": len(trials), "pruned": sum(t.state.name == "PRUNED" for t in trials),
                "failed": sum(t.state.name == "FAIL" for t in trials)}
    except Exception as exc:  # the table still wants the test figure if there is one
        out["trials_error"] = str(exc)
    best = folder / f"{doc['study']['name']}-best.json"
    if res.returncode != 0 or not best.is_file():
        return out | {"error": f"run exited {res.returncode}: {_tail(res.stderr)}"}
    res = subprocess.run([*NNSEARCH, "-q", "train", str(best), "--json"], cwd=folder, env=env,
                         capture_output=True, text=True)
    lines = res.stdout.strip().splitlines()
    if not lines:
        return out | {"error": f"train exited {res.returncode}: {_tail(res.stderr)}"}
    metrics = json.loads(lines[-1])
    out |= {"metrics": metrics,
            "test": metrics.get("test_accuracy", metrics.get("test_rmse", math.nan))}
    if res.returncode != 0:  # e.g. the retrained network did not reproduce its trial
        out["train_warning"] = f"train exited {res.returncode}: {_tail(res.stderr)}"
    return out


def _tail(text: str, n: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


# --- report ------------------------------------------------------------------------------

def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return f"{model}, {os.cpu_count()} cores" + (f" ({usable} usable)" if usable else "")


def fmt(value: float, task: str) -> str:
    if value is None or not math.isfinite(value):
        return "failed"
    return f"{value:.4f}" if task == "classification" else f"{value:.2f}"


def at_least(nn: float, other: float, task: str) -> bool:
    if not (math.isfinite(nn) and math.isfinite(other)):
        return False
    return nn >= other - 1e-9 if task == "classification" else nn <= other + 1e-9


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    summary = {}
    for dataset, runs in results.items():
        task = BUILTIN[dataset]
        means = {side: float(np.mean([r[side]["test"] for r in runs.values()]))
                 for side in SIDES}
        pick = max if task == "classification" else min
        ab = [means["a"], means["b"]]
        better = pick(ab) if all(math.isfinite(v) for v in ab) else math.nan
        walls = [r["nnsearch"]["wall"] for r in runs.values()
                 if math.isfinite(r["nnsearch"]["wall"])]
        summary[dataset] = {"task": task, "means": means, "better_ab": better,
                            "wall_median": statistics.median(walls) if walls else math.nan,
                            "met": at_least(means["nnsearch"], better, task)}
    return summary


def print_report(results: dict[str, Any], summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    seeds = sorted({s for runs in results.values() for s in runs})
    table = Table(title=f"test metric, mean over {len(seeds)} split seed(s)",
                  caption="(b), (c): scikit-learn's defaults. wall s: nnsearch's median. "
                  "last column: nnsearch at least as good as the better of (a) and (b) "
                  "(RMSE: at or below it)")
    for col in ("dataset", "metric", "nnsearch", "(a) TPE+MLP", "(b) MLP", "(c) HGB",
                "wall s", "goal"):
        table.add_column(col, justify="left" if col in ("dataset", "metric") else "right")
    for dataset, s in summary.items():
        task = s["task"]
        table.add_row(dataset, "accuracy" if task == "classification" else "RMSE",
                      *(fmt(s["means"][side], task) for side in SIDES),
                      f"{s['wall_median']:.1f}",
                      f"{'yes' if s['met'] else 'no'} (vs {fmt(s['better_ab'], task)})")
    console.print(table)
    print("\nper seed (nnsearch and (a): test, wall s, trials):")
    for dataset, runs in results.items():
        task = BUILTIN[dataset]
        for seed, r in runs.items():
            nn, a = r["nnsearch"], r["a"]
            print(f"  {dataset:<14} seed {seed}: nnsearch {fmt(nn['test'], task)} "
                  f"({nn['wall']:.1f} s, {nn.get('trials', '?')} trials)  "
                  f"a {fmt(a['test'], task)} ({a['wall']:.1f} s, {a.get('trials', '?')} trials)  "
                  f"b {fmt(r['b']['test'], task)}  c {fmt(r['c']['test'], task)}")
            for side in SIDES:
                for key in ("error", "train_warning"):
                    if r[side].get(key):
                        print(f"    {side} {key}: {r[side][key]}")
    missed = [d for d, s in summary.items() if not s["met"]]
    print("\ngoal (nnsearch >= max(a, b) on every dataset; RMSE: <= min): "
          + ("goal met" if not missed else f"goal not met on: {', '.join(missed)}"))


def progress(step: int, total: int, dataset: str, seed: int, side: str, r: dict[str, Any],
             task: str) -> None:
    extra = f", {r['trials']} trials" if "trials" in r else ""
    error = f"  [{r['error']}]" if r.get("error") else ""
    print(f"[{step}/{total}] {dataset} seed {seed} {LABELS[side]}: test "
          f"{'accuracy' if task == 'classification' else 'RMSE'} {fmt(r['test'], task)} "
          f"({r.get('wall', math.nan):.1f} s{extra}){error}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated (default {','.join(DATASETS)})")
    parser.add_argument("--seeds", default="0,1,2", help="split seeds (default 0,1,2)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="each search's time budget (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="processes per search (default 2)")
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "digits.toml",
                        help="the default study file (default studies/digits.toml)")
    parser.add_argument("--sampler-seed", type=int, default=42,
                        help="(a)'s TPE seed; process i uses it + i (default 42)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure here")
    args = parser.parse_args()
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in BUILTIN]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; valid: {', '.join(BUILTIN)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    raw = tomllib.loads(args.study.read_text(encoding="utf-8"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    print(f"machine: {machine()}")
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"study file: {args.study}; {args.seconds:g} s per search, {args.workers} workers\n",
          flush=True)

    results: dict[str, dict[int, dict[str, Any]]] = {}
    total, step = len(datasets) * len(seeds) * len(SIDES), 0
    with tempfile.TemporaryDirectory(prefix="nnsearch-quality-") as tmp:
        for dataset in datasets:
            task = BUILTIN[dataset]
            for seed in seeds:
                folder = Path(tmp) / f"{dataset}-{seed}"
                folder.mkdir()
                doc = point_study(raw, dataset, seed)
                error = None
                try:
                    (folder / "study.toml").write_text(dump_toml(doc), encoding="utf-8")
                    spec = load_study_file(folder / "study.toml").data
                except (UsageError, TypeError, ValueError) as exc:
                    error = f"the study file pointed at {dataset}: {exc}"
                    data = doc.get("data", {})
                    spec = DataSpec(dataset, validation=data.get("validation", 0.2),
                                    test=data.get("test", 0.2), seed=seed)
                split = make_split(spec)
                run: dict[str, Any] = {}
                for side in SIDES:
                    if side == "nnsearch":
                        r = run_nnsearch(doc, folder, args, error)
                    elif side == "a":
                        r = run_tpe(split, args, folder)
                    else:
                        r = run_defaults(split, side)
                    run[side] = r
                    step += 1
                    progress(step, total, dataset, seed, side, r, task)
                results.setdefault(dataset, {})[seed] = run
    summary = summarise(results)
    print()
    print_report(results, summary)
    if args.json:
        payload = {"machine": machine(), "command": sys.argv, "study": str(args.study),
                   "seconds": args.seconds, "workers": args.workers, "results": results,
                   "summary": summary}
        args.json.write_text(json.dumps(payload, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
