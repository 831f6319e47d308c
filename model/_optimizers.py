"""Optimizers that own their state and update one flat parameter buffer.

The network keeps every weight and bias in one contiguous array, so a step is a
handful of whole-buffer operations whatever the depth. Optimizers never see the
network: they get the flat parameters, the flat gradient and the learning rate.
"""

from __future__ import annotations

import math

import numpy as np


class SGD:
    def __init__(self, size: int, dtype: np.dtype, **_: float) -> None:
        self._tmp = np.empty(size, dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        np.multiply(grad, lr, out=self._tmp)
        params -= self._tmp


class Momentum:
    """Heavy-ball momentum, or Nesterov's look-ahead form: v = mu*v - lr*g."""

    def __init__(self, size: int, dtype: np.dtype, momentum: float = 0.9,
                 nesterov: bool = False, **_: float) -> None:
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = np.zeros(size, dtype)
        self._tmp = np.empty(size, dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        v, tmp = self.velocity, self._tmp
        np.multiply(grad, lr, out=tmp)
        v *= self.momentum
        v -= tmp
        if self.nesterov:  # p += mu*v_new - lr*g
            params -= tmp
            np.multiply(v, self.momentum, out=tmp)
        else:
            tmp = v
        params += tmp


class Adam:
    """Adam (Kingma & Ba, 2015).

    The moments are kept unnormalised, m' = m/(1-b1) and v' = v/(1-b2), so that
    each update is m' = b1*m' + g and v' = b2*v' + g^2, and the constant factors
    and bias corrections fold into one step size and one epsilon:
    lr * m_hat / (sqrt(v_hat) + eps) = step * m' / (sqrt(v') + eps').
    """

    def __init__(self, size: int, dtype: np.dtype, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, **_: float) -> None:
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.t = 0
        self.m = np.zeros(size, dtype)
        self.v = np.zeros(size, dtype)
        self._tmp = np.empty(size, dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        self.t += 1
        b1, b2, m, v, tmp = self.beta1, self.beta2, self.m, self.v, self._tmp
        bias1, bias2 = 1 - b1**self.t, 1 - b2**self.t
        # Python floats, so NumPy keeps the float32 loops (a NumPy scalar would upcast).
        step = float(lr * (1 - b1) / bias1 * math.sqrt(bias2 / (1 - b2)))
        eps = float(self.epsilon * math.sqrt(bias2) / math.sqrt(1 - b2))
        m *= b1
        m += grad
        v *= b2
        np.square(grad, out=tmp)
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += eps
        np.divide(m, tmp, out=tmp)
        tmp *= step
        params -= tmp


OPTIMIZERS: dict[str, type[SGD] | type[Momentum] | type[Adam]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "adam": Adam,
}
