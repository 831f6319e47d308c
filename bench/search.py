"""The digits search end to end, against the article's original configuration.

1. Runs studies/digits.toml to its budget with 2 workers on a fresh SQLite file
   (the README's main job), exports the best trial and retrains it:
   wall time, time to the first trial with val_accuracy >= 0.97, test accuracy.
2. Runs the same study with the pruner switched to "none" for the same number
   of trials: total epochs trained and best accuracy, with and without pruning.
3. Times the article's own trial (one hidden layer of 64 sigmoid units, full-batch
   gradient descent, 10,000 epochs): 500 epochs are timed and extrapolated.

The search is repeated (--repeats, default 3) because with 2 workers TPE's
sequence depends on timing: the table quotes each run and the median.

Run: python bench/search.py [--trials N] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from threadpoolctl import threadpool_limits

from nnsearch.model import Network, TrainConfig, evaluate, fit
from nnsearch.search.data import DataSpec, load_data

ROOT = Path(__file__).resolve().parents[1]
NNSEARCH = [sys.executable, "-P", "-m", "nnsearch"]  # -P: nothing in the cwd shadows it
ARTICLE_EPOCHS, TIMED_EPOCHS, ARTICLE_TRIALS = 10_000, 500, 100


def run_study(toml: Path, workers: int, trials: int | None) -> tuple[float, Path]:
    cmd = [*NNSEARCH, "-q", "run", str(toml), "--workers", str(workers)]
    if trials:
        cmd += ["--trials", str(trials)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, toml.with_suffix(".db")


def study_stats(db: Path, name: str) -> dict[str, float]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    start = min(t.datetime_start for t in trials if t.datetime_start)
    def accuracy(t: optuna.trial.FrozenTrial) -> float:
        return t.user_attrs.get("val_accuracy", t.value) or 0.0

    good = [t for t in trials if t.state.name == "COMPLETE" and accuracy(t) >= 0.97]
    first = min((t.datetime_complete for t in good), default=None)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    return {
        "trials": len(trials),
        "complete": len(complete),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "epochs": sum(t.user_attrs.get("epochs_run", 0) for t in trials),
        "best_val": max((accuracy(t) for t in complete), default=float("nan")),
        "first_97": (first - start).total_seconds() if first else float("nan"),
    }


def retrain(db: Path, toml: Path, out: Path) -> dict[str, float]:
    subprocess.run([*NNSEARCH, "-q", "export", str(toml), "-o", str(out)],
                   check=True)
    res = subprocess.run([*NNSEARCH, "-q", "train", str(out), "--json"],
                         check=True, capture_output=True, text=True)
    return json.loads(res.stdout)


def time_article() -> tuple[float, float]:
    data = load_data(DataSpec("digits"))
    net = Network([64, 64, 10], activation="sigmoid", init="glorot_uniform", seed=0)
    cfg = TrainConfig(epochs=TIMED_EPOCHS, batch_size="full", learning_rate=0.1,
                      optimizer="sgd", clip_type="norm", clip_value=1.0, patience=None,
                      log_every=0)
    with threadpool_limits(1):
        start = time.perf_counter()
        fit(net, data.X_train, data.y_train, data.X_val, data.y_val, cfg)
        per_epoch = (time.perf_counter() - start) / TIMED_EPOCHS
    return per_epoch, evaluate(net, data.X_test, data.y_test)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, help="budget (default: the study file's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="searches to run (default 3)")
    args = parser.parse_args()
    source = (ROOT / "studies" / "digits.toml").read_text()
    name = re.search(r'^name = "([^"]+)"', source, re.M).group(1)  # type: ignore[union-attr]
    pruner = re.search(r'\[pruner\]\s*\nname = "([^"]+)"', source).group(1)  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        runs = []
        for i in range(args.repeats):
            toml = tmp_path / f"digits{i}.toml"
            toml.write_text(source)
            wall_i, db = run_study(toml, args.workers, args.trials)
            best = retrain(db, toml, tmp_path / f"best{i}.json")
            runs.append((wall_i, study_stats(db, name), best))
        wall, stats = runs[0][0], runs[0][1]

        nopr = tmp_path / "nopruner.toml"
        nopr.write_text(re.sub(r"\[pruner\][^\[]*", '[pruner]\nname = "none"\n\n', source))
        wall_np, db_np = run_study(nopr, args.workers, int(stats["trials"]))
        stats_np = study_stats(db_np, name)
    per_epoch, article_acc = time_article()
    article_trial = per_epoch * ARTICLE_EPOCHS

    print(f"digits.toml, {args.workers} workers, SQLite, {int(stats['trials'])} trials, "
          f"{args.repeats} searches\n")
    print(f"{'search':<8}{'wall s':>8}{'first val_acc >= 0.97 s':>25}{'best val acc':>14}"
          f"{'its test acc':>14}")
    print("-" * 69)
    for i, (w, st, m) in enumerate(runs, 1):
        print(f"{i:<8}{w:>8.1f}{st['first_97']:>25.1f}{m['val_accuracy']:>14.4f}"
              f"{m['test_accuracy']:>14.4f}")
    med = {"wall": statistics.median(r[0] for r in runs),
           "first": statistics.median(r[1]["first_97"] for r in runs),
           "test": statistics.median(r[2]["test_accuracy"] for r in runs),
           "val": statistics.median(r[2]["val_accuracy"] for r in runs)}
    worst = min(r[2]["test_accuracy"] for r in runs)
    print(f"{'median':<8}{med['wall']:>8.1f}{med['first']:>25.1f}{med['val']:>14.4f}"
          f"{med['test']:>14.4f}\n")
    print(f"{'(medians)':<34}{'nnsearch':>14}{'article (extrap.)':>20}{'ratio':>9}")
    print("-" * 77)
    print(f"{'wall time, whole search (s)':<34}{med['wall']:>14.1f}"
          f"{article_trial * ARTICLE_TRIALS:>20.0f}"
          f"{article_trial * ARTICLE_TRIALS / med['wall']:>8.0f}x")
    print(f"{'time to first val_acc >= 0.97 (s)':<34}{med['first']:>14.1f}"
          f"{article_trial:>20.0f}{article_trial / med['first']:>8.0f}x")
    print(f"{'test accuracy of the best':<34}{med['test']:>14.4f}{article_acc:>20.4f}")
    print(f"\narticle: one [64] sigmoid network, full batch, {per_epoch * 1e3:.2f} ms/epoch; "
          f"{TIMED_EPOCHS} epochs timed, x{ARTICLE_EPOCHS // TIMED_EPOCHS} for its "
          f"{ARTICLE_EPOCHS:,} epochs, x{ARTICLE_TRIALS} trials; accuracy after "
          f"{TIMED_EPOCHS} epochs.")
    slowest = max(r[0] for r in runs)
    goal = "met" if worst >= 0.98 and slowest <= 120 else "NOT met"
    print(f"goal (test accuracy >= 0.98 within 120 s, in every search): {goal} "
          f"(worst {worst:.4f}, slowest {slowest:.1f} s)\n")
    print(f"{'pruning':<20}{'trials':>8}{'pruned':>8}{'epochs':>10}{'best val acc':>14}"
          f"{'wall s':>9}")
    print("-" * 69)
    for label, st, w in ((f"{pruner} (the file's)", stats, wall), ("none", stats_np, wall_np)):
        print(f"{label:<20}{int(st['trials']):>8}{int(st['pruned']):>8}{int(st['epochs']):>10}"
              f"{st['best_val']:>14.4f}{w:>9.1f}")
    print("(pruning: the first search against one with the pruner switched off)")
    print(f"\nepochs saved by pruning: {1 - stats['epochs'] / stats_np['epochs']:.0%}")


if __name__ == "__main__":
    main()
