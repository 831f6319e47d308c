"""A dense feed-forward network with all parameters in one flat buffer.

Layer ``l`` owns a block of ``(fan_in + 1) * fan_out`` numbers, seen as a
``(fan_in + 1, fan_out)`` matrix whose first ``fan_in`` rows are the weights and
whose last row is the bias. Training appends a column of ones to every layer's
input, so one matrix product gives ``X @ W + b`` and one more gives both the
weight and the bias gradient. Optimizers update the whole buffer at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._domains import Domain
from ._functions import ACTIVATIONS, DERIVATIVES, HEADS, OUTPUT_ALIASES, Head
from ._init import INITIALIZERS

DTYPES = ("float32", "float64")
MAX_PARAMS = 2**28  # weights and biases (1 GiB in float32; training needs about 4x that)
MAX_WIDTH = 65536  # units in one layer, so that no config (e.g. a shared export) asks for more

# The valid values of Network's arguments; LAYER_WIDTH is each entry of layer_sizes.
NETWORK_DOMAINS: dict[str, Domain] = {
    "activation": Domain("name", choices=tuple(sorted(ACTIVATIONS))),
    "output": Domain("name", choices=tuple(sorted(OUTPUT_ALIASES))),
    "init": Domain("name", choices=tuple(sorted(INITIALIZERS))),
    "dropout": Domain("float", 0.0, 1.0, high_open=True),
    "seed": Domain("int"),
    "dtype": Domain("name", choices=DTYPES),
}
LAYER_WIDTH = Domain("int", 1, MAX_WIDTH)


@dataclass
class _Workspace:
    """Buffers for one batch size, reused across steps.

    ``inputs[l]`` is layer l's input with a trailing column of ones; ``outputs[l]``
    is layer l's pre-activation, later its activation before dropout.
    """

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    deltas: list[np.ndarray]
    masks: list[np.ndarray]  # this batch's dropout masks, already scaled by 1/keep
    # views made once: each input without its ones column (the layer's activations)
    # and transposed (for the weight gradient)
    hidden: list[np.ndarray]
    inputs_t: list[np.ndarray]


def param_count(layer_sizes: Sequence[int]) -> int:
    """Weights and biases of a network with these layer sizes, without building it."""
    sizes = [int(s) for s in layer_sizes]
    return sum((i + 1) * o for i, o in itertools.pairwise(sizes))


class Network:
    """A multilayer perceptron built from a list of layer sizes.

    ``layer_sizes`` runs from the input width to the output width, e.g.
    ``[64, 128, 10]`` for digits with one hidden layer of 128 units.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "relu",
        output: str = "softmax",
        init: str = "he_normal",
        dropout: float = 0.0,
        seed: int = 0,
        dtype: str = "float32",
    ) -> None:
        sizes = list(layer_sizes) if not isinstance(layer_sizes, str | bytes) else []
        if len(sizes) < 2:
            raise ValueError(
                "layer_sizes must list at least an input and an output width, "
                f"but got layer_sizes={layer_sizes!r}."
            )
        if not all(LAYER_WIDTH.valid(size) for size in sizes):
            raise ValueError(f"every width in layer_sizes must be {LAYER_WIDTH.describe()}, "
                             f"but got layer_sizes={sizes!r}.")
        args = {"activation": activation, "output": output, "init": init, "dropout": dropout,
                "seed": seed, "dtype": str(dtype)}
        for name, domain in NETWORK_DOMAINS.items():
            domain.check(name, args[name])
        head = HEADS[OUTPUT_ALIASES[output]]
        if head.task == "binary" and sizes[-1] != 1:
            raise ValueError(
                "a sigmoid (binary) output has one unit, "
                f"but got layer_sizes[-1]={sizes[-1]}."
            )
        if head.task == "multiclass" and sizes[-1] < 2:
            raise ValueError(
                f"a softmax output needs at least 2 units, but got layer_sizes[-1]={sizes[-1]}."
            )

        self.layer_sizes = [int(s) for s in sizes]
        self.activation = activation
        self.output = head.name
        self.init = init
        self.dropout = float(dropout)
        self.seed = int(seed)
        self.dtype = np.dtype(dtype)
        self.head: Head = head
        self._act = ACTIVATIONS[activation]
        self._act_grad = DERIVATIVES[activation]

        shapes = [(i + 1, o) for i, o in zip(self.layer_sizes[:-1], self.layer_sizes[1:],
                                             strict=True)]
        self.offsets = np.cumsum([0] + [r * c for r, c in shapes])
        if self.offsets[-1] > MAX_PARAMS:  # checked before anything is allocated
            raise ValueError(f"layer_sizes={self.layer_sizes} make {int(self.offsets[-1]):,} "
                             f"parameters, but a network holds at most {MAX_PARAMS:,}.")
        self.flat = np.zeros(int(self.offsets[-1]), self.dtype)
        self.grad = np.zeros_like(self.flat)
        self.blocks = [self.flat[a:b].reshape(s) for a, b, s in
                       zip(self.offsets[:-1], self.offsets[1:], shapes, strict=True)]
        self.grad_blocks = [self.grad[a:b].reshape(s) for a, b, s in
                            zip(self.offsets[:-1], self.offsets[1:], shapes, strict=True)]
        self._weights_t = [block[:-1].T for block in self.blocks]  # for backprop's deltas
        # Start of every tensor (W1, b1, W2, b2, ...) in the flat buffer.
        starts = []
        for a, (rows, cols) in zip(self.offsets[:-1], shapes, strict=True):
            starts += [a, a + (rows - 1) * cols]
        self.tensor_starts = np.asarray(starts, dtype=np.intp)
        # 1 where the flat buffer holds a weight, 0 where it holds a bias (for L2).
        self.weight_mask = np.ones_like(self.flat)
        for end, (_, cols) in zip(self.offsets[1:], shapes, strict=True):
            self.weight_mask[end - cols:end] = 0  # each block's last row is its bias
        rng = np.random.default_rng(self.seed)
        for block, (fan_in, fan_out) in zip(self.blocks, shapes, strict=True):
            block[:-1] = INITIALIZERS[init](rng, fan_in - 1, fan_out)
        self._workspaces: dict[int, _Workspace] = {}

    # ----- description -------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + the output layer)."""
        return len(self.blocks)

    @property
    def n_params(self) -> int:
        return int(self.flat.size)

    @property
    def is_classifier(self) -> bool:
        return self.head.is_classifier

    @property
    def n_inputs(self) -> int:
        return int(self.layer_sizes[0])

    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``Network(**net.config())`` rebuilds this network."""
        return {
            "layer_sizes": list(self.layer_sizes),
            "activation": self.activation,
            "output": self.output,
            "init": self.init,
            "dropout": self.dropout,
            "seed": self.seed,
            "dtype": self.dtype.name,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"Network({args})"

    def parameters(self) -> list[np.ndarray]:
        """Views [W1, b1, W2, b2, ...] into the flat buffer; writing them changes the net."""
        params: list[np.ndarray] = []
        for block in self.blocks:
            params += [block[:-1], block[-1]]
        return params

    # ----- inputs and targets ----------------------------------------------------
    def check_input(self, X: np.ndarray, name: str = "X") -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.layer_sizes[0]:
            raise ValueError(
                f"{name} must have shape (n_samples, {self.layer_sizes[0]}) to match "
                f"layer_sizes[0]={self.layer_sizes[0]}, but got {name}.shape={X.shape}."
            )
        return np.ascontiguousarray(X, dtype=self.dtype)

    def encode_targets(self, y: np.ndarray, name: str = "y") -> np.ndarray:
        """Targets as the (n, n_outputs) matrix Y that the head's gradient P - Y uses."""
        y = np.asarray(y)
        width = self.layer_sizes[-1]
        if self.head.task == "regression":
            Y = y.reshape(len(y), -1) if y.ndim <= 2 else y
            if Y.shape[1] != width:
                raise ValueError(
                    f"{name} must have {width} column(s) for layer_sizes[-1]={width}, "
                    f"but got {name}.shape={y.shape}."
                )
            return np.ascontiguousarray(Y, dtype=self.dtype)
        if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or
                               (y.size and np.all(np.mod(y, 1) == 0))):
            raise ValueError(f"{name} must be a 1-d array of class indices, but got "
                             f"{name}.dtype={y.dtype}, {name}.shape={y.shape}.")
        y = y.astype(np.intp)
        n_classes = 2 if self.head.task == "binary" else width
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(
                f"{name} holds class indices in [{y.min()}, {y.max()}] but the output has "
                f"{n_classes} classes (valid indices 0..{n_classes - 1})."
            )
        if self.head.task == "binary":
            return y.astype(self.dtype).reshape(-1, 1)
        Y = np.zeros((len(y), width), self.dtype)
        Y[np.arange(len(y)), y] = 1
        return Y

    # ----- inference ----------------------------------------------------------------
    def forward(self, X: np.ndarray) -> np.ndarray:
        """Output of the head (probabilities or values); dropout is off."""
        A = self.check_input(X)
        last = self.n_layers - 1
        for i, block in enumerate(self.blocks):
            Z = A @ block[:-1]
            Z += block[-1]
            if i < last:
                self._act(Z, Z)
            else:
                self.head.activate(Z)
            A = Z
        return A

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self.is_classifier:
            raise ValueError("predict_proba is for classifiers, but this network's "
                             f"output={self.output!r} is a regressor.")
        return proba_from_output(self.forward(X), self.head.task)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices for classifiers, values for regressors (1-d when one output)."""
        return predict_from_output(self.forward(X), self.head.task)

    def loss(self, X: np.ndarray, y: np.ndarray, l2: float = 0.0) -> float:
        """Mean loss on (X, y) with dropout off, plus 0.5 * l2 * ||W||^2."""
        return self.loss_from_output(self.forward(X), self.encode_targets(y), l2)

    def loss_from_output(self, P: np.ndarray, Y: np.ndarray, l2: float = 0.0) -> float:
        loss = self.head.loss(P, Y) / max(len(Y), 1)
        return loss + self.l2_penalty(l2) if l2 else loss

    def l2_penalty(self, l2: float) -> float:
        return 0.5 * l2 * sum(float(np.vdot(b[:-1], b[:-1])) for b in self.blocks)

    # ----- training -----------------------------------------------------------------
    def loss_and_gradients(self, X: np.ndarray, y: np.ndarray,
                           l2: float = 0.0) -> tuple[float, list[np.ndarray]]:
        """Mean loss and its gradients, aligned with ``parameters()``; dropout is off.

        With ``l2`` > 0 the loss includes 0.5 * l2 * sum(W^2) over weights (not
        biases) and the weight gradients include l2 * W.
        """
        Xa = self.augment(self.check_input(X))
        loss = self.backprop(Xa, self.encode_targets(y)) / len(Xa)
        if l2:
            loss += self.l2_penalty(l2)
            self.grad += l2 * self.weight_mask * self.flat
        grads: list[np.ndarray] = []
        for block in self.grad_blocks:
            grads += [block[:-1].copy(), block[-1].copy()]
        return loss, grads

    def augment(self, X: np.ndarray) -> np.ndarray:
        """X with a trailing column of ones, the input form ``backprop`` takes."""
        Xa = np.empty((X.shape[0], X.shape[1] + 1), self.dtype)
        Xa[:, :-1] = X
        Xa[:, -1] = 1
        return Xa

    def _workspace(self, n: int) -> _Workspace:
        ws = self._workspaces.get(n)
        if ws is None:
            # Hidden buffers are column-major: a layer's activations A[:, :-1] (all but
            # the ones column) are then one contiguous block, so every elementwise
            # step runs on contiguous memory, and BLAS takes either order as it is.
            inputs = []
            for width in self.layer_sizes[1:-1]:
                buf = np.empty((n, width + 1), self.dtype, order="F")
                buf[:, -1] = 1
                inputs.append(buf)
            outputs = [np.empty((n, w), self.dtype, order="F") for w in self.layer_sizes[1:-1]]
            outputs.append(np.empty((n, self.layer_sizes[-1]), self.dtype))  # beside Y's rows
            deltas = [np.empty((n, w), self.dtype, order="F") for w in self.layer_sizes[1:-1]]
            ws = self._workspaces[n] = _Workspace(inputs, outputs, deltas, [],
                                                  [a[:, :-1] for a in inputs],
                                                  [a.T for a in inputs])
        return ws

    def forward_augmented(self, Xa: np.ndarray,
                          rng: np.random.Generator | None = None) -> np.ndarray:
        """Head output for a batch from ``augment``, in a buffer reused by the next call.

        With ``rng`` and dropout > 0, hidden units are dropped (inverted dropout:
        kept units are scaled by 1/keep, so the expected activation is unchanged).
        """
        ws = self._workspace(len(Xa))
        blocks, last = self.blocks, len(self.blocks) - 1
        dropout = self.dropout if rng is not None else 0.0
        keep = 1.0 - dropout
        ws.masks.clear()
        A = Xa
        for i in range(last):
            Z = ws.outputs[i]
            np.matmul(A, blocks[i], out=Z)
            A = ws.inputs[i]
            if dropout:
                self._act(Z, Z)  # kept whole: the derivative needs f(Z) before dropout
                # drawn unit by unit (column-major, the buffers' order)
                draws = rng.random(Z.shape[::-1], dtype=self.dtype).T  # type: ignore[union-attr]
                mask = (draws < keep).astype(self.dtype)
                mask *= 1.0 / keep
                ws.masks.append(mask)
                np.multiply(Z, mask, out=ws.hidden[i])
            else:
                self._act(Z, ws.hidden[i])
        P = ws.outputs[last]
        np.matmul(A, blocks[last], out=P)
        self.head.activate(P)
        return P

    def backprop(self, Xa: np.ndarray, Y: np.ndarray,
                 rng: np.random.Generator | None = None) -> float:
        """Write the gradient of the *mean* loss into ``self.grad``; return the summed loss.

        ``Xa`` is a batch from ``augment`` and ``Y`` its targets from
        ``encode_targets``; ``rng`` turns dropout on (see ``forward_augmented``).
        """
        n = len(Xa)
        P = self.forward_augmented(Xa, rng)
        ws = self._workspaces[n]
        loss = self.head.loss(P, Y)
        delta = P  # the head's output is no longer needed: it becomes d(loss)/dZ
        delta -= Y
        delta *= self.head.grad_scale / (n * P.shape[1] if self.head.mean_over_outputs else n)
        grads, weights_t, masks = self.grad_blocks, self._weights_t, ws.masks
        for i in range(len(grads) - 1, 0, -1):
            np.matmul(ws.inputs_t[i - 1], delta, out=grads[i])
            prev = ws.deltas[i - 1]
            np.matmul(delta, weights_t[i], out=prev)
            if masks:
                prev *= masks[i - 1]
                self._act_grad(ws.outputs[i - 1], prev)  # f(Z), kept whole
            else:
                self._act_grad(ws.hidden[i - 1], prev)
            delta = prev
        np.matmul(Xa.T, delta, out=grads[0])
        return loss


def proba_from_output(P: np.ndarray, task: str) -> np.ndarray:
    """A classifier head's output as one probability per class (binary: two columns)."""
    return np.hstack([1 - P, P]) if task == "binary" else P


def predict_from_output(P: np.ndarray, task: str) -> np.ndarray:
    """A head's output as class indices for classifiers, values for regressors (1-d
    when one output): what ``Network.predict`` and ``Ensemble.predict`` return."""
    if task == "multiclass":
        return P.argmax(axis=1)
    if task == "binary":
        return (P[:, 0] > 0.5).astype(np.intp)
    return P[:, 0] if P.shape[1] == 1 else P
