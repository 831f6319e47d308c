"""Optimizers that own their state and update one flat parameter buffer.

The network keeps every weight and bias in one contiguous array, so a step is a
handful of whole-buffer operations whatever the depth. Optimizers never see the
network: they get the flat parameters, the flat gradient and the learning rate.

A state that decays geometrically (momentum's velocity, Adam's first moment of a
weight whose gradient is zero: a dead ReLU unit's) falls below the smallest
normal float within a few hundred steps. Arithmetic on such subnormal numbers is
many times slower on x86 CPUs: epochs of a [256, 256, 256] network on digits
took 2.2x as long from epoch ~40 on (``bench/network.py``). ``_Flush`` sets such
values to zero before they get there: values below 1e8 times the smallest normal
number (1.2e-30 in float32), far below anything an update could feel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class _Flush:
    """Zeroes |x| < tiny * 1e8 in a decaying state every few steps: half the steps the
    state takes to decay from there to ``tiny`` (the smallest normal number), at the
    fastest of its ``decays`` that makes it fall geometrically (0 < decay < 1)."""

    MARGIN = 1e8

    def __init__(self, size: int, dtype: np.dtype, *decays: float) -> None:
        info = np.finfo(dtype)
        self.threshold = float(info.tiny) * self.MARGIN
        # A decay of 0 or 1 makes no geometric fall (the state is the gradient, or
        # never shrinks); the fastest of the others sets the pace.
        falling = [d for d in decays if 0 < d < 1]
        self.every = max(1, int(math.log(self.MARGIN) / -math.log(min(falling)) / 2)) \
            if falling else 0
        self.steps = 0
        self._abs = np.empty(size, dtype) if self.every else None
        self._small = np.empty(size, bool) if self.every else None

    def __call__(self, state: np.ndarray, second: np.ndarray | None = None) -> None:
        """Flush ``state``; ``second`` (Adam's v) only where ``state`` is zero, so that
        a kept first moment is never divided by a zeroed second one."""
        if not self.every:
            return
        self.steps += 1
        if self.steps % self.every:
            return
        assert self._abs is not None and self._small is not None
        np.abs(state, out=self._abs)
        np.less(self._abs, self.threshold, out=self._small)
        np.putmask(state, self._small, 0)
        if second is not None:
            np.abs(second, out=self._abs)
            np.less(self._abs, self.threshold, out=self._small)
            self._small &= state == 0
            np.putmask(second, self._small, 0)


class SGD:
    def __init__(self, size: int, dtype: np.dtype, **_: float) -> None:
        self._tmp = np.empty(size, dtype)

    def state(self) -> dict[str, Any]:
        """What a resumed training needs to step on exactly as this one would (arrays
        are the optimizer's own: copy them to keep them)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Take back what ``state`` gave."""

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
        self._flush = _Flush(size, dtype, momentum)

    def state(self) -> dict[str, Any]:
        return {"velocity": self.velocity, "flush_steps": self._flush.steps}

    def load_state(self, state: dict[str, Any]) -> None:
        load_array(self.velocity, state["velocity"], "velocity")
        self._flush.steps = int(state["flush_steps"])

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
        self._flush(v)


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
        self._flush = _Flush(size, dtype, beta1, beta2)

    def state(self) -> dict[str, Any]:
        return {"t": self.t, "m": self.m, "v": self.v, "flush_steps": self._flush.steps}

    def load_state(self, state: dict[str, Any]) -> None:
        load_array(self.m, state["m"], "m")
        load_array(self.v, state["v"], "v")
        self.t, self._flush.steps = int(state["t"]), int(state["flush_steps"])

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
        self._flush(m, v)


def load_array(into: np.ndarray, value: Any, name: str) -> None:
    """Copy a saved state's array ``value`` into ``into``: the same dtype and shape, else
    ValueError naming it."""
    value = np.asarray(value)
    if value.shape != into.shape or value.dtype != into.dtype:
        raise ValueError(f"the optimizer's {name} must be {into.dtype} of shape "
                         f"{into.shape}, but got {value.dtype} of shape {value.shape}.")
    np.copyto(into, value)


OPTIMIZERS: dict[str, type[SGD] | type[Momentum] | type[Adam]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "adam": Adam,
}
