"""Checkpoints: a killed trial's retry resumes where it stopped, bit for bit (issue #28)."""

import copy
import logging
import os
import signal

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from nnsearch.search import record
from nnsearch.search.checkpoint import (
    TrialCheckpoints,
    checkpoint_path,
    read,
    resumed_at,
    write,
)
from nnsearch.search.data import DataSpec, load_data
from nnsearch.search.storage_url import StorageURL
from nnsearch.search.training import cross_validate
from tests.helpers import run_cli, worker_pids
from tests.search.worker_runs import run_to_its_end, trials, wait_for


class SaveAt:
    """Checkpoints due at the given calls only, keeping deep copies of what they get."""

    def __init__(self, *calls: int) -> None:
        self.calls, self.n, self.saved = set(calls), -1, []

    def due(self) -> bool:
        self.n += 1
        return self.n in self.calls

    def save(self, state):
        self.saved.append(copy.deepcopy(state))


# ----- the file ---------------------------------------------------------------------------

def test_a_checkpoint_file_gives_back_what_was_saved(tmp_path):
    state = {"a": np.arange(5, dtype=np.float32), "nested": [{"b": np.eye(2)}, None, 3],
             "rng": {"state": 2 ** 100 + 7, "inc": 5}, "nan": float("nan"), "flag": True}
    path = tmp_path / "x" / "trial-0.npz"
    write(path, {"study": "s", "trial": 0}, state)
    identity, back = read(path)
    assert identity == {"study": "s", "trial": 0}
    np.testing.assert_array_equal(back["a"], state["a"])
    assert back["a"].dtype == np.float32
    np.testing.assert_array_equal(back["nested"][0]["b"], np.eye(2))
    assert back["nested"][1:] == [None, 3] and back["rng"] == state["rng"] and back["flag"]
    assert np.isnan(back["nan"])
    assert [p.name for p in path.parent.iterdir()] == ["trial-0.npz"]  # no temporary left


def test_a_damaged_or_foreign_checkpoint_is_ignored_with_one_warning(tmp_path, caplog):
    path = tmp_path / "trial-3.npz"
    ours = TrialCheckpoints(path, {"study": "s", "trial": 3, "training": {"lr": 0.1}})
    assert ours.load() is None  # none yet: no warning
    write(path, {"study": "s", "trial": 3, "training": {"lr": 0.2}}, {"x": np.zeros(2)})
    with caplog.at_level(logging.WARNING):
        assert ours.load() is None
    assert len(caplog.records) == 1 and "training differs" in caplog.text
    caplog.clear()
    path.write_bytes(path.read_bytes()[:40])  # cut short
    with caplog.at_level(logging.WARNING):
        assert ours.load() is None
    assert len(caplog.records) == 1 and "cannot be read" in caplog.text
    ours.save({"x": np.ones(2)})
    np.testing.assert_array_equal(ours.load()["x"], np.ones(2))


def test_saves_wait_for_the_interval_and_for_their_own_cost(tmp_path):
    saves = TrialCheckpoints(tmp_path / "t.npz", {}, every=0.0)
    assert saves.due()
    saves.cost = 10.0  # a save that took 10 s: not again for 10 / SHARE seconds
    saves.last -= 100
    assert not saves.due()
    assert TrialCheckpoints(tmp_path / "t.npz", {}, every=3600).due() is False


# ----- cross-validation -------------------------------------------------------------------

@pytest.mark.parametrize("together", [True, False])
def test_a_resumed_cross_validation_ends_as_the_uninterrupted_one(together):
    data = load_data(DataSpec("iris", folds=3, seed=2))
    network = {"layer_sizes": [data.n_features, 16, 3], "activation": "relu", "dropout": 0.1,
               "seed": 11}
    training = {"epochs": 30, "learning_rate": 0.01, "patience": 6, "batch_size": 16,
                "seed": 11}
    # early on, and later (folds in turn: in a later fold, once the first has stopped)
    saves = SaveAt(4, 20) if together else SaveAt(4, 31)
    whole = cross_validate(network, training, data, "val_loss", outputs=True,
                           together=together, checkpoints=saves)
    assert len(saves.saved) == 2
    for state in saves.saved:
        again = cross_validate(network, training, data, "val_loss", outputs=True,
                               together=together, resume=state)
        assert again.values == whole.values and again.epochs == whole.epochs
        assert again.epochs_run == whole.epochs_run
        np.testing.assert_array_equal(again.outputs, whole.outputs)
    if not together:
        assert saves.saved[1]["fold"] > 0  # resumed with folds done


# ----- through the CLI: a worker killed mid-fold ------------------------------------------

RESUME_STUDY = """
[study]
name = "resume"
seed = 3

[pruner]
name = "none"

[data]
source = "digits"
folds = 3

[artifacts]
checkpoint_every = 0.3

[space]
n_layers = 1
width = 384
learning_rate = 0.002
dropout = 0.1
epochs = {epochs}
patience = "none"
"""


