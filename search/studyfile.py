"""Study definition files (TOML): load, validate, and rebuild from a stored copy.

Every problem is reported as a ``UsageError`` naming the file, the key, the bad
value and the valid values. A validated study is a frozen ``StudySpec``; its
``to_dict`` is stored with the study so that commands addressed by
``--study NAME --storage URL`` work without the file.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from nnsearch.model import MAX_PARAMS

from .data import TASKS, DataSpec, check_images
from .enqueue import to_params
from .errors import UsageError, require_file
from .readers import BUILTIN, UNLABELLED
from .space import CONDITIONS, DEFAULTS, Param, parse_param

# metric -> (direction, tasks it applies to)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "val_accuracy": ("maximize", ("classification",)),
    "val_loss": ("minimize", ("classification", "regression")),
    "val_rmse": ("minimize", ("regression",)),
}
# The values each metric can take (what a budget.target must lie in).
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "val_accuracy": (0.0, 1.0), "val_loss": (0.0, math.inf), "val_rmse": (0.0, math.inf)}
# Costs a multi-objective study may trade against its quality metric (both minimised):
# the network's parameter count, and its median single-row predict time after training.
COSTS: dict[str, str] = {"n_params": "minimize", "latency_ms": "minimize"}
# Samplers that can search several objectives at once (CMA-ES searches one).
MULTI_SAMPLERS = ("tpe", "nsgaii", "random", "qmc", "gp")

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsgaii": optuna.samplers.NSGAIISampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,  # fold by fold: needs data.folds
    "none": optuna.pruners.NopPruner,
}
# Settings a study file may give each sampler/pruner: the plain types its annotations name.
_PLAIN: dict[str, type | tuple[type, ...]] = {"bool": bool, "int": int, "float": (int, float),
                                             "str": str}


def _plain_kinds(annotation: Any) -> list[str]:
    """The plain types an argument's annotation allows (``"int | None"`` gives int)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__",
                                                                  str(annotation))
    return [kind for part in text.split("|") if (kind := part.strip()) in _PLAIN]


def _is(value: Any, kind: str) -> bool:
    return isinstance(value, _PLAIN[kind]) and (kind == "bool") == isinstance(value, bool)

MAX_FOLDS = 20
GRACE_FRACTION = 0.1  # budget.grace's default, as a fraction of the timeout
MAX_RECHECK = 20  # trials re-checked, and extra seeds each
ENSEMBLE = 8  # [selection] ensemble: at most this many trials in the export's ensemble
MAX_ENSEMBLE = 25
# [artifacts] curves: which new bests get their learning-curve PNG (see objective.py)
CURVES = ("budget", "every best", "none")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # it names files (NAME-best.json)

