"""Do Optuna's private names pay for themselves? Each fast path against its public fallback.

nnsearch keeps a private Optuna path only where it saves at least 1% of a trial
(``search/_optuna.py``; the one-transaction write earns its place on tiny trials,
``bench/tiny.py``). Measured side by side in one run:

1. the median trial of the default study (studies/digits.toml, its own pruner),
   through the real objective on an in-memory storage: the yardstick;
2. writing a trial's ~16 result attributes: one transaction (private) against
   one ``trial.set_user_attr`` per key (public);
3. counting trials by state, as a worker does twice per trial while the study
   grows to N trials: one COUNT query (private) against ``study.get_trials``
   (public, served by Optuna's cache of finished trials).

2 and 3 run on SQLite (a file, WAL) and on PostgreSQL when it is reachable.

Run: python bench/internals.py [--trials 12] [--study-trials 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy import func, select
from threadpoolctl import threadpool_limits

from nnsearch.search import record
from nnsearch.search._optuna import rdb_of
from nnsearch.search.counting import count_trials, trials_ahead
from nnsearch.search.data import load_data
from nnsearch.search.objective import Objective
from nnsearch.search.storage import dispose, open_storage
from nnsearch.search.storage_url import StorageURL
from nnsearch.search.studyfile import load_study_file

ROOT = Path(__file__).resolve().parents[1]
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


# ----- the private candidates ---------------------------------------------------------------
# The one-transaction write is nnsearch's own (search/_optuna.py: it pays on tiny trials,
# bench/tiny.py); the COUNT query is not used (it saved < 1% of a trial).
def private_write(storage: RDBStorage, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    rdb = rdb_of(trial.storage)
    assert rdb is not None
    rdb.write(trial._trial_id, user_attrs=attrs)


def private_counts(storage: RDBStorage, study: optuna.Study,
                   below: int | None = None) -> dict[TrialState, int]:
    """Trials by state in one COUNT query on Optuna's private table model."""
    from optuna.storages._rdb.models import TrialModel

    study_id = storage.get_study_id_from_name(study.study_name)
    query = select(TrialModel.state, func.count()).where(TrialModel.study_id == study_id)
    if below is not None:
        query = query.where(TrialModel.number < below)
    with storage.engine.connect() as conn:
        return {TrialState(s): n for s, n in conn.execute(query.group_by(TrialModel.state))}


def median_trial(study_file: Path, n: int) -> tuple[float, dict[str, Any]]:
    """The default study's median trial wall time (s), and one trial's result attributes."""
    spec = load_study_file(study_file)
    storage = optuna.storages.InMemoryStorage()
    objective = Objective(spec, load_data(spec.data, spec.base_dir),
                          StorageURL.parse("sqlite:///:memory:"))
    study = optuna.create_study(storage=storage, direction=spec.direction,
                                sampler=spec.make_sampler(), pruner=spec.make_pruner())
    walls = []
    with threadpool_limits(1):
        for _ in range(n):
            start = time.perf_counter()
            study.optimize(objective, n_trials=1)
            walls.append(time.perf_counter() - start)
    attrs = dict(study.trials[-1].user_attrs)
    return statistics.median(walls), attrs


def time_attrs(url: StorageURL, attrs: dict[str, Any], n: int) -> dict[str, float]:
    """Median seconds to write ``attrs`` to a running trial, per path."""
    storage = open_storage(url, heartbeat=False)
    study = optuna.create_study(study_name=f"attrs-{uuid.uuid4().hex[:8]}", storage=storage)
    writers: dict[str, Callable[[optuna.Trial], None]] = {
        "private": lambda t: private_write(storage, t, attrs),
        "public": lambda t: [t.set_user_attr(k, v) for k, v in attrs.items()] and None,
    }
    times: dict[str, list[float]] = {name: [] for name in writers}
    for _ in range(n):
        for name, write in writers.items():
            trial = study.ask()
            start = time.perf_counter()
            write(trial)
            times[name].append(time.perf_counter() - start)
            study.tell(trial, 0.0)
    dispose(storage)
    return {name: statistics.median(v) for name, v in times.items()}


