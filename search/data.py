"""Datasets: the split, the scaling and the augmentation (``readers`` reads the files).

A ``DataSpec`` says where the data comes from and how to split it; ``load_data``
turns it into a ``Dataset`` whose train/validation/test parts are standardised
with statistics fitted on train only. Image data may have its training part
augmented with shifted copies (``shift``); validation and test never are. The
objective only ever reads ``train`` and ``val``; ``test`` is for ``nnsearch
train`` after the search.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .readers import BUILTIN, is_float, raw_builtin, raw_file

TASKS = ("classification", "regression")
# Bundled datasets whose rows are images: (height, width), row-major.
IMAGE_SHAPES: dict[str, tuple[int, int]] = {"digits": (8, 8)}


@dataclass(frozen=True)
class DataSpec:
    source: str  # a BUILTIN name, or a path to a .csv or .npz file
    target: str | None = None  # CSV: the target column's header
    task: str | None = None  # None: the builtin's task, or inferred from the target
    validation: float = 0.2  # share of all samples
    test: float = 0.2  # share of all samples, never seen by the search
    seed: int = 0  # the split's seed
    image_shape: tuple[int, int] | None = None  # rows are images; None: IMAGE_SHAPES or none
    shift: int = 0  # augment train with copies shifted by 1..shift pixels, 4 ways

    def __post_init__(self) -> None:
        if self.image_shape is not None:  # JSON gives a list
            object.__setattr__(self, "image_shape", tuple(self.image_shape))

    @property
    def shape(self) -> tuple[int, int] | None:
        """The images' (height, width), given or known for a bundled dataset."""
        return self.image_shape or IMAGE_SHAPES.get(self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "task": self.task,
                "validation": self.validation, "test": self.test, "seed": self.seed,
                "image_shape": list(self.image_shape) if self.image_shape else None,
                "shift": self.shift}


@dataclass
class Dataset:
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    classes: list[Any] = field(default_factory=list)  # original labels, by class index
    x_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    x_scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    y_mean: float = 0.0  # regression targets are standardised too
    y_scale: float = 1.0
    fingerprint: str = ""  # sha256 of the raw arrays, to notice changed data
    target: str | None = None  # the CSV target column's name

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def preprocessing(self) -> dict[str, Any]:
        """What ``predict`` needs to go from a raw row to a prediction."""
        return {"task": self.task, "target": self.target, "feature_names": self.feature_names,
                "classes": self.classes, "x_mean": self.x_mean.tolist(),
                "x_scale": self.x_scale.tolist(), "y_mean": self.y_mean,
                "y_scale": self.y_scale}


def normalise_labels(y: np.ndarray) -> np.ndarray:
    """Class labels as one kind of value: text that is all numbers becomes numbers, and
    whole numbers become integers, so that "1", "1.0" and 1 are one class."""
    if y.dtype.kind in "US" or y.dtype == object:
        text = np.array([str(v).strip() for v in y])
        if not all(is_float(v) for v in text):
            return text
        y = text.astype(np.float64)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0):
        return y.astype(np.int64)
    return y


