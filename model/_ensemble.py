"""Several networks that predict as one: their outputs averaged, with weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._network import Network, predict_from_output, proba_from_output


class Ensemble:
    """Networks of one task on the same inputs whose head outputs (probabilities for a
    classifier, values for a regressor) are averaged with ``weights`` (default: equal).
    It predicts as a ``Network`` does: ``forward``, ``predict_proba``, ``predict``."""

    def __init__(self, members: Sequence[Network], weights: Sequence[float] | None = None
                 ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one network, but got none.")
        first = members[0].config()
        for net in members[1:]:
            config = net.config()
            if (config["layer_sizes"][0], config["layer_sizes"][-1], config["output"]) != (
                    first["layer_sizes"][0], first["layer_sizes"][-1], first["output"]):
                raise ValueError("an ensemble's networks must share their inputs, outputs "
                                 f"and head, but got {first['layer_sizes']} "
                                 f"({first['output']}) and {config['layer_sizes']} "
                                 f"({config['output']}).")
        w = np.ones(len(members)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(members),) or not np.all(np.isfinite(w)) or np.any(w < 0) \
                or w.sum() <= 0:
            raise ValueError(f"an ensemble's weights must be {len(members)} finite numbers "
                             f">= 0 with a positive sum, but got {list(w)}.")
        self.members = list(members)
        self.weights = w / w.sum()
        self.metadata: dict[str, Any] = {}

    @property
    def is_classifier(self) -> bool:
        return self.members[0].is_classifier

    @property
    def head(self) -> Any:
        """The members' output head (one for all): how outputs become a loss."""
        return self.members[0].head

    def encode_targets(self, y: np.ndarray) -> np.ndarray:
        return self.members[0].encode_targets(y)

    def loss_from_output(self, P: np.ndarray, Y: np.ndarray) -> float:
        """The head's mean loss of the averaged outputs (no weight penalty)."""
        return self.members[0].loss_from_output(P, Y)

    @property
    def n_inputs(self) -> int:
        return self.members[0].n_inputs

    def forward(self, X: np.ndarray) -> np.ndarray:
        """The weighted mean of the members' head outputs."""
        out = self.weights[0] * self.members[0].forward(X).astype(np.float64)
        for w, net in zip(self.weights[1:], self.members[1:], strict=True):
            out += w * net.forward(X)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self.is_classifier:
            raise ValueError("predict_proba is for classifiers, but this ensemble's "
                             "networks are regressors.")
        return proba_from_output(self.forward(X), self.head.task)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices for classifiers (of the averaged probabilities), values for
        regressors (1-d when one output)."""
        return predict_from_output(self.forward(X), self.head.task)
