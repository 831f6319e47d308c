"""Save and load networks: weights as .npz arrays, the config as JSON, no pickles."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._network import Network

FORMAT = "nnsearch.model/1"


def save(net: Network, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``net`` to ``path`` (.npz): the flat parameters plus a JSON config.

    ``metadata`` (JSON-serialisable) travels with the model, e.g. the
    preprocessing a caller needs to predict on raw data.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz")
    header = {"format": FORMAT, "network": net.config(), "metadata": metadata or {}}
    with path.open("wb") as fh:
        np.savez(fh, flat=net.flat, config=np.array(json.dumps(header)))
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a saved model, without building the network."""
    return _read(path)[0]


def load(path: str | Path) -> Network:
    """Rebuild a saved network; it predicts exactly what the saved one did."""
    header, flat = _read(path)
    net = Network(**header["network"])
    if flat.shape != net.flat.shape:
        raise ValueError(f"{path}: holds {flat.size} parameters but its config needs "
                         f"{net.flat.size}.")
    np.copyto(net.flat, flat)
    net.metadata = header.get("metadata", {})  # type: ignore[attr-defined]
    return net


def _read(path: str | Path) -> tuple[dict[str, Any], np.ndarray]:
    # np.load takes any other file for a pickle, and its error says how to load one
    # unsafely: a model file is an .npz archive, nothing else is read.
    if Path(path).is_file() and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an nnsearch model file (not an .npz archive).")
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            header = json.loads(str(data["config"]))
            flat = data["flat"]
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError,
            EOFError) as exc:
        raise ValueError(f"{path}: not an nnsearch model file ({exc}).") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: not an nnsearch model file (format is not {FORMAT!r}).")
    return header, flat
