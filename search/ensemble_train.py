"""``train`` on an ensemble export: every member refitted as a single export is refitted
(in parallel, one process per core), and the weighted ensemble scored on the test
rows."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from threadpoolctl import threadpool_limits

from nnsearch.model import Ensemble, Network, evaluate

from .data import Dataset, DataSpec, load_data
from .ensemble import check_ensemble
from .errors import UsageError
from .export import check_reproduction, refit_all, retrain
from .seeds import default_seeds, seed_members
from .training import metric_value

logger = logging.getLogger(__name__)


@dataclass
class Trained:
    """What ``train_members`` built: the model, the data, the ensemble's metrics, each
    member's (trial number, weight, metrics), the first member's history, and the
    members whose trial value was not reproduced."""

    model: Network | Ensemble
    data: Dataset
    metrics: dict[str, float]
    members: list[tuple[int, float, dict[str, float]]]
    history: Any
    mismatches: list[str]
    all_rows: bool  # the model's networks were all refitted on every row


def train_members(config: dict[str, Any], where: str, seeds: int | None,
                  holdout: bool) -> Trained:
    """Refit every member of an ensemble export as ``train`` refits a single export
    (its trial value reproduced; ``seeds`` networks each, default: as many as a single
    export gets, for each member: on five tables of the bench, one seed per member lost
    to the best trial's five seeds; refitted on every row unless ``holdout``), and
    score the weighted ensemble of the networks trained without the test rows. The
    members train in parallel, one process per core (each on one BLAS thread, as a
    worker trains: the same networks as one after another)."""
    exports = check_ensemble(config, where)
    try:
        data = load_data(DataSpec(**exports[0]["data"]))
    except TypeError as exc:
        raise UsageError(f"{where}: bad data section ({exc}).") from None
    # the inputs the members trained on (one study's: one preprocessing); the model file
    # records it, and the ensemble is scored on it
    prep = exports[0].get("preprocessing")
    if any(e.get("preprocessing") != prep for e in exports):
        raise UsageError(f"{where}: the members were exported with different "
                         "preprocessing; an ensemble's members come from one study.")
    data = data.scaled_as(prep)
    jobs = [(export, f"{where}: trial {export['trial'].get('number')}", data, seeds, holdout)
            for export in exports]
    processes = min(len(jobs), os.cpu_count() or 1)
    if processes > 1:
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_member, *zip(*jobs, strict=True)))
    else:
        done = [_member(*job) for job in jobs]
    nets: list[Network] = []  # the model's
    net_weights: list[float] = []
    scored: list[Network] = []  # trained without the test rows: the test figure's
    scored_weights: list[float] = []
    members = []
    for member, (own_scored, own, metrics, _, _, _) in zip(config["members"], done,
                                                           strict=True):
        weight = float(member["weight"])
        scored += own_scored
        scored_weights += [weight / len(own_scored)] * len(own_scored)
        nets += own
        net_weights += [weight / len(own)] * len(own)
        members.append((member["export"]["trial"].get("number"), weight, metrics))
    with threadpool_limits(1):
        loss, score = evaluate(Ensemble(scored, scored_weights), data.X_test, data.y_test)
    test = "test_accuracy" if data.task == "classification" else "test_rmse"
    metrics = {test: metric_value("val_rmse", data, loss, score) if data.task == "regression"
               else score, "test_loss": loss, "members": len(members),
               "networks": len(nets)}
    model = nets[0] if len(nets) == 1 else Ensemble(nets, net_weights)
    mismatches = [m for *_, m, _, _ in done if m]
    return Trained(model, data, metrics, members, done[0][4], mismatches,
                   all(refitted for *_, refitted in done))


def _member(export: dict[str, Any], where: str, data: Dataset, seeds: int | None,
            holdout: bool) -> tuple[list[Network], list[Network], dict[str, float],
                                    str | None, Any, bool]:
    """One member as ``train`` refits it: the networks trained without the test rows,
    the model's networks, its metrics, why its value was not reproduced (or None), its
    history, and whether the model's networks were refitted on every row."""
    number = export["trial"].get("number")
    net, hist, data, metrics = retrain(export, where, data)
    mismatch = check_reproduction(export, metrics)
    if mismatch:
        return [net], [net], metrics, mismatch, hist, False
    own, configs, epochs = seed_members(export, data, net, hist, metrics,
                                        seeds or default_seeds(data, export))
    if holdout:
        return own, own, metrics, None, hist, False
    refits = []
    for c, e in zip(configs, epochs, strict=True):
        try:
            refits.append(refit_all(c, data, e)[0])
        except UsageError as exc:
            logger.warning("trial %s seed %s left out of the model: %s", number, c["seed"],
                           exc)
    if not refits:
        logger.warning("trial %s: every refit on every row diverged: the model keeps its "
                       "networks trained without the test rows", number)
    return own, refits or own, metrics, None, hist, bool(refits)
