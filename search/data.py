"""Datasets: the split, the preprocessing and the augmentation (``readers`` reads files).

A ``DataSpec`` says where the data comes from and how to split it; ``load_data``
turns it into a ``Dataset``: split (stratified for classification), then
preprocessed by ``tabular`` (missing values, text columns, standardisation) with
everything fitted on the training split only. Image data may have its training part
augmented with shifted copies (``shift``); validation and test never are. The
objective only ever reads ``train`` and ``val``; ``test`` is for ``nnsearch train``
after the search. ``cache`` keeps a processed file dataset for the next worker.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .builtin import BUILTIN, numeric_table, raw_builtin
from .errors import UsageError, require_file
from .readers import Raw, is_float, raw_file, resolve_path, stripped_distinct
from .tabular import Preprocessor, describe, fit_preprocessor

logger = logging.getLogger(__name__)

TASKS = ("classification", "regression")
# Bundled datasets whose rows are images: (height, width), row-major.
IMAGE_SHAPES: dict[str, tuple[int, int]] = {"digits": (8, 8)}
# An integer target with more distinct values than both of these is a quantity.
REGRESSION_DISTINCT = 20
REGRESSION_SHARE = 0.05


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
    drop: tuple[str, ...] = ()  # CSV columns not to use
    categorical: tuple[str, ...] = ()  # numeric CSV columns that are codes of categories
    folds: int = 0  # k-fold cross-validation over train + validation (0: one validation split)
    unlabelled: str = "refuse"  # CSV rows with no target: refused, or "drop": left out
    clip: bool = False  # numbers beyond the training rows' range taken at its edge
    numeric: str = "standard"  # numbers standardised, or "quantile": mapped to normal scores

    def __post_init__(self) -> None:
        for name in ("image_shape", "drop", "categorical"):  # JSON gives lists
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    @property
    def shape(self) -> tuple[int, int] | None:
        """The images' (height, width), given or known for a bundled dataset."""
        return self.image_shape or IMAGE_SHAPES.get(self.source)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"source": self.source, "target": self.target, "task": self.task,
                "validation": self.validation, "test": self.test, "seed": self.seed,
                "image_shape": list(self.image_shape) if self.image_shape else None,
                "shift": self.shift}
        if self.drop:  # only when set: definitions stored before 0.3 stay the same
            data["drop"] = list(self.drop)
        if self.categorical:
            data["categorical"] = list(self.categorical)
        if self.unlabelled != "refuse":
            data["unlabelled"] = self.unlabelled
        if self.clip:
            data["clip"] = True
        if self.numeric != "standard":
            data["numeric"] = self.numeric
        if self.folds:  # only when set, likewise; the folds replace the validation share
            data["folds"] = self.folds
            del data["validation"]
        return data


@dataclass
class Dataset:
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    prep: Preprocessor
    classes: list[Any] = field(default_factory=list)  # original labels, by class index
    y_mean: float = 0.0  # regression targets are standardised too
    y_scale: float = 1.0
    fingerprint: str = ""  # of the data file (of the arrays, for a bundled set)
    target: str | None = None  # the CSV target column's name
    notes: list[str] = field(default_factory=list)  # what was inferred, for the user
    # With folds: X_train is train + validation (X_val is empty) and fold_ids gives each of
    # its original (not shifted) rows the fold that validates on it.
    fold_ids: np.ndarray | None = None

    @property
    def n_folds(self) -> int:
        return 0 if self.fold_ids is None else int(self.fold_ids.max()) + 1

    def fold(self, i: int) -> Dataset:
        """Fold ``i`` as a dataset of its own: trained on the other folds (with their
        shifted copies), validated on fold ``i``, no test rows."""
        assert self.fold_ids is not None
        n = len(self.fold_ids)
        held = self.fold_ids == i
        rows = np.flatnonzero(~held)
        copies = len(self.X_train) // n  # shifted copies follow the rows in blocks of n
        rows = (rows[None, :] + n * np.arange(copies)[:, None]).ravel()
        val = np.flatnonzero(held)
        empty = slice(0, 0)
        return replace(self, X_train=self.X_train[rows], y_train=self.y_train[rows],
                       X_val=self.X_train[val], y_val=self.y_train[val],
                       X_test=self.X_test[empty], y_test=self.y_test[empty], fold_ids=None)

    def scaled_as(self, stored: dict[str, Any] | None) -> Dataset:
        """This data with its one-hot inputs scaled as ``stored`` (a study's or an
        export's preprocessing) scaled them, where that differs: a study created while
        one-hot inputs were standardised goes on with the inputs its trials trained on,
        bit for bit (``Preprocessor.one_hot_as``); its exports retrain on them."""
        if not stored or stored.get("feature_names") != self.prep.feature_names:
            return self
        try:
            prep, moved = self.prep.one_hot_as(stored)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not moved.size:
            return self

        def move(X: np.ndarray) -> np.ndarray:
            return self.prep.moved(X, prep, moved)

        return replace(self, prep=prep, X_train=move(self.X_train), X_val=move(self.X_val),
                       X_test=move(self.X_test))

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    @property
    def feature_names(self) -> list[str]:
        return self.prep.feature_names

    def summary(self) -> str:
        """One line on the preprocessing, for the study note and ``status``."""
        return describe(self.prep.summary)

    def preprocessing(self) -> dict[str, Any]:
        """What ``predict`` needs to go from a raw row to a prediction."""
        return {"task": self.task, "target": self.target, "classes": self.classes,
                "y_mean": self.y_mean, "y_scale": self.y_scale, **self.prep.to_dict()}


