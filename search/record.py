"""A trial's record: the attributes a worker writes, who wrote them, and the seeds.

Every module that reads or writes a trial's user attributes takes the names from
here, so renaming one cannot silently break ``export`` or the supervisor.
"""

from __future__ import annotations

import copy
import math
import os
import socket
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from nnsearch.model import History, Network

# Written by a worker when it takes a trial, before training: who runs it.
WORKER = "nnsearch.worker"  # host:pid
WORKER_PROCESS = "nnsearch.worker_process"  # its pid namespace and start time (Linux)
# Written as the trial is created, by a worker creating its own: [host:pid, process tag].
# Until WORKER is written (as training starts) it is how a dead worker's trial is found.
CREATOR = "nnsearch.created_by"
# Written with the trial's result.
NETWORK = "network"  # Network(**...) arguments
TRAINING = "training"  # TrainConfig(**...) arguments
EPOCHS_RUN = "epochs_run"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"  # classification, whatever the study's metric
PRUNED_REASON = "pruned_reason"
FOLD_VALUES = "fold_values"  # with [data] folds: the metric on each fold, in order
FOLD_EPOCHS = "fold_epochs"  # and the epochs each fold trained to its best weights
# the folds trained side by side, to the epoch of their best mean (training.cross_validate)
FOLDS_TOGETHER = "folds_together"
DATA_FINGERPRINT = "data_fingerprint"  # of the data the trial trained on
# Why a trial failed: stopped by a signal, its worker died, or it was surplus.
FAIL_REASON = "fail_reason"
RESUMED = "resumed"  # a retry continued from its checkpoint: from where, what it saved
SURPLUS = "nnsearch.surplus"
PRIOR = "nnsearch.prior"  # a trial copied from another study (run --from-study): "NAME#N"
# A worker-written result carries all of these; a value set by hand (the dashboard) does not.
RESULT_KEYS = (WORKER, EPOCHS_RUN, NETWORK, TRAINING)
SHOWN_KEYS = (EPOCHS_RUN, "n_params", "train_seconds")  # beside the best trial's params

_SEED_SPACE = 2**32  # numpy's and Optuna's samplers take seeds in [0, 2**32)


def worker_id(pid: int | None = None) -> str:
    """A worker process's identity in the trials it writes: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def process_tag(pid: int | None = None) -> str:
    """A process's identity beyond its pid: its pid namespace and start time ('' where
    there is no /proc). Two processes with one pid, one after the other, differ here."""
    pid = os.getpid() if pid is None else pid
    try:
        namespace = os.readlink(f"/proc/{pid}/ns/pid")
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
    return f"{namespace}|{start}"


def owner_gone(owner: str, tag: str | None = None) -> bool:
    """Whether the worker ``host:pid`` (with its ``process_tag``) is known to be gone: it
    ran on this host, in this pid namespace, and its pid is free or now another
    process's. A worker elsewhere (another host, another container) is never judged."""
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    here = process_tag().partition("|")[0]
    if tag and here and tag.partition("|")[0] != here:
        return False  # same host name, another pid namespace: cannot tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False  # alive (someone else's), or no pid at all
    if tag:
        return process_tag(int(pid_text)) != tag  # the pid was reused since
    try:  # a trial recorded without a tag: judge by the command line
        return b"nnsearch" not in Path(f"/proc/{pid_text}/cmdline").read_bytes()
    except OSError:
        return False


def holder(trial: FrozenTrial) -> tuple[str, str | None] | None:
    """The worker that holds this trial (``host:pid`` and its process tag): the one that
    runs it, else the one that created it and has not yet started it; None if neither
    is recorded."""
    owner = trial.user_attrs.get(WORKER)
    if owner is not None:
        return owner, trial.user_attrs.get(WORKER_PROCESS)
    creator = trial.user_attrs.get(CREATOR)
    if isinstance(creator, list) and len(creator) == 2 and isinstance(creator[0], str):
        return creator[0], creator[1] if isinstance(creator[1], str) else None
    return None


def written_by_worker(trial: FrozenTrial) -> bool:
    """Whether a worker wrote this trial's result (not, say, the dashboard)."""
    return all(key in trial.user_attrs for key in RESULT_KEYS)


def is_prior(trial: FrozenTrial) -> bool:
    """A trial copied from another study as a prior: it guides the sampler and the
    pruner, but is not this study's own (no budget, stop or export counts it)."""
    return PRIOR in trial.user_attrs


def first_try(trial: FrozenTrial) -> int:
    """The number of the trial that ``trial`` retries (the first of a series of
    retries, as Optuna's retry records it), else its own: what its seed and its
    checkpoint are named by, so that a retry trains as the trial it retries."""
    first = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.number if first is None else int(first)


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A 31-bit seed for a trial's network and shuffling: the study seed and the trial
    number alone decide it, so a trial's result does not depend on its worker."""
    entropy = [study_seed % _SEED_SPACE, trial_number]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def other_seed(seed: int, k: int) -> int:
    """The k-th other seed of a network whose seed is ``seed`` (31 bits, never the seed):
    a re-check's extra seeds, and ``train``'s other members."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0] >> 1)


def seed_offset(index: int, restarts: int) -> int:
    """The sampler-seed offset of worker ``index`` of a run, after ``restarts`` restarts.

    Distinct for every pair (the Cantor pairing), and >= 1 so that no worker samples
    like the study's own sampler.
    """
    n = index + restarts
    return n * (n + 1) // 2 + restarts + 1


def standalone_offset(worker: str | None = None) -> int:
    """The offset of a worker started by hand: from its host and pid, in the upper half
    of the seed space, away from the small offsets of a run's workers."""
    return _SEED_SPACE // 2 + zlib.crc32((worker or worker_id()).encode()) % (_SEED_SPACE // 2)


def sampler_seed(study_seed: int, offset: int) -> int:
    """A worker's sampler seed, always a valid seed whatever the study seed."""
    return (study_seed + offset) % _SEED_SPACE


class Retry(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a failed trial (same params, up to ``max_retry`` times), but the
    retry starts with a clean record: none of the failed trial's user attributes (its
    worker, its fail reason, partial results) nor its constraint values (the retry
    records its own) is copied to it."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        from ._optuna import without_constraints

        clean = copy.copy(trial)
        clean.user_attrs = {}
        clean.system_attrs = without_constraints(trial.system_attrs)
        super().__call__(study, clean)


MAX_RETRIES = 3  # a trial whose worker died is retried this often
RETRY = Retry(max_retry=MAX_RETRIES)  # stateless: one for every storage and sweeper


def result_attrs(history: History, net: Network, seed: int, seconds: float) -> dict[str, Any]:
    """The diagnostics a trial records with its result (JSON-friendly, finite)."""
    def finite(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    last_norms = history.grad_norms[-1] if history.grad_norms else []
    return {
        "seed": seed,
        "n_params": net.n_params,
        EPOCHS_RUN: history.epochs_run,
        "best_epoch": history.best_epoch,
        "train_seconds": round(seconds, 4),
        "final_train_loss": finite(history.train_loss[-1]) if history.train_loss else None,
        "final_val_loss": finite(history.val_loss[-1]) if history.val_loss else None,
        "max_grad_norm": finite(history.max_grad_norm),
        "grad_norms": [finite(x) for x in last_norms],
        "clip_rate": float(np.mean(history.clip_fraction)) if history.clip_fraction else 0.0,
        "diverged": history.diverged,
        "stopped_early": history.stopped_early,
    }
