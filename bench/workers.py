"""Parallel workers and storage overhead on the digits study.

1. Throughput: the same K trial configs (sampled once from studies/digits.toml,
   then enqueued) run by ``nnsearch run --workers 1`` and ``--workers 2`` on
   SQLite, pruning off so that the work is equal. Trials per minute are taken
   from the trials' own start/finish times (worker start-up excluded) and from
   the whole command's wall time.
2. Storage overhead: in one process, the same M trial configs through the real
   objective on in-memory, SQLite, PostgreSQL (if reachable) and journal
   storages. A trial's overhead is its wall time in ``study.optimize`` minus its
   training time; the table gives the median, against the in-memory median, as
   a share of the median trial time.

3. With ``--reproducible PAIRS``, instead: the same enqueued configs run by 2 workers,
   a normal study against a ``[sampler] reproducible`` one, in alternating pairs: the
   throughput it costs, and how much more of the workers' time is spent outside a trial;
   with ``--as-is``, the study file as users run it (sampled and pruned), for --trials.

Run: python bench/workers.py [--trials 40] [--overhead-trials 30] (0: throughput only)
     python bench/workers.py --trials 24 --reproducible 2 [--as-is]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
from threadpoolctl import threadpool_limits

from nnsearch.search.data import load_data
from nnsearch.search.objective import Objective
from nnsearch.search.storage import dispose, open_storage
from nnsearch.search.storage_url import StorageURL
from nnsearch.search.study import create, target_from_args
from nnsearch.search.studyfile import load_study_file

ROOT = Path(__file__).resolve().parents[1]
NNSEARCH = [sys.executable, "-P", "-m", "nnsearch"]  # -P: nothing in the cwd shadows it

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def sample_configs(study_file: Path, n: int) -> list[dict[str, Any]]:
    """n parameter sets from the study's space (random sampler, fixed seed)."""
    from nnsearch.search.space import sample

    spec = load_study_file(study_file)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=123))
    configs = []
    for _ in range(n):
        trial = study.ask()
        sample(spec.space, trial)
        configs.append(dict(trial.params))
        study.tell(trial, 0.0)
    return configs


def equal_work(text: str) -> str:
    """The study file with pruning off, no timeout and none of its own [[enqueue]]
    trials: every run then trains exactly the enqueued configs, to the end."""
    import re

    text = text.split("\n[[enqueue]]")[0]
    text = re.sub(r"^timeout\s*=.*$", "", text, flags=re.M)
    return re.sub(r"\[pruner\][^\[]*", '[pruner]\nname = "none"\n\n', text)


def as_it_is(text: str) -> str:
    """The study file as users run it (its sampler, pruner and [[enqueue]] trials), with
    no timeout: a trial budget ends it."""
    import re

    return re.sub(r"^timeout\s*=.*$", "", text, flags=re.M)


def throughput(study_file: Path, configs: list[dict[str, Any]], workers: int,
               tmp: Path, reproducible: bool = False, trials: int | None = None
               ) -> dict[str, float]:
    """``configs`` enqueued and run with pruning off (equal work); or, with ``trials``,
    the study as it is (``as_it_is``) for that many trials."""
    name = f"w{workers}{'r' if reproducible else ''}"
    toml = tmp / f"{name}.toml"
    text = equal_work(study_file.read_text()) if trials is None \
        else as_it_is(study_file.read_text())
    if trials is not None:
        configs = []
    if reproducible:
        text = text.replace("[sampler]\n", "[sampler]\nreproducible = true\n", 1)
    toml.write_text(text)
    db = f"sqlite:///{tmp / f'{name}.db'}"
    target = target_from_args(str(toml), None, db)
    with create(target) as (opened, _):
        for params in configs:
            opened.study.enqueue_trial(params)
    start = time.perf_counter()
    subprocess.run([*NNSEARCH, "-q", "run", str(toml), "--storage", db,
                    "--workers", str(workers), "--trials", str(trials or len(configs))],
                   check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=target.name, storage=db)
    trials = [t for t in study.trials if t.datetime_complete]
    span = (max(t.datetime_complete for t in trials)
            - min(t.datetime_start for t in trials)).total_seconds()
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    return {"trials": len(trials), "span": span, "wall": wall,
            "idle": 1 - busy / (workers * span),  # share of the workers' time not in a trial
            "per_min": 60 * len(trials) / span, "per_min_wall": 60 * len(trials) / wall}


def reproducible_cost(study_file: Path, configs: list[dict[str, Any]], tmp: Path,
                      pairs: int, trials: int | None = None) -> None:
    """2 workers on the same enqueued configs (or, with ``trials``, the study as it is),
    a normal study against a reproducible one, in alternating pairs (issue #28: its
    throughput cost, goal <= 15%)."""
    rows = []
    for i in range(pairs):
        for sub in (tmp / f"n{i}", tmp / f"r{i}"):
            sub.mkdir()
        normal = throughput(study_file, configs, 2, tmp / f"n{i}", False, trials)
        lagged = throughput(study_file, configs, 2, tmp / f"r{i}", True, trials)
        rows.append((normal, lagged))
        print(f"pair {i + 1}: normal {normal['per_min']:.2f} trials/min (idle "
              f"{100 * normal['idle']:.1f}%), reproducible {lagged['per_min']:.2f} "
              f"({lagged['per_min'] / normal['per_min']:.3f}x; idle "
              f"{100 * lagged['idle']:.1f}%)", flush=True)
    cost = statistics.median(1 - r['per_min'] / n['per_min'] for n, r in rows)
    idle = statistics.median(r['idle'] - n['idle'] for n, r in rows)
    what = f"{len(configs)} enqueued trials, pruning off" if trials is None else \
        f"the study as it is (sampled, pruned), {trials} trials"
    print(f"\nreproducible against normal, {what}, 2 workers, "
          f"SQLite: median throughput cost {100 * cost:.1f}% (goal <= 15%: "
          f"{'met' if cost <= 0.15 else 'NOT met'}); the workers' idle share (not in a "
          f"trial, from the trials' timestamps) {100 * idle:+.1f} points against normal")


