"""The sections of a study file, each read and checked on its own: the registries of
metrics, samplers and pruners, the valid keys, and one reader per section
(``studyfile.parse_study`` puts them together into a ``StudySpec``)."""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
from typing import Any

import optuna

from nnsearch.model import MAX_PARAMS

from .builtin import BUILTIN
from .data import TASKS, DataSpec, check_images
from .errors import UsageError
from .readers import UNLABELLED
from .tabular import NUMERIC

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
# [sampler] reproducible: those whose decisions come from the trials they are shown alone
# (QMC counts trials in the study's attributes, NSGA-II caches its generations there,
# CMA-ES seeds by the trial's number; Hyperband brackets by it, and both halving pruners
# size their rungs from the first trials a worker saw)
REPRODUCIBLE_SAMPLERS = ("tpe", "random", "gp")
REPRODUCIBLE_PRUNERS = ("median", "wilcoxon", "none")
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
CHECKPOINT_EVERY = 10.0  # [artifacts] checkpoint_every: seconds (search/checkpoint.py)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # it names files (NAME-best.json)

SECTIONS: dict[str, tuple[str, ...]] = {
    "study": ("name", "metric", "direction", "seed"),
    "constraints": ("max_params", "max_latency_ms"),
    "sampler": ("name", "reproducible"),  # plus the sampler's own keyword arguments
    "pruner": ("name", "report_every"),  # plus the pruner's own keyword arguments
    "data": ("source", "target", "task", "validation", "test", "seed", "image_shape", "shift",
             "drop", "categorical", "folds", "unlabelled", "clip", "numeric"),
    "budget": ("trials", "timeout", "grace", "target", "stall"),
    "selection": ("recheck", "seeds", "ensemble", "noise_rule"),
    "artifacts": ("curves", "checkpoint_every"),
    "enqueue": (),  # [[enqueue]]: a list of tables, checked by enqueue.to_params
    "space": (),  # checked by space.parse_param
}


def read_budget(budget: dict[str, Any], metric: str, where: str
                ) -> tuple[int | None, float | None, float | None, float | None, int | None]:
    """[budget]: trials, timeout, grace, target (a value ``metric`` can take), stall."""
    trials = read_key(budget, "budget.trials", where, int, None)
    if trials is not None and trials < 1:
        raise UsageError(f"{where}: budget.trials must be >= 1, but got {trials}.")
    timeout = read_key(budget, "budget.timeout", where, (int, float), None)
    if timeout is not None and not 0 < timeout < math.inf:
        raise UsageError(f"{where}: budget.timeout must be a finite number of seconds > 0, "
                         f"but got {timeout}.")
    grace = read_key(budget, "budget.grace", where, (int, float), None)
    if grace is not None and not 0 <= grace < math.inf:
        raise UsageError(f"{where}: budget.grace must be a number of seconds >= 0, but got "
                         f"{grace}.")

    target = read_key(budget, "budget.target", where, (int, float), None)
    if target is not None and not (abs(target) < 1e308 and math.isfinite(target)):
        raise UsageError(f"{where}: budget.target must be a finite value of {metric}, but got "
                         f"{target}.")
    low, high = METRIC_RANGES.get(metric, (-math.inf, math.inf))
    if target is not None and not low <= target <= high:
        span = f"[{low:g}, {high:g}]" if high < math.inf else f">= {low:g}"
        raise UsageError(f"{where}: budget.target must be a value {metric} can take ({span}), "
                         f"but got {target}.")
    stall = read_key(budget, "budget.stall", where, int, None)
    if stall is not None and stall < 1:
        raise UsageError(f"{where}: budget.stall must be a number of finished trials >= 1, "
                         f"but got {stall}.")

    return (trials, float(timeout) if timeout is not None else None,
            float(grace) if grace is not None else None,
            float(target) if target is not None else None, stall)


def read_artifacts(artifacts: dict[str, Any], where: str) -> tuple[str, float]:
    """[artifacts]: curves, checkpoint_every."""
    curves = read_key(artifacts, "artifacts.curves", where, str, "budget")
    if curves not in CURVES:
        raise UsageError(f"{where}: artifacts.curves must be one of "
                         f"{', '.join(repr(c) for c in CURVES)}, but got {curves!r}.")
    every = read_key(artifacts, "artifacts.checkpoint_every", where, (int, float),
                     CHECKPOINT_EVERY)
    if not 0 <= every < math.inf:
        raise UsageError(f"{where}: artifacts.checkpoint_every must be a number of seconds "
                         f">= 0 (0: no checkpoints), but got {every}.")
    return curves, float(every)


def read_selection(selection: dict[str, Any], multi: bool, where: str
                   ) -> tuple[int, int, int, bool]:
    """[selection]: recheck, seeds, ensemble (off by default for several objectives),
    noise_rule (search/noise.py)."""
    recheck = read_key(selection, "selection.recheck", where, int, 0)
    seeds = read_key(selection, "selection.seeds", where, int, 2)
    if not 0 <= recheck <= MAX_RECHECK:
        raise UsageError(f"{where}: selection.recheck must be a number of trials in [0, "
                         f"{MAX_RECHECK}] (0: off), but got {recheck}.")
    if not 1 <= seeds <= MAX_RECHECK:
        raise UsageError(f"{where}: selection.seeds must be in [1, {MAX_RECHECK}], but got "
                         f"{seeds}.")
    ensemble = read_key(selection, "selection.ensemble", where, int, 1 if multi else ENSEMBLE)
    if not 1 <= ensemble <= MAX_ENSEMBLE:
        raise UsageError(f"{where}: selection.ensemble must be a number of trials in [1, "
                         f"{MAX_ENSEMBLE}] (1: the single best), but got {ensemble}.")

    noise_rule = read_key(selection, "selection.noise_rule", where, bool, True)
    return recheck, seeds, ensemble, noise_rule