def _values_by_first_try(url: str) -> dict[int, float]:
    return {record.first_try(t): t.value for t in trials(url, "resume")
            if t.state == TrialState.COMPLETE}


def _checkpoints_of(url: str, tmp_path):
    """The folder of study "resume"'s checkpoints, for a run in ``tmp_path``."""
    folder = checkpoint_path(StorageURL.parse(url), "resume", 0).parent
    if url.startswith("postgresql"):  # artifacts go to the working folder's nnsearch-artifacts
        folder = tmp_path / folder.relative_to(folder.parents[2])
    return folder


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_worker_killed_mid_fold_resumes_its_trial_bit_for_bit(tmp_path, backend, request):
    """Killed twice: the retry resumes from the first try's checkpoint, and the retry of
    the retry from the retry's later one."""
    study = tmp_path / "resume.toml"
    study.write_text(RESUME_STUDY.format(epochs=90))
    plain = f"sqlite:///{tmp_path / 'plain.db'}"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'killed.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    folder = _checkpoints_of(url, tmp_path)

    saved = folder / "trial-0.npz"

    def resumed_and_saved(first_pid):  # (a new worker's retry saved again since)
        pids = worker_pids(str(study))
        return pids if pids and pids != [first_pid] and saved.is_file() and \
            saved.stat().st_mtime > killed_at + 0.5 else None

    with run_to_its_end(tmp_path, str(study), "--workers", "1", "--trials", "1", "--storage",
                        url):
        wait_for(lambda: saved.is_file(), what="trial 0's checkpoint")
        (pid,) = worker_pids(str(study))
        os.kill(pid, signal.SIGKILL)
        killed_at = saved.stat().st_mtime
        first = resumed_at(read(saved)[1], 3)["epoch"]  # (what the first try saved last)
        (pid,) = wait_for(lambda: resumed_and_saved(pid), what="the retry's own checkpoint")
        os.kill(pid, signal.SIGKILL)
    ts = trials(url, "resume")
    tries = [t for t in ts if record.first_try(t) == 0]
    assert [t.state for t in tries] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    resumed = tries[-1].user_attrs[record.RESUMED]
    assert 1 <= first < resumed["epoch"]  # (from the retry's checkpoint, past the first's)
    assert resumed["epochs_saved"] == 3 * resumed["epoch"]
    assert not list(folder.glob("*.npz")), "checkpoints are removed when their trial ends"

    # the same study, never interrupted: the same value (the same seed, from the first try)
    res = run_cli("run", str(study), "--workers", "1", "--trials", "1", "--storage", plain,
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert _values_by_first_try(url) == _values_by_first_try(plain)
    assert list(_values_by_first_try(plain)) == [0]

    shown = run_cli("trials", str(study), "--storage", url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"at epoch {resumed['epoch']}" in shown.stdout and "epochs saved" in shown.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_damaged_or_foreign_checkpoint_gives_one_warning_and_a_start_from_epoch_0(
        tmp_path, backend, request):
    """A retry whose checkpoint is damaged, then one whose checkpoint is another trial's:
    each warns once and trains from epoch 0, to the value an uninterrupted trial has."""
    study = tmp_path / "resume.toml"
    study.write_text(RESUME_STUDY.format(epochs=8))
    url = f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite" \
        else request.getfixturevalue("pg_url")
    res = run_cli("run", str(study), "--workers", "1", "--trials", "2", "--storage", url,
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    expected = _values_by_first_try(url)
    folder = _checkpoints_of(url, tmp_path)

    storage = optuna.storages.RDBStorage(url)
    loaded = optuna.load_study(study_name="resume", storage=storage)
    for number in (0, 1):  # each trial again, as a worker's death would have it retried
        frozen = next(t for t in loaded.get_trials() if t.number == number)
        record.RETRY(loaded, frozen)
    storage.engine.dispose()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trial-0.npz").write_bytes(b"PK\x03\x04 not a checkpoint")
    write(folder / "trial-1.npz", {"study": "resume", "trial": 0}, {"fold": 0})  # trial 0's

    res = run_cli("run", str(study), "--workers", "1", "--trials", "4", "--storage", url,
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "checkpoint" in line]
    assert len(warnings) == 2, res.stderr
    assert "trial 0: its checkpoint" in warnings[0] + warnings[1]
    assert "cannot be read" in res.stderr and "is not this trial's" in res.stderr
    assert all("starting from epoch 0" in w for w in warnings)
    retries = [t for t in trials(url, "resume") if t.number >= 2]
    assert {record.first_try(t): t.value for t in retries} == expected
    assert not any(record.RESUMED in t.user_attrs for t in retries)
    assert not list(folder.glob("*.npz"))
