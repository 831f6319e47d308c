"""Warm starts: configurations a study tries first (``[[enqueue]]`` in the study file).

Each is a table of searched parameters in the space's own names (a subset: the
sampler fills in the rest); ``width`` is one width for every hidden layer or a list,
one per layer. ``to_params`` checks a table against the study's space, with the
same kind of one-line errors as the space itself, and returns it in Optuna's
parameter names (``width_l0``, ...) for ``Study.enqueue_trial``. ``create`` enqueues
them once, when it creates the study; workers take them first, each exactly once.
"""

from __future__ import annotations

from typing import Any

import optuna

from nnsearch.model import MAX_PARAMS, param_count

from .errors import UsageError
from .space import CONDITIONS, DEFAULTS, PARAMS, Param, width_label, width_layer


def check_value(param: Param, value: Any, key: str) -> Any:
    """``value`` as a trial would sample it (the space's own choice; a float for a
    float parameter), or UsageError if the space cannot give it."""
    kind = PARAMS[param.name].kind
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "int" and number and not isinstance(value, int):
        raise UsageError(f"{key}: {param.name} takes whole numbers, but got {value!r}.")
    if param.choices is not None:
        for choice in param.choices:  # true is not 1, "1" is not 1, 2 is 2.0
            numeric = isinstance(choice, int | float) and not isinstance(choice, bool)
            if (type(choice) is type(value) or (number and numeric)) and choice == value:
                return choice
        raise UsageError(f"{key}: {value!r} is not one of the space's choices "
                         f"{list(param.choices)!r}.")
    assert param.low is not None and param.high is not None
    if not number:
        raise UsageError(f"{key}: must be a number in the space's range [{param.low}, "
                         f"{param.high}], but got {value!r}.")
    if not param.low <= value <= param.high:
        raise UsageError(f"{key}: {value!r} is outside the space's range [{param.low}, "
                         f"{param.high}].")
    if param.step is not None:
        steps = (value - param.low) / param.step
        if abs(steps - round(steps)) > 1e-9:
            raise UsageError(f"{key}: {value!r} is not on the space's grid (low {param.low}, "
                             f"step {param.step}).")
    return value if kind == "int" else float(value)


def _known(name: str, table: dict[str, Any], space: dict[str, Param]) -> tuple[bool, Any]:
    """(known, value): the value ``name`` takes in this trial, if the table or a fixed
    space says so; unknown when the sampler will choose it."""
    if name in table:
        return True, table[name]
    param = space.get(name)
    if param is None:
        return True, DEFAULTS[name]
    return (True, param.fixed) if param.kind == "fixed" else (False, None)


def to_params(table: Any, space: dict[str, Param], where: str) -> dict[str, Any]:
    """One ``[[enqueue]]`` table as Optuna's params, or UsageError naming the problem."""
    if not isinstance(table, dict) or not table:
        raise UsageError(f"{where}: an enqueued trial must be a table of parameters, such "
                         f"as {{ n_layers = 2, learning_rate = 0.001 }}, but got {table!r}.")
    searched = [n for n, p in space.items() if p.kind != "fixed"]
    params: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{where}: {name}"
        param = space.get(name)
        if name not in PARAMS:
            raise UsageError(f"{where}: unknown parameter {name!r}; the searched ones are: "
                             f"{', '.join(searched) or '(none)'}.")
        if param is None or param.kind == "fixed":
            how = "is not in [space]" if param is None else f"is fixed at {param.fixed!r}"
            raise UsageError(f"{key}: not searched (space.{name} {how}); an enqueued trial "
                             "sets searched parameters only.")
        if name != "width":
            params[name] = check_value(param, value, key)
        when = CONDITIONS.get(name)
        if when is not None:
            known, parent = _known(when[0], table, space)
            if not known:
                raise UsageError(f"{key}: applies only when {when[0]} is "
                                 f"{' or '.join(when[1])}; set {when[0]} in this trial too.")
            if parent not in when[1]:
                raise UsageError(f"{key}: does not apply: it is used when {when[0]} is "
                                 f"{' or '.join(when[1])}, and {when[0]} is {parent!r} here.")
    if "width" in table:
        params |= _widths(table, space, where)
    return params