def read_metrics(study: dict[str, Any], task: str | None, default: str,
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


def read_constraints(table: dict[str, Any], where: str) -> tuple[int | None, float | None]:
    max_params = read_key(table, "constraints.max_params", where, int, None)
    if max_params is not None and not 1 <= max_params <= MAX_PARAMS:
        raise UsageError(f"{where}: constraints.max_params must be a parameter count in "
                         f"[1, {MAX_PARAMS:,}], but got {max_params}.")
    latency = read_key(table, "constraints.max_latency_ms", where, (int, float), None)
    if latency is not None and not 0 < latency < math.inf:
        raise UsageError(f"{where}: constraints.max_latency_ms must be a time in ms > 0, but "
                         f"got {latency}.")
    return max_params, float(latency) if latency is not None else None


def check_multi(raw: dict[str, Any], sampler: str, target: float | None, stall: int | None,
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


def read_seed(table: dict[str, Any], key: str, where: str) -> int:
    value: int = read_key(table, key, where, int, 0)
    if not 0 <= value < 2**32:
        raise UsageError(f"{where}: {key} must be a seed in [0, 2**32 - 1], but got {value}.")
    return value


def read_key(table: dict[str, Any], key: str, where: str, kind: Any, default: Any) -> Any:
    value = table.get(key.split(".")[-1], default)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise UsageError(f"{where}: {key} must be {names}, but got {value!r}.")
    return value


def read_choice(table: dict[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when the key is absent)."""
    value = read_key(table, key, where, str, choices[0])
    if value not in choices:
        raise UsageError(f"{where}: {key} must be one of {', '.join(map(repr, choices))}, "
                         f"but got {value!r}.")
    return value


def read_data(table: dict[str, Any], where: str) -> DataSpec:
    source = read_key(table, "data.source", where, str, "digits")
    if source not in BUILTIN and not source.lower().endswith((".csv", ".npz")):
        raise UsageError(f"{where}: data.source: unknown dataset {source!r}; valid: "
                         f"{', '.join(BUILTIN)}, or a path to a .csv or .npz file.")
    task = read_key(table, "data.task", where, str, None)
    if task is not None and task not in TASKS:
        raise UsageError(f"{where}: data.task: unknown task {task!r}; valid: "
                         f"{', '.join(TASKS)}.")
    if source in BUILTIN and task is not None and task != BUILTIN[source]:
        raise UsageError(f"{where}: data.task: {source} is a {BUILTIN[source]} dataset, "
                         f"but got task={task!r}.")
    folds = read_key(table, "data.folds", where, int, 0)
    if folds and not 2 <= folds <= MAX_FOLDS:
        raise UsageError(f"{where}: data.folds must be in [2, {MAX_FOLDS}] (or 0: one "
                         f"validation split), but got {folds}.")
    if folds and "validation" in table:
        raise UsageError(f"{where}: data.validation does not apply with data.folds (each "
                         "fold validates on its share of what the test split leaves); "
                         "remove one of them.")
    shares = {}
    for key in ("validation", "test"):
        value = read_key(table, f"data.{key}", where, (int, float), 0.2)
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
    target = read_key(table, "data.target", where, str, None)
    if source.lower().endswith(".csv") and not target:
        raise UsageError(f"{where}: data.target is required for a CSV source "
                         "(the target column's header).")
    shape = read_key(table, "data.image_shape", where, list, None)
    if shape is not None and (len(shape) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise UsageError(f"{where}: data.image_shape must be [height, width] (two positive "
                         f"integers), but got {shape!r}.")
    shift = read_key(table, "data.shift", where, int, 0)
    if shift < 0:
        raise UsageError(f"{where}: data.shift must be an integer >= 0 (pixels), "
                         f"but got {shift!r}.")
    spec = DataSpec(source=source, target=target, task=task,
                    validation=shares["validation"], test=shares["test"],
                    seed=read_seed(table, "data.seed", where),
                    image_shape=tuple(shape) if shape else None, shift=shift,
                    drop=read_names(table, "drop", where),
                    categorical=read_names(table, "categorical", where), folds=folds,
                    unlabelled=read_choice(table, "data.unlabelled", where, UNLABELLED),
                    clip=read_key(table, "data.clip", where, bool, False),
                    numeric=read_choice(table, "data.numeric", where, NUMERIC))
    if spec.numeric == "quantile" and spec.shape is not None:
        raise UsageError(f"{where}: data.numeric = \"quantile\" is for a table's columns, "
                         "not an image's pixels (each would store its quantiles, and "
                         "data.shift's copies could not follow them).")
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


def read_names(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = read_key(table, f"data.{key}", where, list, [])
    if not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(value):
        raise UsageError(f"{where}: data.{key} must be a list of distinct column names, but "
                         f"got {value!r}.")
    return tuple(value)


def read_plugin(table: dict[str, Any], section: str, registry: dict[str, Any], default: str,
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