def normalise_labels(y: np.ndarray) -> np.ndarray:
    """Class labels as one kind of value: text that is all numbers becomes numbers, and
    whole numbers become integers, so that "1", "1.0" and 1 are one class."""
    if y.dtype.kind in "US" or y.dtype == object:
        codes, labels = stripped_distinct(y)
        if not all(is_float(v) for v in labels):
            return labels[codes]
        y = labels.astype(np.float64)[codes]
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0):
        return y.astype(np.int64)
    return y


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


def infer_task(y: np.ndarray) -> tuple[str, str | None]:
    """The task a target asks for, and a note when a number of classes was taken for a
    quantity: an integer target with many distinct values is one."""
    labels = normalise_labels(y)
    if labels.dtype.kind not in "iuf":
        return "classification", None
    if labels.dtype.kind == "f":
        return "regression", None
    distinct = len(np.unique(labels))
    if distinct > REGRESSION_DISTINCT and distinct > REGRESSION_SHARE * len(labels):
        return "regression", (f"data.task: taken as regression (the target has {distinct} "
                              "distinct integer values); set data.task = \"classification\" "
                              "if they are classes.")
    if distinct > REGRESSION_DISTINCT:
        return "classification", (f"data.task: taken as classification into {distinct} "
                                  f"classes (the target's distinct integer values, in "
                                  f"{len(labels):,} rows); set data.task = \"regression\" "
                                  "if it is a quantity.")
    return "classification", None


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def fold_rows(spec: DataSpec, n: int, stratify: np.ndarray | None,
              where: str = "data") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """With ``spec.folds``: the row indices of train + validation and of test, and the
    fold (0..k-1) of each train + validation row (stratified k-fold by class)."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    try:
        idx_pool, idx_test = train_test_split(np.arange(n), test_size=spec.test,
                                              random_state=spec.seed, stratify=stratify)
    except ValueError as exc:
        raise UsageError(f"{where}: cannot split {n} samples with test={spec.test} "
                         f"({exc}).") from None
    pool_strat = stratify[idx_pool] if stratify is not None else None
    if pool_strat is not None and np.bincount(pool_strat).min() < spec.folds:
        raise UsageError(f"{where}: data.folds = {spec.folds} needs at least {spec.folds} "
                         "samples of each class outside the test split, but one class has "
                         f"{np.bincount(pool_strat).min()}; use fewer folds.")
    if len(idx_pool) < 2 * spec.folds:
        raise UsageError(f"{where}: {len(idx_pool)} samples are too few for "
                         f"data.folds = {spec.folds}.")
    kfold = (StratifiedKFold if pool_strat is not None else KFold)(
        spec.folds, shuffle=True, random_state=spec.seed)
    fold_ids = np.empty(len(idx_pool), np.intp)
    for i, (_, held) in enumerate(kfold.split(idx_pool, pool_strat)):
        fold_ids[held] = i
    return idx_pool, fold_ids, idx_test


def split_rows(spec: DataSpec, n: int, stratify: np.ndarray | None,
               where: str = "data") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the train, validation and test splits (stratified by class); with
    ``spec.folds``, train is train + validation and validation is empty (``fold_rows``)."""
    from sklearn.model_selection import train_test_split

    if spec.folds:
        idx_pool, _, idx_test = fold_rows(spec, n, stratify, where)
        return idx_pool, idx_pool[:0], idx_test
    holdout = spec.validation + spec.test
    try:
        idx_train, idx_rest = train_test_split(np.arange(n), test_size=holdout,
                                               random_state=spec.seed, stratify=stratify)
        rest_strat = stratify[idx_rest] if stratify is not None else None
        idx_val, idx_test = train_test_split(idx_rest, test_size=spec.test / holdout,
                                             random_state=spec.seed, stratify=rest_strat)
    except ValueError as exc:
        raise UsageError(f"{where}: cannot split {n} samples with validation="
                         f"{spec.validation} and test={spec.test} ({exc}).") from None
    return idx_train, idx_val, idx_test


