"""``run --from-study NAME``: another study's finished trials as a prior.

``collect`` reads the other study (same storage) and checks it before anything is
written: it must exist, optimise the same objectives, and have finished trials that
fit this study's space (each value a choice or inside a range of it; a parameter this
space fixes must have been at that value; never-trained and infeasible trials are left
out). ``add`` copies those trials into this
study once (each is tagged ``record.PRIOR`` = ``NAME#N``, and a tag already there is
not added again: a run cut off halfway adds the rest next time): the
sampler and the pruner learn from them, but no budget, stop or export counts them.
A copied trial carries its values, intermediate values and a few diagnostics, not
its network: it was trained on the other study's data, so it is never exported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import record
from ._optuna import constraint_attrs
from .enqueue import check_value
from .errors import UsageError
from .front import feasible
from .retry import with_retry
from .space import PARAMS, build_configs, sample, width_layer
from .storage import dispose, open_storage
from .storage_url import StorageURL
from .studyfile import StudySpec

logger = logging.getLogger(__name__)

KEPT_ATTRS = (record.VAL_LOSS, record.VAL_ACCURACY, record.EPOCHS_RUN, "n_params",
              "latency_ms", record.PRUNED_REASON)


@dataclass
class Prior:
    source: str
    trials: list[FrozenTrial] = field(default_factory=list)  # fitted to this space
    left_out: int = 0  # finished, but outside this space or its constraints


def _fit(trial: FrozenTrial, spec: StudySpec, tag: str) -> FrozenTrial | None:
    """The trial as this study's space would have sampled it, or None if it cannot."""
    params: dict[str, Any] = {}
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, value in trial.params.items():
        base = "width" if width_layer(name) is not None else name
        if base not in PARAMS:
            return None
        param = spec.space.get(base)
        if param is None or param.kind == "fixed":
            continue  # this space fixes it: _same_settings compares the value
        dist = param.distribution()
        try:
            params[name] = check_value(param, value, name)
        except UsageError:  # outside this space
            return None
        assert dist is not None
        dists[name] = dist
    n_params = trial.user_attrs.get("n_params")
    if spec.max_params is not None and (n_params is None or n_params > spec.max_params):
        return None
    latency = trial.user_attrs.get("latency_ms")
    if spec.max_latency_ms is not None and (latency is None or latency > spec.max_latency_ms):
        return None
    if record.EPOCHS_RUN not in trial.user_attrs or (
            trial.state == TrialState.COMPLETE and not feasible(trial)):
        return None  # never trained (e.g. over its study's max_params), or infeasible
    if not _same_settings(trial, spec):
        return None
    attrs = {k: trial.user_attrs[k] for k in KEPT_ATTRS if k in trial.user_attrs}
    # This study's constraints, as its own trials record them (GP needs them on all).
    excess = {"max_params": (n_params or 0) - (spec.max_params or 0),
              "max_latency_ms": (latency or 0.0) - (spec.max_latency_ms or 0.0)}
    return optuna.trial.create_trial(
        state=trial.state, params=params, distributions=dists,
        values=trial.values,  # (a pruned trial's: its last report)
        intermediate_values=dict(trial.intermediate_values),
        user_attrs={**attrs, record.PRIOR: tag},
        system_attrs=constraint_attrs({k: excess[k] for k in spec.constraints}))


def _same_settings(trial: FrozenTrial, spec: StudySpec) -> bool:
    """Whether this space, given the trial's sampled values, trains what the trial
    trained: its recorded network and training settings, the ones it did not sample
    (fixed, or defaults) included (the seed and the data's widths aside)."""
    network, training = trial.user_attrs.get(record.NETWORK), trial.user_attrs.get(
        record.TRAINING)
    if not isinstance(network, dict) or not isinstance(training, dict):
        return False
    try:  # a parameter this space searches but the trial did not sample: no fit
        values = sample(spec.space, optuna.trial.FixedTrial(dict(trial.params)))
    except ValueError:
        return False
    sizes = network.get("layer_sizes") or [0, 0]
    net, train = build_configs(values, sizes[0], sizes[-1], "classification", 0)
    kept = ("activation", "init", "dropout")
    return (net["layer_sizes"][1:-1] == sizes[1:-1]
            and all(net[k] == network.get(k) for k in kept)
            and {k: v for k, v in train.items() if k != "seed"}
            == {k: v for k, v in training.items() if k != "seed"})


