"""The search space: what each hyperparameter may be, and how a trial samples it.

``PARAMS`` is the one registry of tunable names. Each entry says whether the
value is an int, a float or a name, its valid domain, and (for names) the
registry in ``model`` that lists the valid choices. The study-file validator,
the sampler and the export all read it, so a new choice is added in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from nnsearch.model import ACTIVATIONS, CLIP_TYPES, INITIALIZERS, OPTIMIZERS, SCHEDULES, TrainConfig

from .errors import UsageError


@dataclass(frozen=True)
class ParamInfo:
    kind: str  # "int", "float", "name" or "bool"
    low: float | None = None  # smallest valid value (numbers)
    high: float | None = None  # largest valid value (numbers)
    low_open: bool = False  # the low end itself is invalid (e.g. learning_rate > 0)
    high_open: bool = False
    choices: tuple[Any, ...] = ()  # valid names ("name" kind)
    extra: tuple[Any, ...] = ()  # non-numeric values a number may also take ("full")

    def describe(self) -> str:
        if self.kind == "name":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "bool":
            return "true or false"
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        high = "inf" if self.high is None else self.high
        text = f"{'an integer' if self.kind == 'int' else 'a number'} in {lo}{self.low}, {high}{hi}"
        return text + "".join(f" or {e!r}" for e in self.extra)

    def valid(self, value: Any) -> bool:
        if self.kind == "name":
            return isinstance(value, str) and value in self.choices
        if self.kind == "bool":
            return isinstance(value, bool)
        if value in self.extra and isinstance(value, str):
            return True
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open
                                                           and value == self.high))


PARAMS: dict[str, ParamInfo] = {
    # the network
    "n_layers": ParamInfo("int", 1, 64),  # hidden layers
    "width": ParamInfo("int", 1, 65536),  # units per hidden layer, sampled per layer
    "activation": ParamInfo("name", choices=tuple(sorted(ACTIVATIONS))),
    "init": ParamInfo("name", choices=tuple(sorted(INITIALIZERS))),
    "dropout": ParamInfo("float", 0.0, 1.0, high_open=True),
    # the training
    "learning_rate": ParamInfo("float", 0.0, None, low_open=True),
    "schedule": ParamInfo("name", choices=tuple(sorted(SCHEDULES))),
    "optimizer": ParamInfo("name", choices=tuple(sorted(OPTIMIZERS))),
    "batch_size": ParamInfo("int", 1, None, extra=("full",)),
    "l2": ParamInfo("float", 0.0, None),
    "clip_type": ParamInfo("name", choices=CLIP_TYPES),
    "clip_value": ParamInfo("float", 0.0, None, low_open=True),
    "epochs": ParamInfo("int", 1, None),
    "patience": ParamInfo("int", 1, None, extra=("none",)),
    "min_delta": ParamInfo("float", 0.0, None),
    "momentum": ParamInfo("float", 0.0, 1.0, high_open=True),
    "nesterov": ParamInfo("bool"),
    "beta1": ParamInfo("float", 0.0, 1.0, high_open=True),
    "beta2": ParamInfo("float", 0.0, 1.0, high_open=True),
    "lr_decay": ParamInfo("float", 0.0, None, low_open=True),
    "lr_step": ParamInfo("int", 1, None),
    "min_lr": ParamInfo("float", 0.0, None),
}
NETWORK_PARAMS = ("activation", "init", "dropout")
TRAIN_PARAMS = tuple(p for p in PARAMS if p not in ("n_layers", "width", *NETWORK_PARAMS))

# What a trial uses when the study file leaves a parameter out.
DEFAULTS: dict[str, Any] = {
    "n_layers": 1,
    "width": 128,
    "activation": "relu",
    "init": "he_normal",
    "dropout": 0.0,
    **{k: v for k, v in TrainConfig().to_dict().items() if k in PARAMS},
}


@dataclass(frozen=True)
class Param:
    """One hyperparameter of a study: a fixed value, a list of choices, or a range."""

    name: str
    fixed: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def kind(self) -> str:
        if self.choices is not None:
            return "choice"
        return "range" if self.low is not None else "fixed"

    def sample(self, trial: optuna.Trial, label: str | None = None) -> Any:
        label = label or self.name
        if self.choices is not None:
            return trial.suggest_categorical(label, list(self.choices))
        if self.low is None:
            return self.fixed
        assert self.high is not None
        if PARAMS[self.name].kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(label, int(self.low), int(self.high), step=step,
                                     log=self.log)
        return trial.suggest_float(label, self.low, self.high, step=self.step, log=self.log)

    def to_toml_value(self) -> Any:
        if self.choices is not None:
            return list(self.choices)
        if self.low is not None:
            out: dict[str, Any] = {"low": self.low, "high": self.high}
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
            return out
        return self.fixed


def parse_param(name: str, raw: Any, where: str) -> Param:
    """Turn a study file's value into a Param, or raise UsageError naming the problem."""
    info = PARAMS.get(name)
    key = f"{where}: space.{name}"
    if info is None:
        raise UsageError(f"{where}: unknown key space.{name!r}; valid keys: "
                         f"{', '.join(PARAMS)}.")
    if isinstance(raw, list):
        if not raw:
            raise UsageError(f"{key}: an empty list of choices.")
        for value in raw:
            if not info.valid(value):
                raise UsageError(f"{key}: invalid choice {value!r}; valid: {info.describe()}.")
        if len(set(map(repr, raw))) != len(raw):
            raise UsageError(f"{key}: the choices {raw!r} repeat a value.")
        return Param(name, choices=tuple(raw))
    if isinstance(raw, dict):
        allowed = {"low", "high", "log", "step"}
        unknown = set(raw) - allowed
        if unknown:
            raise UsageError(f"{key}: unknown range key {sorted(unknown)[0]!r}; valid keys: "
                             "low, high, log, step.")
        if info.kind not in ("int", "float"):
            raise UsageError(f"{key}: a range needs a numeric parameter; give a list of "
                             f"choices instead ({info.describe()}).")
        if "low" not in raw or "high" not in raw:
            raise UsageError(f"{key}: a range needs both low and high, but got {raw!r}.")
        low, high, log, step = raw["low"], raw["high"], raw.get("log", False), raw.get("step")
        for label, value in (("low", low), ("high", high)):
            if isinstance(value, str) or not info.valid(value):
                raise UsageError(f"{key}.{label}: invalid value {value!r}; valid: "
                                 f"{info.describe()}.")
        if not low < high:
            raise UsageError(f"{key}: the range is reversed or empty (low={low!r}, "
                             f"high={high!r}); low must be below high.")
        if not isinstance(log, bool):
            raise UsageError(f"{key}.log: must be true or false, but got {log!r}.")
        if log and low <= 0:
            raise UsageError(f"{key}: a log range needs low > 0, but got low={low!r}.")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int | float)
                                 or step <= 0 or log):
            raise UsageError(f"{key}.step: must be a positive number without log, "
                             f"but got step={step!r}.")
        return Param(name, low=low, high=high, log=log, step=step)
    if not info.valid(raw):
        raise UsageError(f"{key}: invalid value {raw!r}; valid: {info.describe()}.")
    return Param(name, fixed=raw)