def load_data(spec: DataSpec, base: Path | None = None, fingerprint: str | None = None,
              raw: Raw | None = None) -> Dataset:
    """Read (unless ``raw`` is the file's table, already read as ``spec`` says), check,
    split and preprocess (``cache.cached_data`` keeps the result)."""
    if spec.source in BUILTIN:
        return _build(spec, spec.source, None)
    path = resolve_path(spec.source, base)
    require_file(path, "data file")
    return _build(spec, str(path), fingerprint or file_fingerprint(path), raw)


def _build(spec: DataSpec, where: str, fingerprint: str | None,
           raw: Raw | None = None) -> Dataset:
    notes: list[str] = []
    task: str | None
    if fingerprint is None:  # a bundled set
        X, y, names = raw_builtin(spec.source)
        table = numeric_table(X, names)
        task = spec.task or BUILTIN[spec.source]
    else:
        table, y = raw or raw_file(Path(where), spec.target, spec.drop, spec.categorical,
                                    spec.unlabelled)
        task = spec.task
        if task is None:
            task, note = infer_task(y)
            if note:
                notes.append(note)
    check_images(spec, where, len(table.columns))
    if spec.shape is not None and any(c.is_text for c in table.columns):
        raise UsageError(f"{where}: data.image_shape needs numeric columns only.")
    if len(table) < 10:
        raise UsageError(f"{where}: {len(table)} samples are too few to split into "
                         "train, validation and test.")
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
                             "per class (if the target is a quantity, set data.task = "
                             "\"regression\").")
    else:
        try:
            y_out = np.asarray(y).astype(np.float64)
        except ValueError:
            raise UsageError(f"{where}: a regression target must be numeric.") from None
        if not np.all(np.isfinite(y_out)):
            raise UsageError(f"{where}: the target holds NaN or infinite values.")
        stratify = None
    if fingerprint is None:  # as 0.2.0 computed it, so its studies on bundled sets still open
        fingerprint = hashlib.sha256(np.ascontiguousarray(X).tobytes() +
                                     np.ascontiguousarray(y_out).tobytes()).hexdigest()[:16]

    fold_ids = None
    if spec.folds:
        idx_train, fold_ids, idx_test = fold_rows(spec, len(table), stratify, where)
        idx_val = idx_train[:0]
    else:
        idx_train, idx_val, idx_test = split_rows(spec, len(table), stratify, where)
    prep = fit_preprocessor(table, idx_train, clip=spec.clip,
                            quantile=spec.numeric == "quantile")
    if spec.drop:
        prep.summary["dropped"] = list(spec.drop)
    y_train = y_out[idx_train]
    y_mean, y_scale = 0.0, 1.0
    if task == "regression":
        y_mean = float(y_train.mean())
        y_scale = float(y_train.std()) or 1.0

    def target(yr: np.ndarray) -> np.ndarray:
        return yr if task == "classification" else (yr - y_mean) / y_scale

    if spec.shift:  # shifted in raw pixels (0 is the background), then scaled like the rest
        assert spec.shape is not None
        pixels = shifted_copies(prep.transform(table, idx_train, standardise=False),
                                spec.shape, spec.shift)
        X_tr = ((pixels - prep.mean) / prep.scale).astype(np.float32)
        y_train = np.tile(y_train, 4 * spec.shift + 1)
    else:
        X_tr = prep.transform(table, idx_train)
    return Dataset(task=task, X_train=X_tr, y_train=target(y_train),
                   X_val=prep.transform(table, idx_val), y_val=target(y_out[idx_val]),
                   X_test=prep.transform(table, idx_test), y_test=target(y_out[idx_test]),
                   prep=prep, classes=classes, y_mean=y_mean, y_scale=y_scale,
                   fingerprint=fingerprint, target=spec.target, notes=notes,
                   fold_ids=fold_ids)
