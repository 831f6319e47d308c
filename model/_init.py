"""Weight initialisers: name -> function(rng, fan_in, fan_out, dtype) -> weights.

Each scheme has the variance its name promises:
glorot (Xavier) 2/(fan_in+fan_out), he (Kaiming) 2/fan_in. A uniform U(-a, a) has
variance a^2/3, so the glorot limit is sqrt(6/(fan_in+fan_out)) and the he limit
sqrt(6/fan_in) (the article used sqrt(2/fan_in), a third of the intended variance).
Biases always start at zero.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Initializer = Callable[[np.random.Generator, int, int], np.ndarray]


def _zeros(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return np.zeros((fan_in, fan_out))


def _random(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    # The article's np.random.randn: standard normal, whatever the layer width.
    return rng.standard_normal((fan_in, fan_out))


def _uniform(rng: np.random.Generator, shape: tuple[int, int], variance: float) -> np.ndarray:
    limit = np.sqrt(3.0 * variance)
    return rng.uniform(-limit, limit, shape)


def _normal(rng: np.random.Generator, shape: tuple[int, int], variance: float) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(variance), shape)


def _glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return _uniform(rng, (fan_in, fan_out), 2.0 / (fan_in + fan_out))


def _glorot_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return _normal(rng, (fan_in, fan_out), 2.0 / (fan_in + fan_out))


def _he_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return _uniform(rng, (fan_in, fan_out), 2.0 / fan_in)


def _he_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return _normal(rng, (fan_in, fan_out), 2.0 / fan_in)


INITIALIZERS: dict[str, Initializer] = {
    "zeros": _zeros,
    "random": _random,
    "glorot_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "he_uniform": _he_uniform,
    "he_normal": _he_normal,
}

# The variance each scheme promises (None: not a variance-scaling scheme).
EXPECTED_VARIANCE: dict[str, Callable[[int, int], float]] = {
    "zeros": lambda fan_in, fan_out: 0.0,
    "random": lambda fan_in, fan_out: 1.0,
    "glorot_uniform": lambda fan_in, fan_out: 2.0 / (fan_in + fan_out),
    "glorot_normal": lambda fan_in, fan_out: 2.0 / (fan_in + fan_out),
    "he_uniform": lambda fan_in, fan_out: 2.0 / fan_in,
    "he_normal": lambda fan_in, fan_out: 2.0 / fan_in,
}
