"""Checkpoints of running trials: a trial whose worker dies resumes where it stopped.

A worker saves its running trial's training state now and then (``TrialCheckpoints``,
``model.Checkpoints``): the networks' weights, the optimizers' states, the random
generators', the histories, early stopping's and, with folds, the folds done. When
the trial is failed for a dead worker (the supervisor, the sweep, a stale heartbeat)
its retry (same parameters, and the seed of the trial it retries) finds the
checkpoint and continues from it, bit for bit as the trial would have gone on.

- **When**: after an epoch, once ``[artifacts] checkpoint_every`` seconds have passed since the
  trial started or last saved, and never so often that saving takes more than
  ``SHARE`` of the training time (a save that took 0.1 s waits 5 s for the next).
- **Where**: ``checkpoints/`` in the artifact folder (``artifacts.artifact_dir``:
  beside a file storage, or ``$NNSEARCH_ARTIFACTS``, which workers on several
  machines share), one file per trial, named by the study and the number of the
  trial first tried (a retry of a retry finds the same file). Written whole to a
  temporary file, then renamed: a worker killed mid-save leaves the last one whole.
- **Bounded**: one file per running trial, removed when the trial ends, and by
  ``run`` at its end for trials that will not be retried.
- **Checked**: the file names its study, trial, data fingerprint, network and
  training; one that does not match its trial, or that cannot be read, is ignored
  with one warning, and the retry starts from epoch 0.

A file is an ``.npz`` without pickles: the arrays, and a JSON header holding the rest
of the state (``{"__array__": key}`` where an array was).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
import uuid
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nnsearch.model import StateError

from . import record
from .artifacts import artifact_dir
from .sections import CHECKPOINT_EVERY
from .storage_url import StorageURL
from .worker_storage import WorkerStorage

logger = logging.getLogger(__name__)

FORMAT = "nnsearch.checkpoint/1"
SHARE = 0.02  # saving takes at most this share of the training time
_HEADER = "header.json"
T = TypeVar("T")


def checkpoint_folder(url: StorageURL) -> Path:
    return artifact_dir(url) / "checkpoints"


def checkpoint_path(url: StorageURL, study: str, number: int) -> Path:
    """The checkpoint file of trial ``number`` (the first try's) of study ``study``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", study)[:40]
    digest = hashlib.sha256(study.encode()).hexdigest()[:10]
    return checkpoint_folder(url) / f"{slug}-{digest}" / f"trial-{number}.npz"


def _split(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` with each array replaced by a reference to it in ``arrays``."""
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, dict):
        return {k: _split(v, arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_split(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _join(value: Any, arrays: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _join(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays) for v in value]
    return value


def write(path: Path, identity: dict[str, Any], state: dict[str, Any]) -> None:
    """Save ``state`` with ``identity`` to ``path``, atomically (a temporary file, then
    a rename)."""
    arrays: dict[str, np.ndarray] = {}
    header = {"format": FORMAT, "identity": identity, "state": _split(state, arrays)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")  # (workers share it)
    try:
        with tmp.open("wb") as fh:
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
                zf.writestr(_HEADER, json.dumps(header, allow_nan=True))
                for key, array in arrays.items():
                    with zf.open(f"{key}.npy", "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, np.ascontiguousarray(array),
                                                  allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before its name is (a power cut, then a retry)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(identity, state) of the checkpoint at ``path``; any error of a damaged file."""
    with zipfile.ZipFile(path) as zf:
        header = json.loads(zf.read(_HEADER))
        if header.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        arrays = {}
        for name in zf.namelist():
            if name.endswith(".npy"):
                with zf.open(name) as fh:
                    arrays[name[:-4]] = np.lib.format.read_array(fh, allow_pickle=False)
    return header["identity"], _join(header["state"], arrays)


def running_trial(trial: optuna.Trial) -> FrozenTrial:
    """``trial`` as stored (its system attributes: Optuna's retry records there which
    trial it retries), from the copy a worker's storage keeps of it."""
    storage = trial.storage
    if isinstance(storage, WorkerStorage) and storage.runs(trial.number) \
            and storage.started is not None:
        return storage.get_trial(storage.started)
    return trial.study.get_trials(deepcopy=False)[trial.number]  # (numbers count from 0)


def resumed_at(state: dict[str, Any], folds: int) -> dict[str, Any]:
    """Where a checkpoint's ``state`` resumes a trial, and how many epochs it saved
    (with folds, fold-epochs: each fold's epochs count)."""
    if "trainer" in state:  # one validation split
        epoch = int(state["trainer"]["history"]["epochs_run"])
        return {"at": f"epoch {epoch}", "epoch": epoch, "epochs_saved": epoch}
    if "folds" in state:  # folds side by side
        epoch = int(state["folds"][0]["history"]["epochs_run"])
        return {"at": f"epoch {epoch}", "epoch": epoch, "epochs_saved": epoch * folds}
    fold = int(state["fold"])  # folds in turn
    epoch = int(state["fit"]["trainer"]["history"]["epochs_run"])
    done = sum(int(e) for e in state["done"]["epochs_run"])
    return {"at": f"fold {fold}, epoch {epoch}", "fold": fold, "epoch": epoch,
            "epochs_saved": done + epoch}


def mean_curve(histories: tuple[dict[str, Any], ...]) -> list[tuple[float, float]]:
    """(validation loss, metric) epoch by epoch of the histories a checkpoint saved (with
    folds side by side, the folds' mean, as the trial's epoch callback saw it)."""
    return [(float(np.mean([h["val_loss"][e] for h in histories])),
             float(np.mean([h["val_metric"][e] for h in histories])))
            for e in range(int(histories[0]["epochs_run"]))]


def resume_or_start(saves: TrialCheckpoints | None, number: int, folds: int,
                    train: Callable[[dict[str, Any] | None, Any], T],
                    resumed: Callable[[dict[str, Any]], None],
                    replay: Callable[[dict[str, Any]], None]) -> T:
    """``train(state, wrap)`` from a retry's checkpoint (``saves.retry``) if it has one
    that fits, then ``resumed(where)`` (``resumed_at``); else, with one warning for one
    that does not, ``train(None, wrap)``: from epoch 0. ``wrap(callback)`` is the epoch
    callback training is to call: resumed, it first makes the reports the checkpoint
    saved (``replay(state)``), once the state has fitted (at the first epoch, or at the
    end if training ended before one)."""
    state = saves.load() if saves is not None and saves.retry else None
    if state is not None:
        assert saves is not None
        pending = [partial(replay, state)]

        def first(callback: Any) -> Any:
            def call(epoch: int, metrics: dict[str, Any]) -> Any:
                while pending:
                    pending.pop()()
                return callback(epoch, metrics)
            return call

        try:
            result = train(state, first)
        except StateError as exc:
            saves.ignore(f"does not fit ({exc})")
        else:
            while pending:
                pending.pop()()
            where = resumed_at(state, folds)
            logger.info("trial %d resumed from its checkpoint at %s", number, where["at"])
            resumed(where)
            return result
    return train(None, lambda callback: callback)


class TrialCheckpoints:
    """A running trial's checkpoints (``model.Checkpoints``): ``due`` after ``every``
    seconds of training (and ``SHARE``'s bound), ``save`` writes the file; ``load``
    gives a matching earlier one's state, or None."""

    def __init__(self, path: Path, identity: dict[str, Any], every: float = CHECKPOINT_EVERY,
                 retry: bool = False) -> None:
        self.path = path
        self.identity = json.loads(json.dumps(identity))  # as a file gives it back
        self.every = every
        self.retry = retry  # whether its trial retries another: only a retry resumes
        self.last = time.monotonic()
        self.cost = 0.0  # the last save's seconds

    def due(self) -> bool:
        return time.monotonic() - self.last >= max(self.every, self.cost / SHARE)

    def save(self, state: dict[str, Any]) -> None:
        start = time.monotonic()
        try:
            write(self.path, self.identity, state)
        except OSError as exc:  # a full disk costs the trial its resume, never its result
            logger.warning("trial %s: could not save its checkpoint: %s",
                           self.identity.get("trial"), exc)
        self.last = time.monotonic()
        self.cost = self.last - start

    def load(self) -> dict[str, Any] | None:
        """The state of this trial's earlier checkpoint, or None: none there, or one that
        does not match (another study, trial, data or configuration) or cannot be read
        (one warning, and the trial starts from epoch 0)."""
        if not self.path.is_file():
            return None
        try:
            identity, state = read(self.path)
        except Exception as exc:
            self.ignore(f"cannot be read ({type(exc).__name__}: {exc})")
            return None
        if not isinstance(identity, dict) or not isinstance(state, dict):
            self.ignore("cannot be read (no identity and state)")
            return None
        if identity != self.identity:
            differs = sorted(k for k in set(identity) | set(self.identity)
                             if identity.get(k) != self.identity.get(k))
            self.ignore(f"is not this trial's (its {', '.join(differs)} differ"
                        f"{'s' if len(differs) == 1 else ''})")
            return None
        return state

    def ignore(self, why: str) -> None:
        logger.warning("trial %s: its checkpoint %s %s; starting from epoch 0",
                       self.identity.get("trial"), self.path, why)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def remove_unneeded(url: StorageURL, study: optuna.Study) -> int:
    """Remove the study's checkpoints that no trial will resume from: those of trials
    neither running nor waiting (a retry that is not to come, a worker's file that its
    own end did not remove). How many it removed."""
    folder = checkpoint_path(url, study.study_name, 0).parent
    if not folder.is_dir():
        return 0
    live = {record.first_try(t) for t in study.get_trials(
        deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))}
    removed = 0
    for path in [*folder.glob("trial-*.npz"), *folder.glob(".trial-*.tmp")]:
        number = path.name.lstrip(".").removeprefix("trial-").split(".")[0]
        if number.isdigit() and int(number) not in live:  # (a killed save's too)
            path.unlink(missing_ok=True)
            removed += 1
    with contextlib.suppress(OSError):  # (only if empty)
        folder.rmdir()
    return removed
