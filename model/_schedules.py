"""Learning-rate schedules: pure functions of the epoch.

Each takes (epoch, base_lr, epochs, decay, step, min_lr) and returns the rate used
for that epoch (epochs count from 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int, float, int, float, int, float], float]


def constant(epoch: int, lr: float, epochs: int, decay: float, step: int, min_lr: float) -> float:
    return lr


def exponential(epoch: int, lr: float, epochs: int, decay: float, step: int,
                min_lr: float) -> float:
    return max(min_lr, lr * decay**epoch)


def step_decay(epoch: int, lr: float, epochs: int, decay: float, step: int,
               min_lr: float) -> float:
    return max(min_lr, lr * decay ** (epoch // step))


def cosine(epoch: int, lr: float, epochs: int, decay: float, step: int, min_lr: float) -> float:
    progress = min(epoch / max(epochs - 1, 1), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


SCHEDULES: dict[str, Schedule] = {
    "constant": constant,
    "exponential": exponential,
    "step": step_decay,
    "cosine": cosine,
}
