"""scikit-learn's bundled datasets (``sklearn.datasets.load_<name>``), a study's
``data.source`` by name: their task, and their raw features and target."""

from __future__ import annotations

import numpy as np

from .tabular import Column, Table

# Bundled scikit-learn datasets (sklearn.datasets.load_<name>) and their task.
# scikit-learn is imported only when data is loaded: it costs most of a second.
BUILTIN: dict[str, str] = {
    "digits": "classification",
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "diabetes": "regression",
}


def numeric_table(X: np.ndarray, names: list[str]) -> Table:
    X = np.asarray(X, dtype=np.float64)
    return Table([Column(n, np.ascontiguousarray(X[:, i])) for i, n in enumerate(names)])


def raw_builtin(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    given = getattr(bunch, "feature_names", None)
    names = [str(n) for n in given] if given is not None else []
    if len(names) != bunch.data.shape[1]:
        names = [f"x{i}" for i in range(bunch.data.shape[1])]
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target), names
