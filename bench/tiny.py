"""Tiny trials: where a short trial's time goes, and what a second worker adds.

Issue #14's case: an iris-sized study (one hidden layer, about 20 ms of training per
trial, TPE and the median pruner, artifacts on) run as users run it, on SQLite.

1. Overhead per trial, one worker: ``nnsearch worker`` run in-process under cProfile
   for N trials; the table splits a trial's wall time into training (``fit``) and
   the rest: ask and sampling, reports and pruning, user attributes, artifacts
   (learning-curve PNG + export JSON), tell, and the worker's own loop (counting,
   the trial lock). The profiler inflates the calls it times, so the shares come
   from the profile and the overhead in ms from a second, unprofiled run.
2. 1 vs 2 workers: ``nnsearch run --workers W --trials T`` (T >= 200), in pairs of
   runs (1 worker, then 2) whose median ratio is the speed-up; trials per second from
   the trials' own timestamps (first start to last finish) and from the wall clock of
   the whole command.
3. From ``run`` to the first trial started: the median over R runs of the time from
   launching ``nnsearch run`` to the first trial's ``datetime_start``.

Goals (issue #14): overhead <= 15 ms per trial; 2 workers >= 1.85x one; first trial
<= 2 s after ``run``.

Run: python bench/tiny.py [--trials 300] [--profile-trials 150] [--pairs 3] [--starts 5]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
NNSEARCH = [sys.executable, "-P", "-m", "nnsearch"]  # -P: nothing in the cwd shadows it

STUDY = """
[study]
name = "tiny"
metric = "val_accuracy"
seed = 1

[sampler]
name = "tpe"
n_startup_trials = 10
multivariate = true
constant_liar = true

[pruner]
name = "median"
n_startup_trials = 5
n_warmup_steps = 5
report_every = 5

[data]
source = "iris"

[budget]
trials = {trials}

[space]
n_layers = 1
width = {{ low = 8, high = 32 }}
learning_rate = {{ low = 1e-3, high = 3e-2, log = true }}
dropout = {{ low = 0.0, high = 0.2 }}
batch_size = 32
epochs = 30
patience = "none"
"""

# (label, "file:function" prefixes in the profile whose cumulative time it is). fit calls
# the objective's epoch callback (objective.py's ``report``: reports and pruning), so
# that is taken out of fit's row and shown on its own.
PHASES = [
    ("ask + sampling", ["study.py:ask", "_trial.py:suggest_"]),
    ("reports + pruning (in fit)", ["objective.py:report"]),
    ("first writes (params, worker, heartbeat)", ["worker_storage.py:training_starts"]),
    ("artifacts (JSON; PNG within budget)", ["artifacts.py:upload_trial_artifacts"]),
    ("tell (result + state, one write)", ["_tell.py:_tell_with_warning"]),
    ("worker loop (stops, count, lock)", ["worker.py:_slot_free"]),
]


CALLBACK_SECONDS = [0.0]  # the objective's epoch callbacks' seconds so far (time_callbacks)


def clean(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".nnsearch.lock", ".nnsearch.writes"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def load_trials(db: Path) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    try:
        return optuna.load_study(study_name="tiny", storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def study_file(folder: Path, trials: int) -> Path:
    path = folder / "tiny.toml"
    path.write_text(STUDY.format(trials=trials))
    return path


def cumulative(stats: pstats.Stats, needles: list[str]) -> float:
    """Summed cumulative seconds of the functions matching ``needles`` (outermost calls:
    a function that calls itself is counted once through ``ct``)."""
    total = 0.0
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = f"{Path(file).name}:{func}"
        if any(key.startswith(n) for n in needles):
            total += ct
    return total


def time_callbacks() -> None:
    """Add the objective's epoch callback time (reports and pruning, which a trial's
    ``train_seconds`` includes) to CALLBACK_SECONDS: overhead = wall - pure training."""
    from nnsearch.search.objective import Objective

    reporter = Objective._epoch_reporter

    def timed_reporter(self: Objective, trial: optuna.Trial):  # type: ignore[no-untyped-def]
        report = reporter(self, trial)

        def timed(epoch: int, metrics: dict) -> bool:  # type: ignore[type-arg]
            start = time.perf_counter()
            try:
                return report(epoch, metrics)
            finally:
                CALLBACK_SECONDS[0] += time.perf_counter() - start

        return timed

    Objective._epoch_reporter = timed_reporter  # type: ignore[method-assign]


def in_process_worker(toml: Path, profile: bool) -> tuple[float, int, float, pstats.Stats | None]:
    """Run a worker in this process; (wall s, trials, pure training s, profile): training
    is the trials' ``train_seconds`` less the time their epoch callbacks took."""
    from nnsearch.search.cli import main as cli_main

    db = toml.with_suffix(".db")
    clean(db)
    assert subprocess.run([*NNSEARCH, "-q", "create", str(toml)], cwd=toml.parent,
                          capture_output=True).returncode == 0
    profiler = cProfile.Profile() if profile else None
    callbacks = CALLBACK_SECONDS[0]
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    code = cli_main(["-q", "worker", str(toml)])
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - start
    assert code == 0, code
    trials = load_trials(db)
    trained = sum(t.user_attrs.get("train_seconds", 0.0) for t in trials)
    trained -= CALLBACK_SECONDS[0] - callbacks
    return wall, len(trials), trained, pstats.Stats(profiler) if profiler else None


