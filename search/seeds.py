"""The seeds ``train`` averages: an export refitted with other seeds for its network,
dropout and shuffling, and the networks averaged (``nnsearch train --seeds K``)."""

from __future__ import annotations

import logging
from typing import Any

from threadpoolctl import threadpool_limits

from nnsearch.model import Ensemble, History, Network, evaluate

from . import record
from .data import Dataset
from .training import refit, train_trial

logger = logging.getLogger(__name__)

SEED_ROWS = 10_000  # up to this many rows, train's model is up to SEEDS networks, not one
SEEDS = 5
MAX_SEEDS = 20
SEED_SECONDS = 30.0  # what an export's seeds beyond its first may cost, about


def default_seeds(data: Dataset, config: dict[str, Any]) -> int:
    """How many seeds ``train`` averages by default for an export (each member of an
    ensemble's): on a small table one network's test score moves with its seed as much
    as with its configuration. ``SEEDS`` up to ``SEED_ROWS`` rows (else 1), fewer where
    the seeds beyond the first would cost more than ``SEED_SECONDS``, estimated from
    the trial's training time: a seed is two trainings (without the test rows, and on
    every row), each about one fold's time on (k-1)/k of the rows."""
    rows = len(data.y_train) + len(data.y_val) + len(data.y_test)
    if rows > SEED_ROWS:
        return 1
    seconds = config["trial"].get("user_attrs", {}).get("train_seconds")
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        return SEEDS
    folds = data.n_folds or 0
    per_seed = 2 * seconds / (folds - 1) if folds > 1 else 2 * seconds
    return max(1, min(SEEDS, 1 + int(SEED_SECONDS / per_seed)))


def with_seed(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """The export with another seed for its network, dropout and shuffling."""
    network, training = dict(config["network"]), dict(config["training"])
    network["seed"] = training["seed"] = seed
    return {**config, "network": network, "training": training, "seed": seed}


def seed_members(config: dict[str, Any], data: Dataset, net: Network, history: History,
                 metrics: dict[str, float], seeds: int
                 ) -> tuple[list[Network], list[dict[str, Any]], list[int]]:
    """``retrain``'s network and ``seeds - 1`` more of the same configuration with other
    seeds (``record.other_seed``), each trained as the first was (with folds: refitted on
    train + validation for the folds' epochs; else trained on train, early-stopped on
    validation). Returns the networks, their configs and their epochs; ``metrics``'
    test figures become the average's (the first network's stay as ``*_single``)."""
    first = int(metrics["refit_epochs"]) if data.n_folds else history.best_epoch + 1
    nets, configs, epochs = [net], [config], [first]
    for k in range(1, seeds):
        other = with_seed(config, record.other_seed(int(config["seed"]), k))
        if data.n_folds:
            try:
                member, _ = refit(other["network"], other["training"], data, first)
            except ValueError as exc:
                logger.warning("seed %d of %d left out: %s", k + 1, seeds, exc)
                continue
            done = first
        else:
            member, trained, *_ = train_trial(other["network"], other["training"], data)
            if trained.diverged:
                logger.warning("seed %d of %d left out: it diverged", k + 1, seeds)
                continue
            done = trained.best_epoch + 1
        nets.append(member)
        configs.append(other)
        epochs.append(done)
    if len(nets) > 1:
        with threadpool_limits(1):
            loss, score = evaluate(Ensemble(nets), data.X_test, data.y_test)
        for key in [k for k in metrics if k.startswith("test_")]:
            metrics[f"{key}_single"] = metrics[key]
        metrics["test_loss"] = loss
        metrics["test_accuracy" if data.task == "classification" else "test_rmse"] = \
            score if data.task == "classification" else score * data.y_scale
        metrics["seeds"] = len(nets)
    return nets, configs, epochs