SECTIONS: dict[str, tuple[str, ...]] = {
    "study": ("name", "metric", "direction", "seed"),
    "constraints": ("max_params", "max_latency_ms"),
    "sampler": ("name",),  # plus the sampler's own keyword arguments
    "pruner": ("name", "report_every"),  # plus the pruner's own keyword arguments
    "data": ("source", "target", "task", "validation", "test", "seed", "image_shape", "shift",
             "drop", "categorical", "folds", "unlabelled", "clip"),
    "budget": ("trials", "timeout", "grace", "target", "stall"),
    "selection": ("recheck", "seeds", "ensemble"),
    "artifacts": ("curves",),
    "enqueue": (),  # [[enqueue]]: a list of tables, checked by enqueue.to_params
    "space": (),  # checked by space.parse_param
}


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
    extra_metrics: tuple[str, ...] = ()  # more objectives after metric: a multi-objective study
    max_params: int | None = None  # [constraints]: a trial beyond one is infeasible
    max_latency_ms: float | None = None
    curves: str = "budget"  # [artifacts] curves: which new bests get a learning-curve PNG
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
        pruner = PRUNERS[self.pruner](**self.pruner_args)
        if self.data.folds and self.pruner == "median":
            from .pruning import FoldSteps

            return FoldSteps(pruner, self.max_epochs())  # judge folds on the folds' mean
        return pruner

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

    def max_epochs(self) -> int:
        """The most epochs any trial can train: with folds, the steps after it are folds."""
        p = self.space.get("epochs")
        return int(p.extent()[1]) if p is not None else int(DEFAULTS["epochs"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": {"name": self.name, "seed": self.seed,
                      "metric": list(self.objectives) if self.multi else self.metric,
                      "direction": self.directions if self.multi else self.direction},
            "sampler": {"name": self.sampler, **self.sampler_args},
            "pruner": {"name": self.pruner, "report_every": self.report_every,
                       **self.pruner_args},
            "data": {k: v for k, v in self.data.to_dict().items() if v is not None},
            "budget": {k: v for k, v in (("trials", self.trials), ("timeout", self.timeout),
                                         ("grace", self.grace), ("target", self.target),
                                         ("stall", self.stall)) if v is not None},
            "space": {name: p.to_toml_value() for name, p in self.space.items()},
            # only when set: definitions stored before it stay the same
            **({"selection": {**({"recheck": self.recheck, "seeds": self.recheck_seeds}
                                 if self.recheck else {}),
                              **({"ensemble": self.ensemble}
                                 if self.ensemble != self.default_ensemble else {})}}
               if self.recheck or self.ensemble != self.default_ensemble else {}),
            **({"enqueue": [dict(t) for t in self.enqueue]} if self.enqueue else {}),
            **({"constraints": self.constraints} if self.constraints else {}),
            **({"artifacts": {"curves": self.curves}} if self.curves != "budget" else {}),
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
    name = _get(study, "study.name", where, str, None)
    if not name:
        raise UsageError(f"{where}: study.name is required (a non-empty string).")
    if not SAFE_NAME.fullmatch(name):
        raise UsageError(f"{where}: study.name must be letters, digits, '.', '_' or '-' (it "
                         f"names files such as NAME-best.json), but got {name!r}.")
    data = _parse_data(raw.get("data", {}), where)
    task = data.task or (BUILTIN.get(data.source, None))
    default_metric = "val_rmse" if task == "regression" else "val_accuracy"
    objectives = _parse_metrics(study, task, default_metric, where)
    metric, multi = objectives[0], len(objectives) > 1
    inferred = [METRICS[m][0] if m in METRICS else COSTS[m] for m in objectives]
    direction = study.get("direction", inferred if multi else inferred[0])
    if direction != (inferred if multi else inferred[0]):
        expected = " and ".join(f"{m} is to {d}" for m, d in zip(objectives, inferred, strict=True))
        raise UsageError(f"{where}: study.direction: {expected}, but got "
                         f"direction={direction!r} (leave it out: it follows the metric).")
    seed = _seed(study, "study.seed", where)

    sampler, sampler_args = _parse_plugin(raw.get("sampler", {}), "sampler", SAMPLERS, "tpe",
                                          where, reserved=("seed",))
    pruner_raw = dict(raw.get("pruner", {}))
    report_every = _get(pruner_raw, "pruner.report_every", where, int, 1)
    pruner_raw.pop("report_every", None)
    if report_every < 1:
        raise UsageError(f"{where}: pruner.report_every must be >= 1, but got {report_every}.")
    pruner, pruner_args = _parse_plugin(pruner_raw, "pruner", PRUNERS, "median", where)

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

    budget = raw.get("budget", {})
    trials = _get(budget, "budget.trials", where, int, None)
    if trials is not None and trials < 1:
        raise UsageError(f"{where}: budget.trials must be >= 1, but got {trials}.")
    timeout = _get(budget, "budget.timeout", where, (int, float), None)
    if timeout is not None and not 0 < timeout < math.inf:
        raise UsageError(f"{where}: budget.timeout must be a finite number of seconds > 0, "
                         f"but got {timeout}.")
    grace = _get(budget, "budget.grace", where, (int, float), None)
    if grace is not None and not 0 <= grace < math.inf:
        raise UsageError(f"{where}: budget.grace must be a number of seconds >= 0, but got "
                         f"{grace}.")

    target = _get(budget, "budget.target", where, (int, float), None)
    if target is not None and not (abs(target) < 1e308 and math.isfinite(target)):
        raise UsageError(f"{where}: budget.target must be a finite value of {metric}, but got "
                         f"{target}.")
    low, high = METRIC_RANGES.get(metric, (-math.inf, math.inf))
    if target is not None and not low <= target <= high:
        span = f"[{low:g}, {high:g}]" if high < math.inf else f">= {low:g}"
        raise UsageError(f"{where}: budget.target must be a value {metric} can take ({span}), "
                         f"but got {target}.")
    stall = _get(budget, "budget.stall", where, int, None)
    if stall is not None and stall < 1:
        raise UsageError(f"{where}: budget.stall must be a number of finished trials >= 1, "
                         f"but got {stall}.")

    selection = raw.get("selection", {})
    recheck = _get(selection, "selection.recheck", where, int, 0)
    seeds = _get(selection, "selection.seeds", where, int, 2)
    if not 0 <= recheck <= MAX_RECHECK:
        raise UsageError(f"{where}: selection.recheck must be a number of trials in [0, "
                         f"{MAX_RECHECK}] (0: off), but got {recheck}.")
    if not 1 <= seeds <= MAX_RECHECK:
        raise UsageError(f"{where}: selection.seeds must be in [1, {MAX_RECHECK}], but got "
                         f"{seeds}.")
    ensemble = _get(selection, "selection.ensemble", where, int, 1 if multi else ENSEMBLE)
    if not 1 <= ensemble <= MAX_ENSEMBLE:
        raise UsageError(f"{where}: selection.ensemble must be a number of trials in [1, "
                         f"{MAX_ENSEMBLE}] (1: the single best), but got {ensemble}.")

    curves = _get(raw.get("artifacts", {}), "artifacts.curves", where, str, "budget")
    if curves not in CURVES:
        raise UsageError(f"{where}: artifacts.curves must be one of "
                         f"{', '.join(repr(c) for c in CURVES)}, but got {curves!r}.")

    space = {key: parse_param(key, value, where) for key, value in raw.get("space", {}).items()}
    check_conditions(space, where)
    enqueue = tuple(raw.get("enqueue", ()))
    max_params, max_latency = _parse_constraints(raw.get("constraints", {}), where)
    if multi:
        _check_multi(raw, sampler, target, stall, recheck, ensemble, where)
        pruner, pruner_args = "none", {}  # Optuna prunes one objective only
    spec = StudySpec(name=name, metric=metric, direction=inferred[0], seed=seed, sampler=sampler,
                     sampler_args=sampler_args, pruner=pruner, pruner_args=pruner_args,
                     report_every=report_every, data=data, trials=trials,
                     timeout=float(timeout) if timeout is not None else None, space=space,
                     grace=float(grace) if grace is not None else None, enqueue=enqueue,
                     target=float(target) if target is not None else None, stall=stall,
                     recheck=recheck, recheck_seeds=seeds, ensemble=ensemble,
                     extra_metrics=tuple(objectives[1:]),
                     max_params=max_params, max_latency_ms=max_latency, curves=curves,
                     path=path.resolve() if path is not None else None)
    spec.enqueued_params(where)  # each [[enqueue]] table is checked now, not at create
    return spec


def _parse_metrics(study: dict[str, Any], task: str | None, default: str,
                   where: str) -> list[str]:
    """study.metric: one quality metric, or a list: a quality metric, then costs to trade
    against it (n_params, latency_ms), each once."""
    given = study.get("metric", default)
    names = given if isinstance(given, list) else [given]
    valid = ", ".join(METRICS)
    if not names or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{where}: study.metric must be a metric name or a list of them, "
                         f"but got {given!r}.")
    if len(set(names)) != len(names):
        raise UsageError(f"{where}: study.metric names a metric twice: {given!r}.")
    for i, name in enumerate(names):
        if name in COSTS and i == 0:
            raise UsageError(f"{where}: study.metric: {name} is a cost to trade against a "
                             f"quality metric; put one first ({valid}), e.g. "
                             f"[\"{default}\", \"{name}\"].")
        if i > 0 and name not in COSTS:
            raise UsageError(f"{where}: study.metric: after the first metric come costs "
                             f"({', '.join(COSTS)}), but got {name!r}.")
        if name not in METRICS and name not in COSTS:
            raise UsageError(f"{where}: study.metric: unknown metric {name!r}; valid: "
                             f"{valid}; or a list such as [\"{default}\", \"n_params\"].")
        tasks = METRICS.get(name, (None, None))[1]
        if task is not None and tasks is not None and task not in tasks:
            fits = ", ".join(m for m, (_, t) in METRICS.items() if task in t)
            raise UsageError(f"{where}: study.metric: {name!r} does not apply to a {task} "
                             f"task; valid: {fits}.")
    return names


