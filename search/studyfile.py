"""Study definition files (TOML): load, validate, and rebuild from a stored copy.

Every problem is reported as a ``UsageError`` naming the file, the key, the bad
value and the valid values. A validated study is a frozen ``StudySpec``; its
``to_dict`` is stored with the study so that commands addressed by
``--study NAME --storage URL`` work without the file.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from .builtin import BUILTIN
from .data import DataSpec
from .enqueue import to_params
from .errors import UsageError, require_file
from .sections import (
    CHECKPOINT_EVERY,
    COSTS,
    ENSEMBLE,
    GRACE_FRACTION,
    MAX_ENSEMBLE,
    METRIC_RANGES,
    METRICS,
    PRUNERS,
    REPRODUCIBLE_PRUNERS,
    REPRODUCIBLE_SAMPLERS,
    SAFE_NAME,
    SAMPLERS,
    SECTIONS,
    check_multi,
    read_artifacts,
    read_budget,
    read_constraints,
    read_data,
    read_key,
    read_metrics,
    read_plugin,
    read_seed,
    read_selection,
)
from .space import CONDITIONS, DEFAULTS, Param, parse_param

__all__ = [
    "COSTS",
    "ENSEMBLE",
    "MAX_ENSEMBLE",
    "METRICS",
    "METRIC_RANGES",
    "PRUNERS",
    "SAMPLERS",
    "StudySpec",
    "definition_changes",
    "load_study_file",
    "parse_study",
]

@dataclass(frozen=True)
class StudySpec:
    name: str
    metric: str
    direction: str
    seed: int
    sampler: str
    sampler_args: dict[str, Any]
    pruner: str
    pruner_args: dict[str, Any]
    report_every: int  # report the validation metric every N epochs
    data: DataSpec
    trials: int | None
    timeout: float | None
    space: dict[str, Param]
    grace: float | None = None  # seconds a trial may run past the timeout (None: 10% of it)
    enqueue: tuple[dict[str, Any], ...] = ()  # [[enqueue]]: trials to run first, as written
    target: float | None = None  # stop once a completed trial's value reaches this
    stall: int | None = None  # stop after this many finished trials without a new best
    recheck: int = 0  # the top trials retrained with more seeds before the export picks
    recheck_seeds: int = 2  # extra seeds per re-checked trial
    # the most trials the export's ensemble holds (1: the single best; search/ensemble.py)
    ensemble: int = ENSEMBLE
    noise_rule: bool = True  # a starting point stands unless beaten beyond noise (noise.py)
    extra_metrics: tuple[str, ...] = ()  # more objectives after metric: a multi-objective study
    max_params: int | None = None  # [constraints]: a trial beyond one is infeasible
    max_latency_ms: float | None = None
    curves: str = "budget"  # [artifacts] curves: which new bests get a learning-curve PNG
    # [artifacts] checkpoint_every: seconds between a running trial's checkpoints (0: none)
    checkpoint_every: float = CHECKPOINT_EVERY
    # [sampler] reproducible: trial n sees trials 0..n-LAG-1 only (search/reproducible.py)
    reproducible: bool = False
    path: Path | None = field(default=None, compare=False)

    @property
    def objectives(self) -> tuple[str, ...]:
        """What the study optimises, in order: its quality metric first."""
        return (self.metric, *self.extra_metrics)

    @property
    def multi(self) -> bool:
        return bool(self.extra_metrics)

    @property
    def default_ensemble(self) -> int:
        """``[selection] ensemble`` when the file does not say: none with several
        objectives (a front has no single best to beat)."""
        return 1 if self.multi else ENSEMBLE

    @property
    def directions(self) -> list[str]:
        return [METRICS[m][0] if m in METRICS else COSTS[m] for m in self.objectives]

    @property
    def constraints(self) -> dict[str, float]:
        """The [constraints] set: name -> bound."""
        bounds = {"max_params": self.max_params, "max_latency_ms": self.max_latency_ms}
        return {k: v for k, v in bounds.items() if v is not None}

    def needs_latency(self) -> bool:
        return "latency_ms" in self.objectives or self.max_latency_ms is not None

    @property
    def base_dir(self) -> Path | None:
        return self.path.parent if self.path is not None else None

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        args = dict(self.sampler_args)
        if "seed" in inspect.signature(SAMPLERS[self.sampler].__init__).parameters:
            args["seed"] = self.seed if seed is None else seed
        return SAMPLERS[self.sampler](**args)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return PRUNERS[self.pruner](**self.pruner_args)

    def first_prunable_step(self) -> float:
        """The first step at which the pruner may prune (inf: never), read from its
        arguments and their defaults; 0 when the pruner decides at run time."""
        if self.pruner == "none":
            return math.inf
        params = inspect.signature(PRUNERS[self.pruner]).parameters
        for name, first in (("n_warmup_steps", 0), ("min_resource", 1)):
            if name in params:
                value = self.pruner_args.get(name, params[name].default)
                # min_resource counts steps from 1 and may be "auto"; steps count from 0.
                return value - first if isinstance(value, int) else 0
        return 0

    def startup_trials(self) -> int:
        """The completed trials the pruner waits for before it prunes (its
        ``n_startup_trials``; 0 for a pruner without one)."""
        if self.pruner == "none":
            return 0
        param = inspect.signature(PRUNERS[self.pruner]).parameters.get("n_startup_trials")
        if param is None:
            return 0
        value = self.pruner_args.get("n_startup_trials", param.default)
        return value if isinstance(value, int) else 0

    def enqueued_params(self, where: str | None = None) -> list[dict[str, Any]]:
        """The [[enqueue]] trials in Optuna's parameter names, each checked against the
        space (UsageError naming ``where``, the study file by default)."""
        where = where or str(self.path or self.name)
        return [to_params(t, self.space, f"{where}: [[enqueue]] {i + 1}")
                for i, t in enumerate(self.enqueue)]

    def grace_after(self, timeout: float) -> float:
        """Seconds a trial still running at ``timeout`` may go on before it is stopped."""
        return self.grace if self.grace is not None else GRACE_FRACTION * timeout

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": {"name": self.name, "seed": self.seed,
                      "metric": list(self.objectives) if self.multi else self.metric,
                      "direction": self.directions if self.multi else self.direction},
            "sampler": {"name": self.sampler, **self.sampler_args,
                        **({"reproducible": True} if self.reproducible else {})},
            "pruner": {"name": self.pruner, "report_every": self.report_every,
                       **self.pruner_args},
            "data": {k: v for k, v in self.data.to_dict().items() if v is not None},
            "budget": {k: v for k, v in (("trials", self.trials), ("timeout", self.timeout),
                                         ("grace", self.grace), ("target", self.target),
                                         ("stall", self.stall)) if v is not None},
            "space": {name: p.to_toml_value() for name, p in self.space.items()},
            # only when set: definitions stored before it stay the same
            **({"selection": selection} if (selection := {
                **({"recheck": self.recheck, "seeds": self.recheck_seeds}
                   if self.recheck else {}),
                **({"ensemble": self.ensemble} if self.ensemble != self.default_ensemble
                   else {}),
                **({} if self.noise_rule else {"noise_rule": False})}) else {}),
            **({"enqueue": [dict(t) for t in self.enqueue]} if self.enqueue else {}),
            **({"constraints": self.constraints} if self.constraints else {}),
            **({"artifacts": {
                **({"curves": self.curves} if self.curves != "budget" else {}),
                **({"checkpoint_every": self.checkpoint_every}
                   if self.checkpoint_every != CHECKPOINT_EVERY else {})}}
               if self.curves != "budget" or self.checkpoint_every != CHECKPOINT_EVERY
               else {}),
        }


def definition_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two definitions (``StudySpec.to_dict()``), as ``key: old -> new``.

    The budget, the selection and the artifacts are left out: running a study longer,
    re-checking its best trials or drawing their curves does not change what its trials
    are.
    """
    changes = []
    for section in dict.fromkeys([*stored, *current]):
        if section in ("budget", "selection", "artifacts"):
            continue
        if section == "enqueue":  # a list of tables
            old, new = stored.get(section, _UNSET), current.get(section, _UNSET)
            if old != new:
                changes.append(f"{section}: {_show(old)} -> {_show(new)}")
            continue
        old, new = stored.get(section, {}), current.get(section, {})
        for key in dict.fromkeys([*old, *new]):
            if old.get(key, _UNSET) != new.get(key, _UNSET):
                changes.append(f"{section}.{key}: {_show(old.get(key, _UNSET))} -> "
                               f"{_show(new.get(key, _UNSET))}")
    return changes


