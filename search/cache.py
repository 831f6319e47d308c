"""A processed data file, kept for the next process: read and preprocess once per study.

Parsing and preprocessing a large CSV takes seconds; every worker needs the same
arrays. The first process to load them (``init``, which splits the table as ``run``
will, or ``create``, before any worker starts) writes them to a folder beside the
storage, keyed by the data file's fingerprint
(a bundled set's name and scikit-learn's version: loading one imports scikit-learn,
which took most of a worker's start-up) and the ``[data]`` definition. The others
map the arrays from there (read-only, shared through the page cache, so N workers do
not hold N copies).

An entry is written to a temporary folder and renamed into place, so a reader
never sees half of one; one that cannot be read is ignored and rebuilt. A folder
that cannot be written (a read-only study folder) just means no cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .builtin import BUILTIN
from .data import Dataset, DataSpec, file_fingerprint, load_data
from .errors import require_file
from .readers import resolve_path
from .sidecars import cache_folder
from .storage_url import StorageURL
from .tabular import Preprocessor

logger = logging.getLogger(__name__)

ENV_CACHE = "NNSEARCH_CACHE"
FORMAT = "nnsearch.data/2"  # 2: one-hot inputs stay 0/1
ARRAYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


def cache_dir(url: StorageURL) -> Path:
    """$NNSEARCH_CACHE, else beside a file storage, else the user's cache folder."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    if url.path is not None:
        return cache_folder(url.path)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nnsearch"


def cached_data(spec: DataSpec, base: Path | None, folder: Path | None,
                store: bool = True) -> Dataset:
    """``load_data``, through the cache in ``folder`` for a data file (a miss is stored
    there unless ``store`` is false: ``create`` stores it once the study accepted it)."""
    if folder is None:
        return load_data(spec, base)
    if spec.source in BUILTIN:
        source = builtin_id(spec.source)
    else:
        path = resolve_path(spec.source, base)
        require_file(path, "data file")
        source = file_fingerprint(path)
    found = load_cached(folder, spec, source)
    if found is not None:
        return found
    data = load_data(spec, base, None if spec.source in BUILTIN else source)
    if store:
        store_cached(folder, spec, data)
    return data


def builtin_id(name: str) -> str:
    """What a bundled set's cache entry is keyed by, known without loading it (that
    imports scikit-learn: most of a worker's start-up): its name and sklearn's version."""
    from importlib import metadata

    return f"builtin:{name}:scikit-learn {metadata.version('scikit-learn')}"


def _source_id(spec: DataSpec, data: Dataset) -> str:
    """A data file's fingerprint (that of its bytes), or a bundled set's ``builtin_id``."""
    return builtin_id(spec.source) if spec.source in BUILTIN else data.fingerprint


def _key(spec: DataSpec, fingerprint: str) -> str:
    definition = json.dumps({"format": FORMAT, "data": spec.to_dict(),
                             "fingerprint": fingerprint}, sort_keys=True)
    return hashlib.sha256(definition.encode()).hexdigest()[:24]


def load_cached(folder: Path, spec: DataSpec, source: str) -> Dataset | None:
    """The entry for ``source`` (``_source_id``), or None."""
    entry = folder / _key(spec, source)
    try:
        meta: dict[str, Any] = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                  for name in (*ARRAYS, "fold_ids") if name in ARRAYS or spec.folds}
    except (OSError, ValueError):
        return None
    # entries written before bundled sets were cached name only the file's fingerprint
    if meta.get("format") != FORMAT or meta.get("source", meta.get("fingerprint")) != source:
        return None
    logger.debug("data from the cache %s", entry)
    return Dataset(task=meta["task"], prep=Preprocessor.from_dict(meta["prep"]),
                   classes=meta["classes"], y_mean=meta["y_mean"], y_scale=meta["y_scale"],
                   fingerprint=meta["fingerprint"], target=meta["target"],
                   notes=meta["notes"], **arrays)


def store_cached(folder: Path, spec: DataSpec, data: Dataset) -> None:
    """Keep ``data`` for the next process."""
    source = _source_id(spec, data)
    entry = folder / _key(spec, source)
    if entry.exists():
        return
    meta = {"format": FORMAT, "source": source, "fingerprint": data.fingerprint,
            "task": data.task,
            "prep": data.prep.to_dict(), "classes": data.classes, "y_mean": data.y_mean,
            "y_scale": data.y_scale, "target": data.target, "notes": data.notes}
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
        for name in (*ARRAYS, "fold_ids"):
            if getattr(data, name) is not None:
                np.save(tmp / f"{name}.npy", getattr(data, name), allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        os.rename(tmp, entry)  # atomic; fails if another process got there first
        tmp = None
    except OSError as exc:
        logger.debug("data not cached in %s: %s", folder, exc)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