def _parse_constraints(table: dict[str, Any], where: str) -> tuple[int | None, float | None]:
    max_params = _get(table, "constraints.max_params", where, int, None)
    if max_params is not None and not 1 <= max_params <= MAX_PARAMS:
        raise UsageError(f"{where}: constraints.max_params must be a parameter count in "
                         f"[1, {MAX_PARAMS:,}], but got {max_params}.")
    latency = _get(table, "constraints.max_latency_ms", where, (int, float), None)
    if latency is not None and not 0 < latency < math.inf:
        raise UsageError(f"{where}: constraints.max_latency_ms must be a time in ms > 0, but "
                         f"got {latency}.")
    return max_params, float(latency) if latency is not None else None


def _check_multi(raw: dict[str, Any], sampler: str, target: float | None, stall: int | None,
                 recheck: int, ensemble: int, where: str) -> None:
    """What a multi-objective study cannot have, each with its way out."""
    if sampler not in MULTI_SAMPLERS:
        raise UsageError(f"{where}: sampler.name: {sampler} searches one objective; with "
                         f"several use {', '.join(MULTI_SAMPLERS)}.")
    pruner = raw.get("pruner", {})
    if pruner and pruner.get("name", "median") != "none":
        raise UsageError(f"{where}: [pruner]: Optuna cannot prune a multi-objective study "
                         "(a trial reports one value per epoch); remove [pruner] (early "
                         "stopping by patience still ends a trial that stops improving).")
    for key, value in (("budget.target", target), ("budget.stall", stall),
                       ("selection.recheck", recheck or None),
                       ("selection.ensemble", ensemble if ensemble > 1 else None)):
        if value is not None:
            raise UsageError(f"{where}: {key} applies to a single-objective study (a "
                             "multi-objective one has a front, not a best value); remove it.")


