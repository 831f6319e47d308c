"""Helpers shared by the tests: study files, the CLI as a subprocess, PostgreSQL."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The CLI as users get it: -P keeps a model.py or nnsearch.py in the cwd from shadowing it.
NNSEARCH = [sys.executable, "-P", "-m", "nnsearch"]

# A study that trains in a fraction of a second per trial.
SMALL_STUDY = """
[study]
name = "{name}"
metric = "val_accuracy"
seed = 3

[sampler]
name = "{sampler}"

[pruner]
name = "median"
n_startup_trials = 2

[data]
source = "{source}"
{data_extra}

[budget]
trials = {trials}

[space]
n_layers = {{ low = 1, high = 2 }}
width = {{ low = 8, high = 32 }}
activation = ["relu", "tanh"]
learning_rate = {{ low = 1e-3, high = 1e-2, log = true }}
dropout = {{ low = 0.0, high = 0.2 }}
epochs = {epochs}
patience = 5
"""


def write_study(path: Path, name: str = "small", source: str = "iris", trials: int = 4,
                epochs: int = 20, sampler: str = "tpe", data_extra: str = "",
                metric: str | None = None) -> Path:
    text = SMALL_STUDY.format(name=name, source=source, trials=trials, epochs=epochs,
                              sampler=sampler, data_extra=data_extra)
    if metric:
        text = text.replace('metric = "val_accuracy"', f'metric = "{metric}"')
    path.write_text(text)
    return path


def run_small_study(tmp: Path, trials: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The small iris study (``small.toml`` in ``tmp``) run to ``trials`` by 2 workers."""
    study = write_study(tmp / "small.toml", trials=trials)
    res = run_cli("run", str(study), "--workers", "2", cwd=tmp)
    assert res.returncode == 0, res.stderr
    return study, res


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NNSEARCH_STORAGE", None)
    env["NNSEARCH_HEARTBEAT"] = "1"
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NNSEARCH, *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, env=env or cli_env())


# ----- PostgreSQL -----------------------------------------------------------------------
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def postgres_reachable() -> str | None:
    """None if the server answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return str(exc).splitlines()[0]
    return None


def worker_pids(marker: str) -> list[int]:
    """Live worker processes whose command line names ``marker`` (a study file)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd and " worker " in cmd:
            pids.append(int(entry.name))
    return pids


def messy_table(path: Path, rows: int = 600, seed: int = 0) -> Path:
    """A table as users have them: numbers with empty cells, a text column that carries
    the signal, a rare category, an identifier column and string labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["id,age,income,city,plan,label"]
    cities = ["paris", "lyon", "nice", "lille"]
    for i in range(rows):
        age = rng.integers(18, 80)
        income = rng.normal(50, 15)
        city = cities[rng.integers(0, 4)] if rng.random() > 0.004 else "brest"  # rare
        plan = ["basic", "pro"][rng.integers(0, 2)]
        signal = (city in ("paris", "nice")) ^ (plan == "pro")
        label = ["churned", "stayed"][int(signal if rng.random() > 0.1 else not signal)]
        cells = [f"u{i:05d}", str(age) if rng.random() > 0.03 else "",
                 f"{income:.2f}" if rng.random() > 0.05 else "",
                 city if rng.random() > 0.02 else "", plan, label]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def grow_by_copies(db: Path, study_name: str, at_least: int) -> int:
    """Double a finished SQLite study's trials by SQL copies of them (numbers and ids
    shifted, every parameter, value, attribute and report copied) until it has at least
    ``at_least``: a large study in a second, where running it would take minutes.
    Optuna's table layout is named here, in a test helper alone. Returns the count."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        (study_id,) = con.execute("SELECT study_id FROM studies WHERE study_name = ?",
                                  (study_name,)).fetchone()
        children = ("trial_params", "trial_values", "trial_user_attributes",
                    "trial_system_attributes", "trial_intermediate_values")
        while True:
            n, top, last = con.execute(
                "SELECT count(*), max(trial_id), max(number) FROM trials WHERE study_id = ?",
                (study_id,)).fetchone()
            if n >= at_least:
                return n
            columns = [c[1] for c in con.execute("PRAGMA table_info(trials)")]
            shifted = {"trial_id": f"trial_id + {top}", "number": f"number + {last + 1}"}
            con.execute(f"INSERT INTO trials ({', '.join(columns)}) SELECT "
                        + ", ".join(shifted.get(c, c) for c in columns)
                        + " FROM trials WHERE study_id = ?", (study_id,))
            for table in children:
                own = [c[1] for c in con.execute(f"PRAGMA table_info({table})")][1:]
                con.execute(f"INSERT INTO {table} ({', '.join(own)}) SELECT "
                            + ", ".join(f"trial_id + {top}" if c == "trial_id" else c
                                        for c in own)
                            + f" FROM {table} WHERE trial_id IN (SELECT trial_id FROM trials"
                            " WHERE study_id = ? AND trial_id <= ?)", (study_id, top))
            con.commit()
    finally:
        con.close()
