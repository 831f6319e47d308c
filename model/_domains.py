"""``Domain``: a hyperparameter's valid values. The model's config classes declare one per
field (``TrainConfig``'s fields, ``NETWORK_DOMAINS``); the model checks them and the
search space reads them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("int", "float", "name", "bool")


@dataclass(frozen=True)
class Domain:
    """The values one hyperparameter may take.

    Numbers are finite and never bools; numpy integers count as ints. A number
    may also take the names in ``extra`` (batch_size "full"), and ``optional``
    allows None (patience: no early stopping).
    """

    kind: str  # "int", "float", "name" or "bool"
    low: float | None = None  # smallest valid value (numbers); None: unbounded
    high: float | None = None  # largest valid value (numbers); None: unbounded
    low_open: bool = False  # the low end itself is invalid (e.g. learning_rate > 0)
    high_open: bool = False
    choices: tuple[Any, ...] = ()  # valid names ("name" kind)
    extra: tuple[Any, ...] = ()  # non-numeric values a number may also take ("full")
    optional: bool = False  # None is valid too

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, "
                             f"but got kind={self.kind!r}.")

    def describe(self) -> str:
        """E.g. "an integer in [1, inf) or 'full'", "one of adam, momentum, sgd"."""
        if self.kind == "name":
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.kind == "bool":
            text = "true or false"
        else:
            text = "an integer" if self.kind == "int" else "a number"
            if self.low is not None or self.high is not None:  # an infinite end is open
                lo = "(" if self.low_open or self.low is None else "["
                hi = ")" if self.high_open or self.high is None else "]"
                low = "-inf" if self.low is None else self.low
                high = "inf" if self.high is None else self.high
                text += f" in {lo}{low}, {high}{hi}"
            text += "".join(f" or {e!r}" for e in self.extra)
        return text + (" or None" if self.optional else "")

    def valid(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind == "name":
            return isinstance(value, str) and value in self.choices
        if self.kind == "bool":
            return isinstance(value, bool | np.bool_)
        if isinstance(value, str):
            return value in self.extra
        numbers = (int, np.integer) if self.kind == "int" else (int, float, np.integer,
                                                                np.floating)
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers) \
                or not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return bool(self.high is None or value < self.high
                    or (not self.high_open and value == self.high))

    def check(self, name: str, value: Any) -> None:
        """Raise ValueError naming the field, the valid values and the bad value."""
        if not self.valid(value):
            raise ValueError(f"{name} must be {self.describe()}, but got {name}={value!r}.")