_UNSET = object()


def _show(value: Any) -> str:
    return "(unset)" if value is _UNSET else json.dumps(value)


def _quote_line(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    """The line a TOML error points at, e.g. the key written twice."""
    match = re.search(r"at line (\d+)", str(exc))
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not match or not 0 < int(match.group(1)) <= len(lines):
        return ""
    return f": {lines[int(match.group(1)) - 1].strip()[:80]!r}"


def load_study_file(path: str | Path) -> StudySpec:
    path = Path(path)
    require_file(path, "study file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: TOML syntax error: {exc}{_quote_line(path, exc)}.") \
            from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text file.") from None
    return parse_study(raw, str(path), path)  # relative data paths: from the study file


def check_conditions(space: dict[str, Param], where: str) -> None:
    """A parameter given in [space] must apply for some value its condition's parameter
    can take (momentum needs an optimizer that can be "momentum")."""
    for name, (parent, values) in CONDITIONS.items():
        if name not in space:
            continue
        given = space.get(parent)
        possible = (given.choices if given is not None and given.choices is not None else
                    (given.fixed,) if given is not None else (DEFAULTS[parent],))
        if not set(possible) & set(values):
            shown = " or ".join(map(repr, possible))
            raise UsageError(f"{where}: space.{name} never applies: it is used when {parent} "
                             f"is {' or '.join(values)}, and {parent} is {shown}; remove "
                             f"space.{name} or let {parent} take one of those.")


def parse_study(raw: dict[str, Any], where: str, path: Path | None = None) -> StudySpec:
    for section in raw:
        if section not in SECTIONS:
            raise UsageError(f"{where}: unknown section [{section}]; valid sections: "
                             f"{', '.join(SECTIONS)}.")
        if section == "enqueue":
            if not isinstance(raw[section], list):
                raise UsageError(f"{where}: enqueue must be a list of tables ([[enqueue]]), "
                                 f"but got {raw[section]!r}.")
            continue
        if not isinstance(raw[section], dict):
            raise UsageError(f"{where}: {section} must be a table ([{section}]), "
                             f"but got {raw[section]!r}.")
    for section, keys in SECTIONS.items():
        if section in ("sampler", "pruner", "space", "enqueue"):
            continue
        for key in raw.get(section, {}):
            if key not in keys:
                raise UsageError(f"{where}: unknown key {section}.{key!r}; valid keys: "
                                 f"{', '.join(keys)}.")

    study = raw.get("study", {})
    name = read_key(study, "study.name", where, str, None)
    if not name:
        raise UsageError(f"{where}: study.name is required (a non-empty string).")
    if not SAFE_NAME.fullmatch(name):
        raise UsageError(f"{where}: study.name must be letters, digits, '.', '_' or '-' (it "
                         f"names files such as NAME-best.json), but got {name!r}.")
    data = read_data(raw.get("data", {}), where)
    task = data.task or (BUILTIN.get(data.source, None))
    default_metric = "val_rmse" if task == "regression" else "val_accuracy"
    objectives = read_metrics(study, task, default_metric, where)
    metric, multi = objectives[0], len(objectives) > 1
    inferred = [METRICS[m][0] if m in METRICS else COSTS[m] for m in objectives]
    direction = study.get("direction", inferred if multi else inferred[0])
    if direction != (inferred if multi else inferred[0]):
        expected = " and ".join(f"{m} is to {d}" for m, d in zip(objectives, inferred, strict=True))
        raise UsageError(f"{where}: study.direction: {expected}, but got "
                         f"direction={direction!r} (leave it out: it follows the metric).")
    seed = read_seed(study, "study.seed", where)

    sampler_raw = dict(raw.get("sampler", {}))
    reproducible = read_key(sampler_raw, "sampler.reproducible", where, bool, False)
    sampler_raw.pop("reproducible", None)
    sampler, sampler_args = read_plugin(sampler_raw, "sampler", SAMPLERS, "tpe",
                                          where, reserved=("seed",))
    pruner_raw = dict(raw.get("pruner", {}))
    report_every = read_key(pruner_raw, "pruner.report_every", where, int, 1)
    pruner_raw.pop("report_every", None)
    if report_every < 1:
        raise UsageError(f"{where}: pruner.report_every must be >= 1, but got {report_every}.")
    pruner, pruner_args = read_plugin(pruner_raw, "pruner", PRUNERS, "median", where)

    if pruner == "wilcoxon" and not data.folds:
        raise UsageError(f"{where}: pruner wilcoxon compares trials fold by fold and needs "
                         "data.folds (k-fold cross-validation); or use median, hyperband or "
                         "successive_halving.")
    if pruner == "wilcoxon":
        # k-1 folds are judged; a signed-rank test on n pairs has p >= 2**-n
        threshold = pruner_args.get("p_threshold", 0.1)
        if 0.5 ** (data.folds - 1) >= threshold:
            raise UsageError(f"{where}: pruner wilcoxon can never prune with data.folds = "
                             f"{data.folds}: its smallest p-value, {0.5 ** (data.folds - 1):g}, "
                             f"is not below p_threshold = {threshold}; use more folds or "
                             "pruner median.")

    trials, timeout, grace, target, stall = read_budget(raw.get("budget", {}), metric, where)
    if reproducible and (sampler not in REPRODUCIBLE_SAMPLERS
                         or pruner not in REPRODUCIBLE_PRUNERS):
        which = f"sampler {sampler}" if sampler not in REPRODUCIBLE_SAMPLERS \
            else f"pruner {pruner}"
        raise UsageError(f"{where}: sampler.reproducible cannot go with {which}, which keeps "
                         f"state of its own across trials; use sampler "
                         f"{' | '.join(REPRODUCIBLE_SAMPLERS)} and pruner "
                         f"{' | '.join(REPRODUCIBLE_PRUNERS)}.")
    if reproducible and (timeout is not None or target is not None or stall is not None):
        key = "timeout" if timeout is not None else "target" if target is not None else "stall"
        raise UsageError(f"{where}: sampler.reproducible cannot go with budget.{key}: which "
                         "trials exist would depend on the clock; give a trial budget "
                         "(budget.trials) and nothing else.")
    recheck, seeds, ensemble, noise_rule = read_selection(raw.get("selection", {}), multi, where)

    curves, checkpoint_every = read_artifacts(raw.get("artifacts", {}), where)

    space = {key: parse_param(key, value, where) for key, value in raw.get("space", {}).items()}
    check_conditions(space, where)
    enqueue = tuple(raw.get("enqueue", ()))
    max_params, max_latency = read_constraints(raw.get("constraints", {}), where)
    if multi:
        check_multi(raw, sampler, target, stall, recheck, ensemble, where)
        pruner, pruner_args = "none", {}  # Optuna prunes one objective only
    spec = StudySpec(name=name, metric=metric, direction=inferred[0], seed=seed, sampler=sampler,
                     sampler_args=sampler_args, pruner=pruner, pruner_args=pruner_args,
                     report_every=report_every, data=data, trials=trials,
                     timeout=timeout, space=space, grace=grace, enqueue=enqueue,
                     target=target, stall=stall,
                     recheck=recheck, recheck_seeds=seeds, ensemble=ensemble,
                     noise_rule=noise_rule,
                     extra_metrics=tuple(objectives[1:]),
                     max_params=max_params, max_latency_ms=max_latency, curves=curves,
                     checkpoint_every=checkpoint_every, reproducible=reproducible,
                     path=path.resolve() if path is not None else None)
    spec.enqueued_params(where)  # each [[enqueue]] table is checked now, not at create
    return spec


