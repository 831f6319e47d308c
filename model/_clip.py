"""Gradient clipping on the flat gradient: by value, by each tensor's norm (the
article's), or by the global norm."""

from __future__ import annotations

import math

import numpy as np

from ._network import Network

CLIP_TYPES = ("none", "value", "norm", "global_norm")


class Clipper:
    """Clips the flat gradient in place; reports whether it changed anything."""

    def __init__(self, net: Network, clip_type: str, threshold: float) -> None:
        self.kind = clip_type
        self.threshold = threshold
        self.starts = net.tensor_starts
        self.ends = np.append(net.tensor_starts[1:], net.flat.size)

    def __call__(self, grad: np.ndarray, tensor_sq: np.ndarray) -> bool:
        c = self.threshold
        if self.kind == "value":
            if float(np.abs(grad).max()) <= c:
                return False
            np.clip(grad, -c, c, out=grad)
            return True
        if self.kind == "norm":  # the article's: each tensor on its own
            norms = np.sqrt(tensor_sq)
            over = np.flatnonzero(norms > c)
            for t in over:
                grad[self.starts[t]:self.ends[t]] *= c / norms[t]
            return bool(over.size)
        if self.kind == "global_norm":
            total = math.sqrt(float(tensor_sq.sum()))
            if total <= c:
                return False
            grad *= c / total
            return True
        return False