def scale_features(X: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
    """Raw rows as the network saw them in training (``Dataset.preprocessing()``)."""
    return (X - np.asarray(prep["x_mean"])) / np.asarray(prep["x_scale"])


def decode_predictions(pred: np.ndarray, prep: dict[str, Any]) -> list[str]:
    """The network's outputs as the original class labels, or in the target's units."""
    if prep["task"] == "classification":
        classes = prep["classes"]
        return [str(classes[int(i)]) for i in pred]
    values = np.asarray(pred, dtype=np.float64) * prep["y_scale"] + prep["y_mean"]
    return [f"{v:.6g}" for v in values]


def check_images(spec: DataSpec, where: str, n_features: int | None = None) -> None:
    """``image_shape`` and ``shift`` fit each other (and the data, once it is read)."""
    shape = spec.shape
    if spec.shift and shape is None:
        raise UsageError(f"{where}: data.shift needs data.image_shape = [height, width] "
                         "(the rows must be images).")
    if shape is None:
        return
    if n_features is not None and shape[0] * shape[1] != n_features:
        raise UsageError(f"{where}: data.image_shape {list(shape)} holds {shape[0] * shape[1]} "
                         f"pixels, but the data has {n_features} features.")
    if spec.shift >= min(shape):
        raise UsageError(f"{where}: data.shift must be below the image's smaller side "
                         f"({min(shape)}), but got {spec.shift}.")


def shifted_copies(X: np.ndarray, shape: tuple[int, int], shift: int) -> np.ndarray:
    """``X`` followed by 4*shift copies of its images, moved by 1..shift pixels
    up, down, left and right, with the uncovered edge filled with 0 (background).
    """
    h, w = shape
    images = X.reshape(len(X), h, w)
    out = [X]
    for k in range(1, shift + 1):
        for axis, step in ((1, k), (1, -k), (2, k), (2, -k)):
            moved = np.zeros_like(images)
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            src[axis] = slice(0, -step) if step > 0 else slice(-step, None)
            dst[axis] = slice(step, None) if step > 0 else slice(0, step)
            moved[tuple(dst)] = images[tuple(src)]
            out.append(moved.reshape(len(X), h * w))
    return np.concatenate(out)


def _infer_task(y: np.ndarray) -> str:
    if not np.issubdtype(y.dtype, np.number):
        numeric = np.array([is_float(v) for v in y])
        if not numeric.all():
            return "classification"
        y = y.astype(np.float64)
    return "classification" if np.all(np.mod(y, 1) == 0) else "regression"


def load_data(spec: DataSpec, base: Path | None = None) -> Dataset:
    """Read, check, split (stratified for classification) and standardise."""
    if spec.source in BUILTIN:
        X, y, names = raw_builtin(spec.source)
        task = spec.task or BUILTIN[spec.source]
    else:
        X, y, names = raw_file(spec.source, spec.target, base)
        task = spec.task or _infer_task(y)
    where = spec.source
    check_images(spec, where, X.shape[1])
    if len(X) < 10:
        raise UsageError(f"{where}: {len(X)} samples are too few to split into "
                         "train, validation and test.")
    bad_rows = ~np.isfinite(X).all(axis=1)
    if bad_rows.any():
        col = int(np.flatnonzero(~np.isfinite(X[bad_rows][0]))[0])
        raise UsageError(f"{where}: {int(bad_rows.sum())} row(s) hold NaN, empty or infinite "
                         f"values (first at row {int(np.flatnonzero(bad_rows)[0])}, column "
                         f"{names[col]!r}); clean or impute them first.")
    classes: list[Any] = []
    if task == "classification":
        labels = normalise_labels(y)
        if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
            raise UsageError(f"{where}: the target holds NaN or infinite values.")
        uniq, y_idx = np.unique(labels, return_inverse=True)
        if len(uniq) < 2:
            raise UsageError(f"{where}: the target has a single class ({uniq[0].item()!r}); "
                             "classification needs at least two.")
        classes = [v.item() if hasattr(v, "item") else v for v in uniq]
        y_out: np.ndarray = y_idx.astype(np.intp)
        stratify: np.ndarray | None = y_out
        counts = np.bincount(y_out)
        if counts.min() < 3:
            raise UsageError(f"{where}: class {classes[int(counts.argmin())]!r} has only "
                             f"{counts.min()} sample(s); a stratified split needs at least 3 "
                             "per class.")
    else:
        try:
            y_out = y.astype(np.float64)
        except ValueError:
            raise UsageError(f"{where}: a regression target must be numeric.") from None
        if not np.all(np.isfinite(y_out)):
            raise UsageError(f"{where}: the target holds NaN or infinite values.")
        stratify = None

    from sklearn.model_selection import train_test_split

    fingerprint = hashlib.sha256(np.ascontiguousarray(X).tobytes() +
                                 np.ascontiguousarray(y_out).tobytes()).hexdigest()[:16]
    idx = np.arange(len(X))
    holdout = spec.validation + spec.test
    try:
        idx_train, idx_rest = train_test_split(idx, test_size=holdout, random_state=spec.seed,
                                               stratify=stratify)
        rest_strat = stratify[idx_rest] if stratify is not None else None
        idx_val, idx_test = train_test_split(idx_rest, test_size=spec.test / holdout,
                                             random_state=spec.seed, stratify=rest_strat)
    except ValueError as exc:
        raise UsageError(f"{where}: cannot split {len(X)} samples with validation="
                         f"{spec.validation} and test={spec.test} ({exc}).") from None

    X_train, y_train = X[idx_train], y_out[idx_train]
    mean = X_train.mean(axis=0)
    scale = X_train.std(axis=0)
    scale[scale == 0] = 1.0  # constant features stay constant (zero) after scaling
    y_mean, y_scale = 0.0, 1.0
    if task == "regression":
        y_mean = float(y_train.mean())
        y_scale = float(y_train.std()) or 1.0

    def scaled(Xr: np.ndarray, yr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Xs = ((Xr - mean) / scale).astype(np.float32)
        return Xs, (yr if task == "classification" else (yr - y_mean) / y_scale)

    if spec.shift:  # shifted in raw pixels (0 is the background), then scaled like the rest
        assert spec.shape is not None
        X_train = shifted_copies(X_train, spec.shape, spec.shift)
        y_train = np.tile(y_train, 4 * spec.shift + 1)
    X_tr, y_tr = scaled(X_train, y_train)
    X_va, y_va = scaled(X[idx_val], y_out[idx_val])
    X_te, y_te = scaled(X[idx_test], y_out[idx_test])
    return Dataset(task=task, X_train=X_tr, y_train=y_tr, X_val=X_va, y_val=y_va,
                   X_test=X_te, y_test=y_te, feature_names=names, classes=classes,
                   x_mean=mean, x_scale=scale, y_mean=y_mean, y_scale=y_scale,
                   fingerprint=fingerprint, target=spec.target)
