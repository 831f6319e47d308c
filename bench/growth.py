"""Growth: what a trial costs beyond its training as the study grows (issue #27).

The default space (``studies/digits.toml``) pointed at a small table (iris: 3 folds,
one-hot-free, trials of ~20 ms), run as users run it: ``nnsearch run --workers 2`` on
SQLite (or ``--storage URL``), the study grown in stages (``--stages 300,1000,3000``:
each stage a ``run`` to that many trials, as a user raising the budget does).

1. **Per window of trial numbers** (the last 200 trials of each stage): the median
   overhead per trial beyond training (the trial's wall time, ``datetime_start`` to
   ``datetime_complete``, less its ``train_seconds``; sampling happens after a trial
   starts), also for completed and pruned trials apart (a completed one does more:
   its predictions kept for the ensemble; which share completes depends on the run's
   path), the median training time, and trials per second by the trials' own
   timestamps.
2. **Where the overhead goes** (``--profile-trials P``, after each stage): one worker in
   this process under cProfile for P more trials (after 3 unprofiled ones: a new
   worker's first read of the whole study is start-up, not a trial's cost); its time
   beside training split into sampling (``ask`` and the ``suggest_*`` calls, the
   sampler's reads included), the storage reads of all trials (anywhere), reports and
   pruning, the trial's writes and the rest. cProfile inflates calls, so shares come
   from it and milliseconds from the window's unprofiled median.
3. **Reading commands on the grown study**: ``status``, ``export``, ``trials --format
   csv`` (medians of 3) and optuna-dashboard's study API (``/api/studies/ID``: seconds
   and bytes).

Goals (issue #27): overhead <= 30 ms at trials 100-300 and <= 1.5x that at 9,800-10,000;
status <= 1 s, export <= 2 s, trials --format csv <= 3 s at 10,000 trials.

Run: python bench/growth.py [--stages 300,1000,3000,10000] [--profile-trials 50] [--keep DIR]
     [--storage postgresql+psycopg://root@127.0.0.1/test] [--table iris]
     python bench/growth.py --reads-only DIR   (the reading commands alone, on a kept study)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import math
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
from quality import machine  # bench/quality.py: this script's folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
NNSEARCH = [sys.executable, "-P", "-m", "nnsearch"]  # -P: nothing in the cwd shadows it
WINDOW = 200
WARM_UP = 3  # a profiled worker's trials before the profiler starts
GOAL_SMALL_MS, GOAL_RATIO = 30.0, 1.5
GOAL_READS = {"status": 1.0, "export": 2.0, "trials --format csv": 3.0}

# (label, "file:function" prefixes in the profile whose cumulative time it is)
PHASES = [
    ("sampling (ask + suggest, its reads included)", ["study.py:ask", "_trial.py:suggest_"]),
    ("storage reads of all trials (anywhere)", ["worker_storage.py:get_all_trials"]),
    ("reports + pruning (in fit)", ["objective.py:report"]),
    ("writes (start, tell)", ["worker_storage.py:training_starts",
                              "_tell.py:_tell_with_warning"]),
    ("artifacts", ["artifacts.py:upload_trial_artifacts"]),
]


def study_text(table: str) -> str:
    """The default study file pointed at ``table``, with no time limit (the stages'
    ``--trials`` end each run) and no image shifts."""
    text = (ROOT / "studies" / "digits.toml").read_text()
    text = re.sub(r'^name = "digits"', 'name = "growth"', text, count=1, flags=re.M)
    text = re.sub(r'^source = "digits"', f'source = "{table}"', text, count=1, flags=re.M)
    text = re.sub(r"^shift = .*\n", "", text, flags=re.M)
    text = re.sub(r"^timeout = .*\n(#.*\n|\s+#.*\n)*", "", text, flags=re.M)
    return text


def run(args: list[str], cwd: Path, storage: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([*NNSEARCH, "-q", *args, *storage], check=True, cwd=cwd,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def load(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.load_study(study_name="growth", storage=storage).get_trials(
            deepcopy=False)
    finally:
        storage.engine.dispose()


def window(trials: list[optuna.trial.FrozenTrial], low: int, high: int) -> dict[str, float]:
    """Medians over trials ``low .. high - 1``: overhead (all, completed, pruned: a
    completed trial does more, such as keeping its predictions), training, and trials/s."""
    done = [t for t in trials if low <= t.number < high and t.datetime_complete
            and t.datetime_start and "train_seconds" in t.user_attrs]
    if not done:
        return {}

    def over(ts: list[optuna.trial.FrozenTrial]) -> float:
        return 1e3 * statistics.median(
            (t.datetime_complete - t.datetime_start).total_seconds()  # type: ignore[operator]
            - t.user_attrs["train_seconds"] for t in ts) if ts else math.nan

    span = (max(t.datetime_complete for t in done)  # type: ignore[type-var]
            - min(t.datetime_start for t in done)).total_seconds()  # type: ignore[type-var]
    return {"n": len(done), "over_ms": over(done),
            "complete_ms": over([t for t in done if t.state.name == "COMPLETE"]),
            "pruned_ms": over([t for t in done if t.state.name == "PRUNED"]),
            "complete_share": sum(t.state.name == "COMPLETE" for t in done) / len(done),
            "train_ms": 1e3 * statistics.median(t.user_attrs["train_seconds"] for t in done),
            "per_s": len(done) / span}


def cumulative(stats: pstats.Stats, needles: list[str]) -> float:
    total = 0.0
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if any(f"{Path(file).name}:{func}".startswith(n) for n in needles):
            total += ct
    return total


def profiled_worker(toml: Path, storage: list[str], trials: int) -> dict[str, float]:
    """Shares of the non-training time of one in-process worker's last trials: the
    profiler starts with its ``WARM_UP + 1``-th trial, after a new worker's first read of
    the whole study (seconds at 10,000 trials, once per worker, not per trial)."""
    from nnsearch.search.cli import main as cli_main
    from nnsearch.search.objective import Objective

    profiler = cProfile.Profile()
    call, started = Objective.__call__, [0]

    def counted(self: Objective, trial: optuna.Trial) -> float | tuple[float, ...]:
        started[0] += 1
        if started[0] == WARM_UP + 1:
            profiler.enable()
        return call(self, trial)

    Objective.__call__ = counted  # type: ignore[method-assign]
    try:
        code = cli_main(["-q", "worker", str(toml), "--trials", str(trials + WARM_UP),
                         *storage])
    finally:
        profiler.disable()
        Objective.__call__ = call  # type: ignore[method-assign]
    assert code == 0, code
    stats = pstats.Stats(profiler)
    total = sum(tt for _cc, _nc, tt, _ct, _callers in stats.stats.values())  # type: ignore[attr-defined]
    total -= cumulative(stats, ["_train.py:fit"]) - cumulative(stats, ["objective.py:report"])
    shares = {label: cumulative(stats, needles) / total for label, needles in PHASES}
    shares["the rest"] = 1 - sum(v for k, v in shares.items() if not k.startswith("storage"))
    return shares


def timed_reads(toml: Path, cwd: Path, storage: list[str]) -> dict[str, float]:
    """Medians of 3, nnsearch's modules compiled first (as an install leaves them; an
    editable install writes them at its first run, unless PYTHONDONTWRITEBYTECODE is set,
    as on some hosts: then every command compiled them again, ~0.2 s)."""
    import compileall

    compileall.compile_dir(str(ROOT / "nnsearch"), quiet=1)
    out = {}
    for label, args in (("status", ["status", str(toml)]),
                        ("export", ["export", str(toml), "-o", str(cwd / "x.json")]),
                        ("trials --format csv", ["trials", str(toml), "--format", "csv"])):
        out[label] = statistics.median(run(args, cwd, storage) for _ in range(3))
    return out


CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--window-size=1400,1000"]


def page_seconds(url: str, text: str) -> float | None:
    """Wall seconds until headless Chromium's rendered page shows ``text`` (Chromium's own
    start included; more virtual time each try, the first try that shows it counts);
    None without Chromium or if it never shows within 120 s a try."""
    exe = shutil.which("chromium") or shutil.which("google-chrome")
    if exe is None:
        return None
    for budget in (5000, 10000, 20000):
        with tempfile.TemporaryDirectory() as profile:
            start = time.perf_counter()
            try:
                res = subprocess.run([exe, *CHROMIUM, f"--user-data-dir={profile}",
                                      f"--virtual-time-budget={budget}", "--dump-dom", url],
                                     capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired:
                continue
            if text in re.sub(r"<[^>]+>", " ", res.stdout):
                return time.perf_counter() - start
    return None


def dashboard_api(toml: Path, cwd: Path, storage: list[str]) -> tuple[float, int, float | None]:
    proc = subprocess.Popen([*NNSEARCH, "dashboard", str(toml), "--port", "0", *storage],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"https?://[^ ]+:(\d+)/dashboard/", line)
        assert match, line
        base = f"http://127.0.0.1:{match.group(1)}"
        with urllib.request.urlopen(base + "/api/studies", timeout=60) as resp:
            study_id = json.load(resp)["study_summaries"][0]["study_id"]
        times, size = [], 0
        for _ in range(3):
            start = time.perf_counter()
            with urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=120) as resp:
                size = len(resp.read())
            times.append(time.perf_counter() - start)
        page = page_seconds(f"{base}/dashboard/studies/{study_id}", "History")
        return statistics.median(times), size, page
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="300,1000,3000,10000",
                        help="the study's size after each run (comma-separated)")
    parser.add_argument("--profile-trials", type=int, default=50)
    parser.add_argument("--storage", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument("--table", default="iris")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, metavar="FOLDER",
                        help="leave the grown study (SQLite) in FOLDER")
    parser.add_argument("--reads-only", type=Path, metavar="FOLDER",
                        help="only time the reading commands, on a study --keep left there")
    args = parser.parse_args()
    if args.reads_only:
        toml = args.reads_only / "growth.toml"
        storage = ["--storage", args.storage or f"sqlite:///{args.reads_only / 'growth.db'}"]
        print("command: python bench/growth.py " + " ".join(sys.argv[1:]) + f"; {machine()}")
        print_reads(toml, args.reads_only, storage)
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stages = [int(s) for s in args.stages.split(",")]
    print(f"default space on {args.table}, {args.workers} workers, "
          f"{'SQLite' if not args.storage else args.storage.split(':')[0]}; {machine()}")
    print("command: python bench/growth.py " + " ".join(sys.argv[1:]) + "\n")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = args.keep or Path(tmp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        toml = tmp / "growth.toml"
        toml.write_text(study_text(args.table))
        url = args.storage or f"sqlite:///{tmp / 'growth.db'}"
        storage = ["--storage", url]
        if args.storage:  # a shared server: start from a clean study
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name="growth", storage=url)
        rows, shares = [], []
        size = 0
        for stage in stages:
            wall = run(["run", str(toml), "--workers", str(args.workers), "--trials",
                        str(max(stage, size + 1))], tmp, storage)
            trials = load(url)
            high = max(t.number for t in trials) + 1
            rows.append((high - WINDOW, high, wall, window(trials, high - WINDOW, high)))
            print(f"  ... {high} trials ({wall:.0f} s)", flush=True)
            if args.profile_trials:
                shares.append(profiled_worker(toml, storage, len(trials) + args.profile_trials))
            size = len(load(url))
        print(f"\n1. per window (the last {WINDOW} trials of each stage; medians)\n")
        print(f"   {'trials':<14}{'overhead ms':>12}{'complete':>10}{'pruned':>8}"
              f"{'% complete':>11}{'training ms':>12}{'trials/s':>10}{'run s':>8}")
        print("   " + "-" * 82)
        for low, high, wall, w in rows:
            print(f"   {f'{low}-{high - 1}':<14}{w['over_ms']:>12.1f}{w['complete_ms']:>10.1f}"
                  f"{w['pruned_ms']:>8.1f}{100 * w['complete_share']:>10.0f}%"
                  f"{w['train_ms']:>12.1f}{w['per_s']:>10.1f}{wall:>8.0f}")
        first, last = rows[0][3]["over_ms"], rows[-1][3]["over_ms"]
        small = "met" if first <= GOAL_SMALL_MS else "NOT met"
        ratio = "met" if last <= GOAL_RATIO * first else "NOT met"
        print(f"   growth: {last / first:.2f}x from the first window to the last; goals: "
              f"<= {GOAL_SMALL_MS:.0f} ms in the first ({small}), <= {GOAL_RATIO}x that "
              f"in the last ({ratio})")
        if shares:
            print(f"\n2. where the overhead goes (one profiled worker, {args.profile_trials} "
                  "trials after each stage; ms = share x the window's median)\n")
            head = "".join(f"{f'{high}':>10}" for _, high, _, _ in rows)
            print(f"   {'phase':<48}{head}")
            print("   " + "-" * (48 + 10 * len(rows)))
            for label in shares[0]:
                cells = "".join(f"{s[label] * r[3]['over_ms']:>10.1f}"
                                for s, r in zip(shares, rows, strict=True))
                print(f"   {label:<48}{cells}")
        print_reads(toml, tmp, storage)


def print_reads(toml: Path, cwd: Path, storage: list[str]) -> None:
    reads = timed_reads(toml, cwd, storage)
    seconds, size, page = dashboard_api(toml, cwd, storage)
    print(f"\n3. reading commands on the {len(load(storage[1]))}-trial study (medians of 3)\n")
    for label, value in reads.items():
        goal = GOAL_READS[label]
        print(f"   {label:<22}{value:>7.2f} s   goal <= {goal:.0f} s: "
              f"{'met' if value <= goal else 'NOT met'}")
    print(f"   {'dashboard study API':<22}{seconds:>7.2f} s   {size / 1e6:.1f} MB sent")
    print(f"   {'dashboard study page':<22}" + (
        "  (no Chromium, or not shown within 2 minutes)" if page is None else
        f"{page:>7.2f} s   goal <= 5 s: {'met' if page <= 5 else 'NOT met'} (headless "
        "Chromium, its start included)"))


if __name__ == "__main__":
    main()