def time_counts(url: StorageURL, attrs: dict[str, Any], n: int) -> dict[str, float]:
    """Median seconds of one count while a study grows to ``n`` trials, per path."""
    storage = open_storage(url, heartbeat=False)
    name = f"counts-{uuid.uuid4().hex[:8]}"
    writer = optuna.create_study(study_name=name, storage=storage)
    # Like a worker: a study object of its own, whose cache follows the growing study.
    reader = optuna.load_study(study_name=name, storage=storage)
    counters: dict[str, Callable[[int], Any]] = {  # what a worker asks before each trial
        # (the count a worker makes: _optuna.RDB.count_by_state, as counting.count_states)
        "private": lambda k: (rdb_of(storage).count_by_state(name, record.PRIOR),
                              private_counts(storage, reader, below=k)),
        "public": lambda k: (count_trials(reader.get_trials(deepcopy=False)),
                             trials_ahead(reader, k)),
    }
    times: dict[str, list[float]] = {k: [] for k in counters}
    for i in range(n):
        trial = writer.ask()
        for step in range(20):
            trial.report(0.5, step)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        writer.tell(trial, 0.5)
        private, public = counters["private"](i), counters["public"](i)
        assert private[0].get(TrialState.COMPLETE) == public[0].complete == i + 1
        for label, count in counters.items():
            start = time.perf_counter()
            count(i)
            times[label].append(time.perf_counter() - start)
    dispose(storage)
    return {k: statistics.median(v) for k, v in times.items()}


def postgres_url() -> tuple[StorageURL, str] | None:
    try:
        import psycopg

        db = f"nnsearch_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        return StorageURL.parse(f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"), db
    except Exception as exc:
        print(f"(PostgreSQL unreachable, its rows are left out: {exc})")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="default-study trials timed")
    parser.add_argument("--writes", type=int, default=40, help="attribute writes timed")
    parser.add_argument("--study-trials", type=int, default=60, help="study size for counts")
    parser.add_argument("--study", default=str(ROOT / "studies" / "digits.toml"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial_s, attrs = median_trial(Path(args.study), args.trials)
    attrs.pop(record.WORKER, None)
    print(f"default study: median trial {1e3 * trial_s:.0f} ms over {args.trials} trials "
          f"(its own pruner); {len(attrs)} result attributes per trial\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = [("SQLite", StorageURL.parse(f"sqlite:///{Path(tmp) / 'b.db'}"), None)]
        pg = postgres_url()
        if pg:
            backends.append(("PostgreSQL", pg[0], pg[1]))
        for label, url, _ in backends:
            a = time_attrs(url, attrs, args.writes)
            rows.append((f"result attributes, {label}", 1, a))
            c = time_counts(url, attrs, args.study_trials)
            rows.append((f"counts by state, {label}", 1, c))  # count_states + trials_ahead
        if pg:
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg[1]}" WITH (FORCE)')
    print(f"{'fast path, storage':<32}{'private ms':>11}{'public ms':>11}{'saved ms':>10}"
          f"{'% of trial':>12}  verdict (keep if >= 1%)")
    print("-" * 100)
    for label, per_trial, r in rows:
        saved = per_trial * (r["public"] - r["private"])
        share = saved / trial_s
        verdict = "keep" if share >= 0.01 else "public is enough"
        print(f"{label:<32}{1e3 * per_trial * r['private']:>11.2f}"
              f"{1e3 * per_trial * r['public']:>11.2f}{1e3 * saved:>10.2f}{100 * share:>11.2f}%"
              f"  {verdict}")
    print("\n(ms per trial: a worker writes the attributes once, and counts by state and the "
          "trials ahead of it once each, per trial)")


if __name__ == "__main__":
    main()
