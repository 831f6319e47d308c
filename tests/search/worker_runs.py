"""Helpers of the worker tests: a slow study, reading trials, waiting, starting runs."""

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tests.helpers import NNSEARCH, cli_env

SLOW_STUDY = """
[study]
name = "slow"
seed = 1

[pruner]
name = "none"

[data]
source = "digits"

[space]
n_layers = 1
width = {{ low = 512, high = 1024 }}
learning_rate = {{ low = 1e-3, high = 3e-3, log = true }}
epochs = {epochs}
patience = "none"
"""


def slow_study(path: Path, epochs: int = 300) -> Path:
    """Trials of a few seconds each: long enough to be caught in the middle."""
    path.write_text(SLOW_STUDY.format(epochs=epochs))
    return path


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url) if not url.startswith("journal") else \
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            url[len("journal:///"):]))
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []
    finally:
        if hasattr(storage, "engine"):
            storage.engine.dispose()


def count(ts, *states):
    return sum(t.state in states for t in ts)


def assert_finished_exactly(ts, budget):
    assert count(ts, TrialState.COMPLETE, TrialState.PRUNED) == budget
    assert count(ts, TrialState.RUNNING, TrialState.WAITING) == 0
    # Workers count and create trials under the study's trial lock: none beyond the budget.
    assert count(ts, TrialState.FAIL) == 0, [t.user_attrs for t in ts
                                             if t.state == TrialState.FAIL]


def _default_sighup() -> None:
    # run respects an ignored SIGHUP (nohup); a suite started under nohup would pass that
    # on, and the SIGHUP test would see the run finish instead of stop
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def start_run(tmp: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*NNSEARCH, "run", *args], cwd=tmp,
                            env=cli_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=_default_sighup)


def worker_pid(trial: optuna.trial.FrozenTrial) -> int:
    """The pid of the worker that runs ``trial`` (its record's ``host:pid``)."""
    return int(trial.user_attrs["nnsearch.worker"].rsplit(":", 1)[1])


@contextmanager
def run_to_its_end(tmp: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``nnsearch run ARGS`` started for the block (which kills a worker, say); then the
    run is awaited, and must exit 0 (it is killed on the way out if it has not ended)."""
    proc = start_run(tmp, *args)
    try:
        yield proc
        _out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err


def wait_for(predicate, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def running_with_worker(url: str, name: str, min_seconds: float = 0.3):
    now = time.time()
    for t in trials(url, name):
        if t.state == TrialState.RUNNING and "nnsearch.worker" in t.user_attrs \
                and t.datetime_start and now - t.datetime_start.timestamp() >= min_seconds:
            return t
    return None


@contextmanager
def slow_run(tmp: Path, trials: int, epochs: int = 300
             ) -> Iterator[tuple[Path, str, subprocess.Popen[str]]]:
    """The slow study run by 2 workers to ``trials``, caught with a trial running;
    (study file, storage URL, the run's process), which is killed on the way out."""
    study = slow_study(tmp / "slow.toml", epochs)
    url = f"sqlite:///{tmp / 'slow.db'}"
    proc = start_run(tmp, str(study), "--workers", "2", "--trials", str(trials))
    try:
        wait_for(lambda: running_with_worker(url, "slow", 0.3), what="a running trial")
        yield study, url, proc
    finally:
        proc.kill()


def failed_and_none_running(url: str) -> list[optuna.trial.FrozenTrial]:
    """The slow study's FAIL trials, once none is left RUNNING."""
    ts = trials(url, "slow")
    assert count(ts, TrialState.RUNNING) == 0
    return [t for t in ts if t.state == TrialState.FAIL]