def sample(space: dict[str, Param], trial: optuna.Trial) -> dict[str, Any]:
    """Every hyperparameter's value for this trial, fixed ones included.

    Widths are sampled per hidden layer, conditionally on the depth (as the
    article does), under the names ``width_l0``, ``width_l1``, ...; the clip
    threshold is only sampled when clipping is on.
    """
    def value(name: str, label: str | None = None) -> Any:
        param = space.get(name)
        return param.sample(trial, label) if param is not None else DEFAULTS[name]

    values: dict[str, Any] = {"n_layers": value("n_layers")}
    values["widths"] = [value("width", f"width_l{i}") for i in range(values["n_layers"])]
    for name in PARAMS:
        if name in ("n_layers", "width", "clip_value"):
            continue
        values[name] = value(name)
    values["clip_value"] = value("clip_value") if values["clip_type"] != "none" \
        else DEFAULTS["clip_value"]
    return values


def build_configs(values: dict[str, Any], n_inputs: int, n_outputs: int, task: str,
                  seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Constructor arguments for ``Network`` and ``TrainConfig`` from sampled values."""
    network = {
        "layer_sizes": [n_inputs, *values["widths"], n_outputs],
        "activation": values["activation"],
        "output": "softmax" if task == "classification" else "identity",
        "init": values["init"],
        "dropout": float(values["dropout"]),
        "seed": seed,
        "dtype": "float32",
    }
    training = {name: values[name] for name in TRAIN_PARAMS}
    training["patience"] = None if training["patience"] == "none" else training["patience"]
    training["seed"] = seed
    training["log_every"] = 0
    return network, training
