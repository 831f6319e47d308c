"""Save and load networks: weights as .npz arrays, the config as JSON, no pickles.

A file holds one network (its flat buffer and config), or an ``Ensemble``: the
members' flat buffers one after the other in ``flat``, and each member's config and
weight in the header's ``members``. ``load`` gives back what was saved."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._ensemble import Ensemble
from ._network import Network

FORMAT = "nnsearch.model/1"


def save(net: Network | Ensemble, path: str | Path,
         metadata: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (a network or an ensemble) to ``path`` (.npz): the flat parameters
    plus a JSON config.

    ``metadata`` (JSON-serialisable) travels with the model, e.g. the
    preprocessing a caller needs to predict on raw data.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz")
    nets = net.members if isinstance(net, Ensemble) else [net]
    header: dict[str, Any] = {"format": FORMAT, "network": nets[0].config(),
                              "metadata": metadata or {}}
    if isinstance(net, Ensemble):
        header["members"] = [{"network": n.config(), "weight": float(w)}
                             for n, w in zip(nets, net.weights, strict=True)]
    flat = np.concatenate([n.flat for n in nets]) if len(nets) > 1 else nets[0].flat
    with path.open("wb") as fh:
        np.savez(fh, flat=flat, config=np.array(json.dumps(header)))
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a saved model, without building the network."""
    return _read(path)[0]


def load(path: str | Path) -> Network | Ensemble:
    """Rebuild a saved network or ensemble; it predicts exactly what the saved one did."""
    header, flat = _read(path)
    members = header.get("members")
    try:
        configs = [m["network"] for m in members] if members else [header["network"]]
        nets = [Network(**config) for config in configs]
        weights = [float(m["weight"]) for m in members] if members else None
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not an nnsearch model file (bad config: {exc}).") from None
    need = sum(n.flat.size for n in nets)
    if flat.ndim != 1 or flat.size != need:
        raise ValueError(f"{path}: holds {flat.size} parameters but its config needs {need}.")
    at = 0
    for net in nets:
        np.copyto(net.flat, flat[at:at + net.flat.size])
        at += net.flat.size
    metadata = header.get("metadata", {})
    if members:
        ensemble = Ensemble(nets, weights)
        ensemble.metadata = metadata
        return ensemble
    nets[0].metadata = metadata  # type: ignore[attr-defined]
    return nets[0]


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