def overhead(study_file: Path, configs: list[dict[str, Any]], storage: Any) -> dict[str, float]:
    spec = load_study_file(study_file)
    data = load_data(spec.data, spec.base_dir)
    objective = Objective(spec, data, StorageURL.parse("sqlite:///:memory:"))
    study = optuna.create_study(study_name=f"bench-{uuid.uuid4().hex[:8]}", storage=storage,
                                direction=spec.direction, pruner=optuna.pruners.NopPruner())
    for params in configs:
        study.enqueue_trial(params)
    walls: list[float] = []

    def timed(trial: optuna.Trial) -> float:
        return objective(trial)

    with threadpool_limits(1):
        for _ in configs:
            start = time.perf_counter()
            study.optimize(timed, n_trials=1)
            walls.append(time.perf_counter() - start)
    trained = [t.user_attrs["train_seconds"] for t in study.trials]
    over = [w - s for w, s in zip(walls, trained, strict=True)]
    return {"trial": statistics.median(walls), "overhead": statistics.median(over)}


def postgres_url() -> str | None:
    try:
        import psycopg

        name = f"nnsearch_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                             autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    except Exception as exc:
        print(f"(PostgreSQL unreachable, its row is left out: {exc})")
        return None


def drop_postgres(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per throughput run")
    parser.add_argument("--overhead-trials", type=int, default=30)
    parser.add_argument("--study", default=str(ROOT / "studies" / "digits.toml"))
    parser.add_argument("--reproducible", type=int, default=0, metavar="PAIRS",
                        help="instead: 2 workers, a normal study against a reproducible "
                        "one, in this many alternating pairs")
    parser.add_argument("--as-is", action="store_true",
                        help="with --reproducible: the study as it is (its sampler, pruner "
                        "and [[enqueue]] trials) for --trials trials, not enqueued configs")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("NNSEARCH_HEARTBEAT", "2")
    study_file = Path(args.study)
    configs = sample_configs(study_file, max(args.trials, args.overhead_trials))

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if args.reproducible:
            reproducible_cost(study_file, configs[:args.trials], tmp, args.reproducible,
                              args.trials if args.as_is else None)
            return
        one = throughput(study_file, configs[:args.trials], 1, tmp)
        two = throughput(study_file, configs[:args.trials], 2, tmp)
        print(f"throughput: {args.trials} enqueued digits trials, pruning off, SQLite\n")
        print(f"{'workers':<10}{'trials/min':>12}{'speed-up':>10}{'wall s':>9}"
              f"{'trials/min (wall)':>19}{'speed-up':>10}")
        print("-" * 70)
        for n, r in ((1, one), (2, two)):
            print(f"{n:<10}{r['per_min']:>12.1f}{r['per_min'] / one['per_min']:>9.2f}x"
                  f"{r['wall']:>9.1f}{r['per_min_wall']:>19.1f}"
                  f"{r['per_min_wall'] / one['per_min_wall']:>9.2f}x")
        goal = two["per_min"] / one["per_min"] >= 1.85
        print(f"goal (2 workers >= 1.85x): {'met' if goal else 'NOT met'}")
        from tiny import ceiling

        ceilings = [ceiling() for _ in range(3)]
        print(f"this host's ceiling, two CPU-bound processes against one (a pure Python "
              f"loop): median {statistics.median(ceilings):.2f}x "
              f"({', '.join(f'{c:.2f}' for c in ceilings)})\n")
        if not args.overhead_trials:
            return

        pg = postgres_url()
        storages: list[tuple[str, Any]] = [("in-memory", None)]
        storages.append(("SQLite", open_storage(StorageURL.parse(f"sqlite:///{tmp / 'o.db'}"))))
        if pg:
            storages.append(("PostgreSQL", open_storage(StorageURL.parse(pg))))
        storages.append(("journal", open_storage(StorageURL.parse(f"journal:///{tmp / 'o.log'}"))))
        rows = []
        sub = configs[:args.overhead_trials]
        for label, storage in storages:
            rows.append((label, overhead(study_file, sub, storage)))
            if storage is not None:
                dispose(storage)
        if pg:
            drop_postgres(pg)
    base = rows[0][1]["overhead"]
    print(f"storage overhead: {len(sub)} trials each, one process, median per trial\n")
    print(f"{'storage':<12}{'trial ms':>10}{'overhead ms':>13}{'vs in-memory':>14}"
          f"{'share of trial':>16}")
    print("-" * 65)
    met = True
    for label, r in rows:
        extra = r["overhead"] - base
        share = r["overhead"] / r["trial"]
        if label in ("SQLite", "PostgreSQL"):
            met = met and share <= 0.10
        print(f"{label:<12}{1e3 * r['trial']:>10.1f}{1e3 * r['overhead']:>13.1f}"
              f"{1e3 * extra:>+13.1f}{100 * share:>15.1f}%")
    print(f"goal (overhead <= 10% of the median trial on SQLite and PostgreSQL): "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
