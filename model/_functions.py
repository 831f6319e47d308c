"""Hidden activations, their derivatives, and the output heads with their losses.

Every function works in place on preallocated buffers. Derivatives are written in
terms of the activation's *output* ``H`` (as scikit-learn does), so the forward
pass never has to keep the pre-activations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray

LEAKY_SLOPE = 0.01  # negative-side slope of leaky_relu


def _sigmoid(Z: Array, out: Array) -> None:
    # Split by sign so that exp never overflows: 1/(1+e^-z) for z>=0, e^z/(1+e^z) otherwise.
    pos = Z >= 0  # before ``out`` (which may be Z) is overwritten
    np.negative(np.abs(Z), out=out)
    np.exp(out, out=out)  # e^-|z| in (0, 1]
    num = np.where(pos, 1.0, out).astype(out.dtype, copy=False)
    out += 1.0
    np.divide(num, out, out=out)


def _tanh(Z: Array, out: Array) -> None:
    np.tanh(Z, out=out)


# NumPy's maximum against a scalar takes a loop ~3x slower per element than against
# an array while the data is in cache (NumPy 2.4: 3.8 against 1.3 us for 64 x 128
# float32); from a few million elements on, memory bound, the scalar is as fast.
ZEROS_MAX = 1 << 21
_zero_buffers: dict[np.dtype, Array] = {}
_zero_views: dict[tuple[tuple[int, ...], np.dtype, bool], Array] = {}


def _zeros_like(Z: Array) -> Array | float:
    """A read-only zero array of Z's shape, dtype and order: a view of one buffer per dtype."""
    key = (Z.shape, Z.dtype, Z.flags.f_contiguous)
    zeros = _zero_views.get(key)
    if zeros is None:
        if Z.size > ZEROS_MAX:
            return 0.0
        buf = _zero_buffers.get(Z.dtype)
        if buf is None or buf.size < Z.size:
            buf = np.zeros(min(max(Z.size, 2 * (0 if buf is None else buf.size), 1 << 16),
                               ZEROS_MAX), Z.dtype)
            buf.flags.writeable = False
            _zero_buffers[Z.dtype] = buf
            _zero_views.clear()  # views of the old buffers go with them
        if len(_zero_views) >= 64:  # shapes come and go (inference on any batch)
            _zero_views.clear()
        zeros = _zero_views[key] = buf[:Z.size].reshape(Z.shape, order="F" if key[2] else "C")
    return zeros


def _relu(Z: Array, out: Array) -> None:
    np.maximum(Z, _zeros_like(Z), out=out)


def _leaky_relu(Z: Array, out: Array) -> None:
    np.maximum(Z, Z * LEAKY_SLOPE, out=out)


# Each activation writes f(Z) into ``out`` (which may be Z itself).
ACTIVATIONS: dict[str, Callable[[Array, Array], None]] = {
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
}


def _sigmoid_grad(H: Array, delta: Array) -> None:
    delta *= H
    delta *= 1 - H


def _tanh_grad(H: Array, delta: Array) -> None:
    delta *= 1 - H * H


def _relu_grad(H: Array, delta: Array) -> None:
    delta *= H > 0


def _leaky_relu_grad(H: Array, delta: Array) -> None:
    delta *= np.where(H > 0, 1.0, LEAKY_SLOPE).astype(delta.dtype, copy=False)


# Each derivative multiplies the back-propagated ``delta`` by f'(Z), given H = f(Z).
DERIVATIVES: dict[str, Callable[[Array, Array], None]] = {
    "sigmoid": _sigmoid_grad,
    "tanh": _tanh_grad,
    "relu": _relu_grad,
    "leaky_relu": _leaky_relu_grad,
}

EPS = {np.dtype(np.float32): 1e-7, np.dtype(np.float64): 1e-15}


def _softmax(Z: Array) -> None:
    # Any per-row shift keeps softmax exact. The batch's largest logit costs two
    # fast whole-array reductions instead of a slow per-row one, and is safe when
    # all logits lie within 80 of each other (exp(-80) is still a normal float32);
    # otherwise a row could underflow to all zeros, so shift each row by its own max.
    top = Z.max()
    if top - Z.min() < 80.0:
        Z -= top
    else:
        Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= (Z @ np.ones(Z.shape[1], Z.dtype))[:, None]


def _cross_entropy(P: Array, Y: Array) -> float:
    """Summed categorical cross-entropy of probabilities P against one-hot Y."""
    return -float(np.vdot(Y, np.log(np.maximum(P, EPS[P.dtype]))))


def _sigmoid_out(Z: Array) -> None:
    _sigmoid(Z, Z)


def _log_loss(P: Array, Y: Array) -> float:
    """Summed binary log loss of probabilities P against 0/1 targets Y."""
    eps = EPS[P.dtype]
    Pc = np.clip(P, eps, 1 - eps)
    return -float((Y * np.log(Pc) + (1 - Y) * np.log1p(-Pc)).sum())


def _identity(Z: Array) -> None:
    pass


def _squared_error(P: Array, Y: Array) -> float:
    """Summed squared error over samples, averaged over output columns."""
    D = P - Y
    return float(np.vdot(D, D)) / P.shape[1]


@dataclass(frozen=True)
class Head:
    """An output layer: its activation, its loss and the kind of task it serves.

    For all three heads the gradient of the summed loss with respect to the
    output pre-activation is ``scale * (P - Y)``: softmax with cross-entropy,
    sigmoid with log loss and identity with squared error are canonical pairs.
    """

    name: str
    loss_name: str
    task: str  # "multiclass", "binary" or "regression"
    activate: Callable[[Array], None]
    loss: Callable[[Array, Array], float]
    # d(summed loss)/dZ = grad_scale * (P - Y), divided by the output width when
    # the loss averages over output columns (squared error).
    grad_scale: float
    mean_over_outputs: bool = False

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"


HEADS: dict[str, Head] = {
    "softmax": Head("softmax", "categorical_crossentropy", "multiclass", _softmax,
                    _cross_entropy, 1.0),
    "sigmoid": Head("sigmoid", "log_loss", "binary", _sigmoid_out, _log_loss, 1.0),
    "identity": Head("identity", "mse", "regression", _identity, _squared_error, 2.0, True),
}

# The article names the output by its loss; both spellings reach the same head.
OUTPUT_ALIASES: dict[str, str] = {
    **{name: name for name in HEADS},
    "categorical_crossentropy": "softmax",
    "log_loss": "sigmoid",
    "binary_crossentropy": "sigmoid",
    "mse": "identity",
    "linear": "identity",
}
