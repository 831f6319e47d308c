"""The search space: what each hyperparameter may be, and how a trial samples it.

``PARAMS`` is the one registry of tunable names. Each entry is a ``Domain``
(int, float, name or bool, with its valid values) taken from the model, which
declares it once: the network's arguments, one layer's width and TrainConfig's
fields. Only ``n_layers`` is the search's own. The study-file validator, the
sampler and the export all read it, so a new choice is added in one place.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, replace
from typing import Any

import optuna

from nnsearch.model import (
    LAYER_WIDTH,
    NETWORK_DOMAINS,
    TRAIN_CONDITIONS,
    TRAIN_DOMAINS,
    Domain,
    Network,
    TrainConfig,
)

from .errors import UsageError


def _as_in_toml(domain: Domain) -> Domain:
    """The domain as a study file spells it: TOML has no null, so None is "none"."""
    return replace(domain, optional=False, extra=(*domain.extra, "none")) \
        if domain.optional else domain


NETWORK_PARAMS = ("activation", "init", "dropout")
# TrainConfig's fields that are searched, in the order a trial samples them
# (seed, log_every and epsilon are not hyperparameters of the search).
TRAIN_PARAMS = ("learning_rate", "schedule", "optimizer", "batch_size", "l2", "clip_type",
                "clip_value", "epochs", "patience", "min_delta", "momentum", "nesterov",
                "beta1", "beta2", "lr_decay", "lr_step", "min_lr")
PARAMS: dict[str, Domain] = {
    "n_layers": Domain("int", 1, 64),  # hidden layers
    "width": LAYER_WIDTH,  # units per hidden layer, sampled per layer
    **{name: NETWORK_DOMAINS[name] for name in NETWORK_PARAMS},
    **{name: _as_in_toml(TRAIN_DOMAINS[name]) for name in TRAIN_PARAMS},
}

# A parameter that applies only for some values of another (declared by the model's
# TrainConfig): name -> (that parameter, its values). One that does not apply is neither
# sampled nor stored, nor exported.
CONDITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    name: when for name, when in TRAIN_CONDITIONS.items() if name in PARAMS}


def applies(name: str, values: dict[str, Any]) -> bool:
    """Whether ``name`` matters, given the values of the parameters it depends on."""
    when = CONDITIONS.get(name)
    return when is None or values.get(when[0], DEFAULTS.get(when[0])) in when[1]


def describe_condition(name: str) -> str:
    """E.g. "when optimizer is momentum", "" for a parameter that always applies."""
    when = CONDITIONS.get(name)
    return "" if when is None else f"when {when[0]} is {' or '.join(when[1])}"


# What a trial uses when the study file leaves a parameter out.
_NETWORK_ARGS = inspect.signature(Network).parameters
DEFAULTS: dict[str, Any] = {
    "n_layers": 1,
    "width": 128,
    **{k: _NETWORK_ARGS[k].default for k in NETWORK_PARAMS},
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

    def sample(self, trial: optuna.trial.BaseTrial, label: str | None = None) -> Any:
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

    def extent(self) -> tuple[Any, Any]:
        """The smallest and the largest value the parameter can take."""
        if self.choices is not None:
            return min(self.choices), max(self.choices)
        if self.low is not None:
            return self.low, self.high
        return self.fixed, self.fixed

    def distribution(self) -> optuna.distributions.BaseDistribution | None:
        """The distribution ``sample`` suggests from (None: a fixed value)."""
        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.low is None:
            return None
        assert self.high is not None
        if PARAMS[self.name].kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high),
                                                        log=self.log, step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log,
                                                      step=self.step)

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
        if step is not None and info.kind == "int" and not isinstance(step, int):
            raise UsageError(f"{key}.step: {name} takes integers, so its step must be a "
                             f"whole number, but got step={step!r}.")
        return Param(name, low=low, high=high, log=log, step=step)
    if not info.valid(raw):
        raise UsageError(f"{key}: invalid value {raw!r}; valid: {info.describe()}.")
    return Param(name, fixed=raw)


def width_label(layer: int) -> str:
    """The name a trial stores hidden layer ``layer``'s width under: ``width_l0``..."""
    return f"width_l{layer}"


def width_layer(name: str) -> int | None:
    """The layer a ``width_label`` names, or None for any other parameter name."""
    match = re.fullmatch(r"width_l(\d+)", name)
    return int(match.group(1)) if match else None


def sample(space: dict[str, Param], trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Every hyperparameter's value for this trial, fixed ones included.

    Widths are sampled per hidden layer, conditionally on the depth (as the
    article does), under the names ``width_l0``, ``width_l1``, ...; a parameter with a
    condition (``CONDITIONS``) only when it applies: the clip threshold when clipping is
    on, momentum with the momentum optimizer, and so on. One that does not apply takes
    its default, which the network ignores.
    """
    def value(name: str, label: str | None = None) -> Any:
        param = space.get(name)
        return param.sample(trial, label) if param is not None else DEFAULTS[name]

    values: dict[str, Any] = {"n_layers": value("n_layers")}
    values["widths"] = [value("width", width_label(i)) for i in range(values["n_layers"])]
    for name in PARAMS:  # in order: a parameter comes after those it depends on
        if name not in ("n_layers", "width"):
            values[name] = value(name) if applies(name, values) else DEFAULTS[name]
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
    training = {name: None if TRAIN_DOMAINS[name].optional and values[name] == "none"
                else values[name] for name in TRAIN_PARAMS
                if applies(name, values)}  # the rest: TrainConfig's defaults, unused
    training["seed"] = seed
    training["log_every"] = 0
    return network, training
