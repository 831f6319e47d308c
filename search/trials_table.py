"""``nnsearch trials``: a study's trials as rows, for a terminal, a spreadsheet or a notebook.

A row is one trial: its number, state, value, duration, every parameter (a trial
that did not sample one has it empty: a parameter that does not apply, or a layer
it does not have) and the diagnostics the worker recorded, with why it was pruned
or failed. Columns of parameters are ``param.NAME``, in the order a trial samples
them (depth, the widths layer by layer, then the rest).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import record
from .front import feasible, signs
from .space import PARAMS, width_layer

if TYPE_CHECKING:
    from .study import OpenStudy

# The recorded diagnostics a row carries, in this order (absent ones stay empty); the
# table shows the first few, csv and json all of them.
DIAGNOSTICS = (record.VAL_LOSS, record.VAL_ACCURACY, record.EPOCHS_RUN, "best_epoch",
               "n_params", "latency_ms", "train_seconds", "clip_rate", "max_grad_norm", "diverged",
               record.FOLD_VALUES)
STATES = {s.name.lower(): s for s in TrialState}
ORDER = {name: i for i, name in enumerate(PARAMS)}
SORTS = ("number", "value", "duration")
TABLE_DIAGNOSTICS = (record.EPOCHS_RUN, "n_params", "latency_ms")


def _param_order(name: str) -> tuple[int, int, str]:
    """The order a trial samples in (space.PARAMS): depth, widths by layer, the rest."""
    layer = width_layer(name)
    if layer is not None:
        return (ORDER["width"], layer, name)
    return (ORDER.get(name, len(ORDER)), 0, name)


# What a row shows of a trial's user attributes (``trial_rows``' ``trials`` need no more)
SHOWN_ATTRS = (*DIAGNOSTICS, record.PRIOR, record.RESUMED, record.PRUNED_REASON,
               record.FAIL_REASON)


def trial_rows(study: optuna.Study, states: Sequence[TrialState] | None = None,
               sort: str = "number", trials: list[FrozenTrial] | None = None
               ) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) for the study's trials in ``states`` (all if None), sorted by
    ``sort``: number, value (best first, by the study's direction; none last) or duration
    (longest first). ``trials``: the study's, already read (``SHOWN_ATTRS`` of their
    user attributes are enough)."""
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=tuple(states) if states else None)
    elif states:
        trials = [t for t in trials if t.state in states]
    params: dict[str, None] = {}
    for t in trials:
        for name in t.params:
            params.setdefault(name, None)
    ordered = sorted(params, key=_param_order)
    constrained = any(t.constraints for t in trials)
    priors = any(record.is_prior(t) for t in trials)
    resumed = any(record.RESUMED in t.user_attrs for t in trials)
    columns = ["number", "state", "value", "duration_s", *(["feasible"] if constrained else []),
               *([record.PRIOR] if priors else []), *(f"param.{p}" for p in ordered),
               *DIAGNOSTICS, *([record.RESUMED] if resumed else []), "reason"]
    rows = [_row(t, ordered, constrained, priors, resumed) for t in trials]
    if sort == "value":  # completed trials, best first; then the rest, by number (a pruned
        # trial's value is its last report, not comparable with a finished one's)
        sign = signs(study.directions)[0]  # a multi-objective study's quality metric
        rows.sort(key=lambda r: (r["state"] != "complete" or r["value"] is None,
                                 sign * (r["value"] or 0.0) if r["state"] == "complete"
                                 else 0.0, r["number"]))
    elif sort == "duration":
        rows.sort(key=lambda r: (r["duration_s"] is None, -(r["duration_s"] or 0.0),
                                 r["number"]))
    return columns, rows


def study_rows(opened: OpenStudy, states: Sequence[TrialState] | None = None,
               sort: str = "number") -> tuple[list[str], list[dict[str, Any]]]:
    """``trial_rows`` of an opened study, its trials read as an outline where its storage
    allows (``TrialCache.outline``: every param, ``SHOWN_ATTRS``, no finished trial's
    reports; at 11,264 trials, ~0.6 s of `trials --format csv`'s ~2.7 s saved)."""
    read = None if opened.reader is None else opened.reader.outline(
        opened.storage.get_study_id_from_name(opened.study.study_name), SHOWN_ATTRS)
    return trial_rows(opened.study, states, sort, None if read is None else [t for _, t in read])


def _finite(value: Any) -> Any:
    """None for NaN and infinities (strict JSON has neither), in lists too."""
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def resumed_text(t: FrozenTrial) -> str | None:
    """Where a retry resumed from its checkpoint, and the epochs that saved."""
    where = t.user_attrs.get(record.RESUMED)
    if not isinstance(where, dict):
        return None
    return f"at {where.get('at')}; {where.get('epochs_saved')} epochs saved"


def _row(t: FrozenTrial, params: list[str], constrained: bool,
         priors: bool, resumed: bool = False) -> dict[str, Any]:
    duration = t.duration.total_seconds() if t.duration is not None else None
    row: dict[str, Any] = {"number": t.number, "state": t.state.name.lower(),
                           "value": _finite(t.values[0]) if t.values else None,
                           "duration_s": round(duration, 3) if duration is not None else None}
    if constrained:  # unknown (None) for a trial that recorded no constraint
        row["feasible"] = feasible(t) if t.constraints else None
    if priors:  # where a prior came from (run --from-study): "STUDY#N"
        row[record.PRIOR] = t.user_attrs.get(record.PRIOR)
    row |= {f"param.{p}": t.params.get(p) for p in params}
    row |= {k: _finite(t.user_attrs.get(k)) for k in DIAGNOSTICS}
    if resumed:  # a retry that continued from its checkpoint
        row[record.RESUMED] = resumed_text(t)
    row["reason"] = t.user_attrs.get(record.PRUNED_REASON) or t.user_attrs.get(
        record.FAIL_REASON)
    return row


def to_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """RFC 4180 text; a list (fold_values) as JSON in its cell, None as an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([json.dumps(v) if isinstance(v, list) else v  # (csv writes None
                      for v in map(row.get, columns)] for row in rows)  # as "")
    return out.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=1) + "\n"


def cell(value: Any) -> str:
    """A table cell: short floats, lists of them, and nothing for None."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(cell(v) for v in value) + "]"
    return str(value)
