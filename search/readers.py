"""Reading raw data: scikit-learn's bundled sets, CSV and NPZ files.

Everything here returns raw arrays (features as float64, the target as given);
splitting, scaling and augmenting are ``data``'s job. ``read_features`` reads the
rows ``predict`` gets, by the feature names the model was trained on.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError

logger = logging.getLogger(__name__)

# Bundled scikit-learn datasets (sklearn.datasets.load_<name>) and their task.
# scikit-learn is imported only when data is loaded: it costs most of a second.
BUILTIN: dict[str, str] = {
    "digits": "classification",
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "diabetes": "regression",
}
Raw = tuple[np.ndarray, np.ndarray, list[str]]  # X, y, feature names


def raw_builtin(name: str) -> Raw:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    given = getattr(bunch, "feature_names", None)
    names = [str(n) for n in given] if given is not None else []
    if len(names) != bunch.data.shape[1]:
        names = [f"x{i}" for i in range(bunch.data.shape[1])]
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target), names


def resolve_path(source: str, base: Path | None) -> Path:
    path = Path(source).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.resolve()


def is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv(path: Path, target: str | None, require_target: bool = True,
             features: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None,
                                                         list[str]]:
    """Features as floats, the target column as given (strings), and feature names.

    ``features``: read only these columns, in this order (``predict``); the others, of
    any type, are ignored.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text CSV file.") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise UsageError(f"{path}: the CSV file is empty (it needs a header row and data).")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if not body:
        raise UsageError(f"{path}: the CSV file has a header but no data rows.")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise UsageError(f"{path}: the header names column(s) {twice} more than once; "
                         "every column needs its own name.")
    if target is not None and target not in header:
        if require_target:
            raise UsageError(f"{path}: target column {target!r} is not in the header "
                             f"(columns: {', '.join(header)}).")
        target = None
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UsageError(f"{path}: line {i} has {len(row)} fields, the header has "
                             f"{len(header)}.")
    columns = dict(zip(header, zip(*body, strict=True), strict=True))
    if target is not None:
        y = np.array([c.strip() for c in columns[target]])
        empty = np.flatnonzero(y == "")
        if empty.size:
            raise UsageError(f"{path}: {empty.size} row(s) have an empty target {target!r} "
                             f"(first at line {int(empty[0]) + 2}); fill or drop them.")
    else:
        y = None
    wanted = features if features is not None else [h for h in header if h != target]
    feature_values, names = [], []
    for name in wanted:
        col = columns[name]
        try:
            values = np.array([float(c) if c.strip() else math.nan for c in col])
        except ValueError:
            bad = next(c for c in col if not is_float(c))
            raise UsageError(f"{path}: column {name!r} is not numeric (e.g. {bad!r}); "
                             "encode it as numbers or drop it.") from None
        feature_values.append(values)
        names.append(name)
    if not feature_values:
        raise UsageError(f"{path}: no feature columns besides the target {target!r}.")
    return np.column_stack(feature_values), y, names


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file (its first non-empty row)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.reader(fh):
                if any(cell.strip() for cell in row):
                    return [h.strip() for h in row]
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text CSV file.") from None
    raise UsageError(f"{path}: the CSV file is empty (it needs a header row and data).")


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file (no pickles), or UsageError naming what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise UsageError(f"{path}: the .npz needs arrays "
                                 f"{' and '.join(map(repr, keys))}; missing "
                                 f"{missing} (has {sorted(npz.files)}).")
            arrays = {k: np.asarray(npz[k]) for k in keys}
    except UsageError:
        raise
    except Exception as exc:  # a corrupt archive, pickled objects, ...
        raise UsageError(f"{path}: cannot read as .npz ({exc}).") from None
    X = arrays["X"]
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise UsageError(f"{path}: X must be a 2-d numeric array, but got shape {X.shape} "
                         f"and dtype {X.dtype}.")
    return arrays


def raw_file(source: str, target: str | None, base: Path | None) -> Raw:
    path = resolve_path(source, base)
    if not path.is_file():
        raise UsageError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if not target:
            raise UsageError(f"{path}: a CSV source needs data.target, the name of the "
                             "target column.")
        X, y, names = read_csv(path, target)
        assert y is not None
        return X, y, names
    if suffix == ".npz":
        arrays = read_npz(path, ("X", "y"))
        X, y = arrays["X"], arrays["y"]
        if y.ndim != 1 or len(X) != len(y):
            raise UsageError(f"{path}: X must be 2-d and y 1-d with as many rows, but got "
                             f"X.shape={X.shape}, y.shape={y.shape}.")
        return X.astype(np.float64), y, [f"x{i}" for i in range(X.shape[1])]
    raise UsageError(f"{path}: unknown data file type {path.suffix!r}; use .csv or .npz, "
                     f"or a bundled dataset ({', '.join(BUILTIN)}).")


def read_features(path: Path, prep: dict[str, Any]) -> np.ndarray:
    """The rows to predict on, as raw floats in the training's feature order.

    A CSV's columns are found by their header names (any order, a target column
    ignored); an .npz gives them as ``X``, in the training's order.
    """
    if not path.is_file():
        raise UsageError(f"data file not found: {path}")
    names: list[str] = prep["feature_names"]
    if path.suffix.lower() == ".npz":
        X = read_npz(path, ("X",))["X"].astype(np.float64)
    else:
        header = csv_header(path)
        missing = [n for n in names if n not in header]
        if missing:
            raise UsageError(f"{path}: missing feature column(s) {missing[:5]}; the "
                             f"model needs {len(names)} columns named as in training.")
        unused = [h for h in header if h not in names and h != prep.get("target")]
        if unused:
            logger.info("ignoring column(s) the model does not use: %s",
                        ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else ""))
        X, _, _ = read_csv(path, None, require_target=False, features=names)
    if X.shape[1] != len(names):
        raise UsageError(f"{path}: needs {len(names)} feature columns, got {X.shape[1]}.")
    if not np.isfinite(X).all():
        raise UsageError(f"{path}: holds NaN, empty or infinite values.")
    return X