def _seed(table: dict[str, Any], key: str, where: str) -> int:
    value: int = _get(table, key, where, int, 0)
    if not 0 <= value < 2**32:
        raise UsageError(f"{where}: {key} must be a seed in [0, 2**32 - 1], but got {value}.")
    return value


def _get(table: dict[str, Any], key: str, where: str, kind: Any, default: Any) -> Any:
    value = table.get(key.split(".")[-1], default)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise UsageError(f"{where}: {key} must be {names}, but got {value!r}.")
    return value


def _choice(table: dict[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when the key is absent)."""
    value = _get(table, key, where, str, choices[0])
    if value not in choices:
        raise UsageError(f"{where}: {key} must be one of {', '.join(map(repr, choices))}, "
                         f"but got {value!r}.")
    return value


def _parse_data(table: dict[str, Any], where: str) -> DataSpec:
    source = _get(table, "data.source", where, str, "digits")
    if source not in BUILTIN and not source.lower().endswith((".csv", ".npz")):
        raise UsageError(f"{where}: data.source: unknown dataset {source!r}; valid: "
                         f"{', '.join(BUILTIN)}, or a path to a .csv or .npz file.")
    task = _get(table, "data.task", where, str, None)
    if task is not None and task not in TASKS:
        raise UsageError(f"{where}: data.task: unknown task {task!r}; valid: "
                         f"{', '.join(TASKS)}.")
    if source in BUILTIN and task is not None and task != BUILTIN[source]:
        raise UsageError(f"{where}: data.task: {source} is a {BUILTIN[source]} dataset, "
                         f"but got task={task!r}.")
    folds = _get(table, "data.folds", where, int, 0)
    if folds and not 2 <= folds <= MAX_FOLDS:
        raise UsageError(f"{where}: data.folds must be in [2, {MAX_FOLDS}] (or 0: one "
                         f"validation split), but got {folds}.")
    if folds and "validation" in table:
        raise UsageError(f"{where}: data.validation does not apply with data.folds (each "
                         "fold validates on its share of what the test split leaves); "
                         "remove one of them.")
    shares = {}
    for key in ("validation", "test"):
        value = _get(table, f"data.{key}", where, (int, float), 0.2)
        if not 0 < value < 1:
            raise UsageError(f"{where}: data.{key} must be a share in (0, 1), "
                             f"but got {value!r}.")
        shares[key] = float(value)
    if not folds and shares["validation"] + shares["test"] >= 0.9:
        raise UsageError(f"{where}: data.validation + data.test must leave at least 10% "
                         f"for training, but they add up to "
                         f"{shares['validation'] + shares['test']:.2f}.")
    if folds and shares["test"] >= 0.9:
        raise UsageError(f"{where}: data.test must leave at least 10% for the folds, but "
                         f"it is {shares['test']}.")
    target = _get(table, "data.target", where, str, None)
    if source.lower().endswith(".csv") and not target:
        raise UsageError(f"{where}: data.target is required for a CSV source "
                         "(the target column's header).")
    shape = _get(table, "data.image_shape", where, list, None)
    if shape is not None and (len(shape) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise UsageError(f"{where}: data.image_shape must be [height, width] (two positive "
                         f"integers), but got {shape!r}.")
    shift = _get(table, "data.shift", where, int, 0)
    if shift < 0:
        raise UsageError(f"{where}: data.shift must be an integer >= 0 (pixels), "
                         f"but got {shift!r}.")
    spec = DataSpec(source=source, target=target, task=task,
                    validation=shares["validation"], test=shares["test"],
                    seed=_seed(table, "data.seed", where),
                    image_shape=tuple(shape) if shape else None, shift=shift,
                    drop=_names(table, "drop", where),
                    categorical=_names(table, "categorical", where), folds=folds,
                    unlabelled=_choice(table, "data.unlabelled", where, UNLABELLED),
                    clip=_get(table, "data.clip", where, bool, False))
    if (spec.drop or spec.categorical or "unlabelled" in table) \
            and not source.lower().endswith(".csv"):
        raise UsageError(f"{where}: data.drop, data.categorical and data.unlabelled are about "
                         f"a CSV source's columns and rows, but the source is {source!r}.")
    both = sorted(set(spec.drop) & set(spec.categorical))
    if both:
        raise UsageError(f"{where}: column(s) {both} are in both data.drop and "
                         "data.categorical.")
    check_images(spec, where)
    return spec


def _names(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = _get(table, f"data.{key}", where, list, [])
    if not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(value):
        raise UsageError(f"{where}: data.{key} must be a list of distinct column names, but "
                         f"got {value!r}.")
    return tuple(value)


def _parse_plugin(table: dict[str, Any], section: str, registry: dict[str, Any], default: str,
                  where: str, reserved: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
    args = dict(table)
    name = args.pop("name", default)
    if name not in registry:
        raise UsageError(f"{where}: {section}.name: unknown {section} {name!r}; valid: "
                         f"{', '.join(registry)}.")
    accepted = {p: kinds for p, v in inspect.signature(registry[name].__init__).parameters.items()
                if p != "self" and v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)
                and p not in reserved and (kinds := _plain_kinds(v.annotation))}
    for key, value in args.items():
        if key not in accepted:
            hint = " (the sampler's seed comes from study.seed)" if key in reserved else ""
            raise UsageError(f"{where}: unknown key {section}.{key!r} for {section} {name!r}"
                             f"{hint}; valid keys: {', '.join(['name', *accepted])}.")
        kinds = accepted[key]
        if not any(_is(value, kind) for kind in kinds):
            raise UsageError(f"{where}: {section}.{key} must be {' or '.join(kinds)}, but got "
                             f"{value!r}.")
        if key == "reduction_factor" and value < 2:
            raise UsageError(f"{where}: {section}.reduction_factor must be >= 2, but got "
                             f"{value!r}.")
    if name == "gp" and importlib.util.find_spec("torch") is None:
        raise UsageError(f"{where}: sampler gp needs PyTorch (pip install torch); or use "
                         "tpe, nsgaii, random or qmc (or cmaes, for one objective).")
    try:  # let the class check the values themselves (e.g. a negative warm-up)
        if name != "gp":
            registry[name](**args)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: [{section}] {name}: {exc}") from None
    return name, args