def _widths(table: dict[str, Any], space: dict[str, Param], where: str) -> dict[str, Any]:
    """``width`` (one for all layers, or one per layer) as ``width_l0``, ``width_l1``..."""
    width, key = table["width"], f"{where}: width"
    known, depth = _known("n_layers", table, space)
    if isinstance(width, list):
        if not known:
            raise UsageError(f"{key}: a list of widths needs the depth; set n_layers in this "
                             "trial too.")
        if len(width) != depth:
            raise UsageError(f"{key}: {len(width)} width(s) for {depth} hidden layer(s).")
        return {width_label(i): check_value(space["width"], w, key) for i, w in enumerate(width)}
    width = check_value(space["width"], width, key)
    if not known:  # the sampler picks the depth: every layer it may have
        n_layers = space["n_layers"]
        depth = max(n_layers.choices) if n_layers.choices is not None else n_layers.high
    return {width_label(i): width for i in range(int(depth))}


def network_size(params: dict[str, Any], space: dict[str, Param], n_inputs: int,
                 n_outputs: int) -> int | None:
    """The parameter count of the network these params (Optuna's names) build, when
    they (or the space's fixed values) decide the depth and every width; else None."""
    known, depth = _known("n_layers", params, space)
    if not known:
        return None
    widths = []
    for i in range(int(depth)):
        label = width_label(i)
        fixed, width = _known("width", {}, space)
        if label not in params and not fixed:
            return None
        widths.append(params.get(label, width))
    return param_count([n_inputs, *widths, n_outputs])


def smallest_size(space: dict[str, Param], n_inputs: int, n_outputs: int) -> int:
    """The parameter count of the smallest network the space can build."""
    def least(name: str) -> int:
        p = space.get(name)
        return int(p.extent()[0]) if p is not None else int(DEFAULTS[name])

    return param_count([n_inputs, *[least("width")] * least("n_layers"), n_outputs])


def check_sizes(params: list[dict[str, Any]], space: dict[str, Param], bound: int | None,
                n_inputs: int, n_outputs: int, where: str) -> None:
    """UsageError if no network of the space fits max_params (or, without one, the most a
    network holds), or an enqueued one breaks it."""
    limit = bound if bound is not None else MAX_PARAMS
    what = f"constraints.max_params = {limit:,}" if bound is not None \
        else f"the most a network holds ({MAX_PARAMS:,})"
    least = smallest_size(space, n_inputs, n_outputs)
    if least > limit:
        if bound is not None:
            raise UsageError(f"{where}: constraints.max_params = {bound:,} is below the smallest "
                             f"network the space builds ({least:,} parameters on "
                             f"{n_inputs} inputs and {n_outputs} outputs): every trial would "
                             "be infeasible.")
        raise UsageError(f"{where}: the smallest network the space builds has {least:,} "
                         f"parameters on {n_inputs} inputs and {n_outputs} outputs, over {what}: "
                         "lower space.width or space.n_layers.")
    for i, trial in enumerate(params):
        size = network_size(trial, space, n_inputs, n_outputs)
        if size is not None and size > limit:
            raise UsageError(f"{where}: enqueued trial {i + 1} builds {size:,} parameters, "
                             f"over {what}: it would never train.")


def enqueue_all(study: optuna.Study, trials: list[dict[str, Any]]) -> None:
    """Queue the study file's trials, in order (once: the study was just created). Two
    equal tables are two trials, each with its own trial seed."""
    for params in trials:
        study.enqueue_trial(params)


def from_optuna_names(params: dict[str, Any], where: str) -> dict[str, Any]:
    """``width_l0``, ``width_l1``... (as trials store them) back into ``width = [...]``."""
    layers = {i: v for k, v in params.items() if (i := width_layer(k)) is not None}
    if not layers:
        return dict(params)
    if "width" in params:
        raise UsageError(f"{where}: give width or width_l0, width_l1..., not both.")
    if sorted(layers) != list(range(len(layers))):
        raise UsageError(f"{where}: the widths must be width_l0 to width_l{len(layers) - 1}, "
                         f"but got layers {sorted(layers)}.")
    table = {k: v for k, v in params.items() if width_layer(k) is None}
    table["width"] = [layers[i] for i in range(len(layers))]
    return table