def collect(url: StorageURL, source: str, spec: StudySpec) -> Prior:
    """Study ``source``'s finished trials that fit ``spec``, or UsageError: no such
    study, other objectives, or none fits."""
    if not source.strip():
        raise UsageError("--from-study needs the name of a study in the same storage.")
    if source == spec.name:
        raise UsageError(f"--from-study {source}: that is this study; name another one.")
    if url.path is not None and not url.path.is_file():  # (opening would create it)
        raise UsageError(f"--from-study: no study {source!r} in {url.redacted}: there is "
                         "no storage there yet.")
    storage = open_storage(url, heartbeat=False)
    try:
        names = with_retry(lambda: [s.study_name for s in storage.get_all_studies()],
                           "list studies")
        if source not in names:
            raise UsageError(f"--from-study: no study {source!r} in {url.redacted}; its "
                             f"studies: {', '.join(sorted(names)) or '(none)'}.")
        other = optuna.load_study(study_name=source, storage=storage)
        objectives = list(other.metric_names or [])
        directions = [d.name.lower() for d in other.directions]
        if (objectives, directions) != (list(spec.objectives), spec.directions):
            raise UsageError(f"--from-study {source}: it optimises "
                             f"{_describe(objectives, directions)}, this study "
                             f"{_describe(list(spec.objectives), spec.directions)}; a prior "
                             "must have the same objectives.")
        _check_validation(source, other.user_attrs, spec)
        finished = with_retry(lambda: other.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)), "read trials")
    finally:
        dispose(storage)
    prior = Prior(source)
    for t in finished:
        if record.is_prior(t):  # its own priors are not its trials
            continue
        fitted = _fit(t, spec, f"{source}#{t.number}")
        if fitted is None:
            prior.left_out += 1
        else:
            prior.trials.append(fitted)
    if not prior.trials:
        raise UsageError(f"--from-study {source}: none of its {len(finished)} finished "
                         "trial(s) fits this study's space"
                         + (" and constraints" if spec.constraints else "") + ".")
    return prior


def _validation(folds: Any) -> str:
    return f"{folds} folds" if folds else "one validation split"


def _check_validation(source: str, attrs: dict[str, Any], spec: StudySpec) -> None:
    """UsageError unless the other study measured its values as this one does: the
    folds' mean beside one split's values would be compared as one."""
    from .study import SPEC_ATTR

    stored = attrs.get(SPEC_ATTR)
    data = stored.get("data") if isinstance(stored, dict) else None
    if not isinstance(data, dict):
        return  # not made by nnsearch: _fit finds no trial of it fits
    if (data.get("folds") or None) != (spec.data.folds or None):
        raise UsageError(f"--from-study {source}: it validated on "
                         f"{_validation(data.get('folds'))}, this study on "
                         f"{_validation(spec.data.folds)}; a prior's values must be measured "
                         "as this study's are (data.folds).")


def _describe(objectives: list[str], directions: list[str]) -> str:
    return ", ".join(f"{d} {m}" for m, d in zip(objectives, directions, strict=False)) \
        or "(nothing nnsearch made)"


def add(study: optuna.Study, prior: Prior) -> int:
    """Copy the prior's trials into ``study``, each once; how many were added now."""
    there = {t.user_attrs.get(record.PRIOR) for t in study.get_trials(deepcopy=False)}
    new = [t for t in prior.trials if t.user_attrs[record.PRIOR] not in there]
    study.add_trials(new)
    return len(new)