def throughput(toml: Path, workers: int) -> dict[str, float]:
    db = toml.with_suffix(".db")
    clean(db)
    start = time.perf_counter()
    subprocess.run([*NNSEARCH, "-q", "run", str(toml), "--workers", str(workers)],
                   check=True, cwd=toml.parent, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    trials = [t for t in load_trials(db) if t.datetime_complete]
    span = (max(t.datetime_complete for t in trials)
            - min(t.datetime_start for t in trials)).total_seconds()
    failed = sum(t.state.name == "FAIL" for t in trials)
    return {"trials": len(trials), "span": span, "wall": wall, "per_s": len(trials) / span,
            "per_s_wall": len(trials) / wall, "failed": failed}


SPIN = "s = 0\nfor i in range(4_000_000):\n    s += i * i\n"  # ~0.3 s of pure Python


def ceiling() -> float:
    """This host's own limit: how much faster two CPU-bound processes get the same work
    done than one (the same interpreter loop, each process its share), by the wall
    clock. On a shared host two vCPUs rarely give 2x."""
    def spin(processes: int, loops: int) -> float:
        start = time.perf_counter()
        running = [subprocess.Popen([sys.executable, "-c", SPIN * loops])
                   for _ in range(processes)]
        for p in running:
            p.wait()
        return time.perf_counter() - start

    return spin(1, 2) / spin(2, 1)


def first_trial_delay(toml: Path) -> float:
    db = toml.with_suffix(".db")
    clean(db)
    launched = datetime.datetime.now()
    subprocess.run([*NNSEARCH, "-q", "run", str(toml), "--workers", "2", "--trials", "2"],
                   check=True, cwd=toml.parent, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    trials = load_trials(db)
    return (min(t.datetime_start for t in trials) - launched).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300, help="trials per throughput run")
    parser.add_argument("--profile-trials", type=int, default=150)
    parser.add_argument("--pairs", type=int, default=3, help="1- and 2-worker runs, paired")
    parser.add_argument("--starts", type=int, default=5, help="runs timed to the first trial")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    time_callbacks()
    print(f"command: python bench/tiny.py --trials {args.trials} --profile-trials "
          f"{args.profile_trials} --pairs {args.pairs} --starts {args.starts}\n")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        toml = study_file(tmp, args.profile_trials)
        in_process_worker(toml, profile=False)  # warm-up: imports, caches
        wall, n, trained, _ = in_process_worker(toml, profile=False)
        _, _, _, stats = in_process_worker(toml, profile=True)
        assert stats is not None
        over_ms = 1e3 * (wall - trained) / n
        print(f"1. one worker, SQLite, {n} trials: {1e3 * wall / n:.1f} ms per trial, "
              f"{1e3 * trained / n:.1f} ms training (less its epoch callback), overhead "
              f"{over_ms:.1f} ms per trial (goal <= 15 ms: "
              f"{'met' if over_ms <= 15 else 'NOT met'})\n")
        total = cumulative(stats, ["cli.py:main"])
        callback = cumulative(stats, ["objective.py:report"])
        rows = [("training (fit, less its callback)",
                 cumulative(stats, ["_train.py:fit"]) - callback)]
        rows += [(label, cumulative(stats, needles)) for label, needles in PHASES]
        print(f"   {'where (under cProfile, which inflates calls)':<46}{'share':>8}"
              f"{'ms/trial':>10}")
        print("   " + "-" * 64)
        for label, seconds in rows:
            print(f"   {label:<46}{100 * seconds / total:>7.1f}%{1e3 * seconds / n:>10.1f}")
        rest = total - sum(seconds for _, seconds in rows)
        print(f"   {'the rest (optimize, worker start, exit)':<46}{100 * rest / total:>7.1f}%"
              f"{1e3 * rest / n:>10.1f}\n")

        toml = study_file(tmp, args.trials)
        pairs = []  # 1 then 2 workers, back to back: the machine's drift hits both alike
        ceilings = []
        for _ in range(args.pairs):
            pairs.append((throughput(toml, 1), throughput(toml, 2)))
            ceilings.append(ceiling())
        if pairs:  # (--pairs 0: none)
            print(f"2. {args.trials} trials, SQLite, {args.pairs} pairs of runs (1 worker, "
                  "then 2): trials/s by the trials' own timestamps, and by the wall clock\n")
            print(f"   {'pair':<6}{'workers':<9}{'trials/s':>10}{'speed-up':>10}{'wall s':>8}"
                  f"{'trials/s wall':>15}{'speed-up':>10}{'FAIL':>6}")
            print("   " + "-" * 74)
            for i, (one, two) in enumerate(pairs, 1):
                for w, r in ((1, one), (2, two)):
                    print(f"   {i:<6}{w:<9}{r['per_s']:>10.1f}{r['per_s'] / one['per_s']:>9.2f}x"
                          f"{r['wall']:>8.1f}{r['per_s_wall']:>15.1f}"
                          f"{r['per_s_wall'] / one['per_s_wall']:>9.2f}x{r['failed']:>6}")
            ratio = statistics.median(two["per_s"] / one["per_s"] for one, two in pairs)
            wall = statistics.median(two["per_s_wall"] / one["per_s_wall"] for one, two in pairs)
            print(f"   median speed-up: {ratio:.2f}x by the timestamps, {wall:.2f}x by the wall "
                  f"clock; goal (2 workers >= 1.85x): {'met' if ratio >= 1.85 else 'NOT met'}")
            print(f"   this host's ceiling, two CPU-bound processes against one (a pure Python "
                  f"loop, after each pair): median {statistics.median(ceilings):.2f}x "
                  f"({', '.join(f'{c:.2f}' for c in ceilings)})\n")

        delays = [first_trial_delay(toml) for _ in range(args.starts)]
        median = statistics.median(delays)
        print(f"3. run -> first trial started: median {median:.2f} s over {args.starts} runs "
              f"({', '.join(f'{d:.2f}' for d in delays)}); goal <= 2 s: "
              f"{'met' if median <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
