"""Domains: what each hyperparameter may be, declared once and checked by the constructors."""

import dataclasses
import inspect
import math

import numpy as np
import pytest

from nnsearch.model import (
    LAYER_WIDTH,
    MAX_WIDTH,
    NETWORK_DOMAINS,
    TRAIN_DOMAINS,
    Domain,
    Network,
    TrainConfig,
)


@pytest.mark.parametrize(("domain", "text"), [
    (Domain("int", 1, extra=("full",)), "an integer in [1, inf) or 'full'"),
    (Domain("name", choices=("adam", "momentum", "sgd")), "one of adam, momentum, sgd"),
    (Domain("float", 0.0, 1.0, high_open=True), "a number in [0.0, 1.0)"),
    (Domain("float", 0.0, low_open=True), "a number in (0.0, inf)"),
    (Domain("int", 1, optional=True), "an integer in [1, inf) or None"),
    (Domain("int"), "an integer"),
    (Domain("bool"), "true or false"),
    (LAYER_WIDTH, f"an integer in [1, {MAX_WIDTH}]"),
])
def test_describe(domain, text):
    assert domain.describe() == text


@pytest.mark.parametrize(("domain", "good", "bad"), [
    (Domain("int", 1), [1, 7, np.int64(3)], [0, 2.0, True, "1", None, math.inf]),
    (Domain("float", 0.0, low_open=True), [1e-9, 3, np.float32(0.5)],
     [0.0, -1.0, math.nan, math.inf, False, "0.1"]),
    (Domain("float", 0.0, 1.0, high_open=True), [0.0, 0.999], [1.0, -1e-12]),
    (Domain("int", 1, extra=("full",)), ["full", 64], ["half", None]),
    (Domain("int", 1, optional=True), [None, 1], [0, "none"]),
    (Domain("name", choices=("a", "b")), ["a"], ["c", 1, None]),
    (Domain("bool"), [True, False, np.bool_(True)], [0, 1, "true", None]),
])
def test_valid(domain, good, bad):
    assert all(domain.valid(v) for v in good)
    assert not any(domain.valid(v) for v in bad)


def test_check_names_field_domain_and_value():
    with pytest.raises(ValueError, match=r"^learning_rate must be a number in \(0\.0, inf\), "
                                         r"but got learning_rate=0\.0\.$"):
        TrainConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match=r"kind must be one of"):
        Domain("complex")


def test_every_train_field_declares_a_domain_its_default_fits():
    for f in dataclasses.fields(TrainConfig):
        assert TRAIN_DOMAINS[f.name] is f.metadata["domain"]
        assert f.metadata["domain"].valid(f.default), f.name
    assert list(TRAIN_DOMAINS) == [f.name for f in dataclasses.fields(TrainConfig)]


def test_network_defaults_fit_their_domains():
    params = inspect.signature(Network).parameters
    for name, domain in NETWORK_DOMAINS.items():
        assert domain.valid(params[name].default), name


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"patience": None}, None),
    ({"batch_size": "full"}, None),
    ({"nesterov": True}, None),
    ({"epochs": np.int64(5)}, None),
    ({"nesterov": 1}, "nesterov"),
    ({"momentum": 1.0}, "momentum"),
    ({"momentum": False}, "momentum"),
    ({"l2": math.nan}, "l2"),
    ({"log_every": -1}, "log_every"),
    ({"seed": 1.5}, "seed"),
])
def test_train_config_boundaries(kwargs, field):
    if field is None:
        TrainConfig(**kwargs)
    else:
        with pytest.raises(ValueError, match=f"^{field} must be"):
            TrainConfig(**kwargs)


def test_widths_are_capped():
    assert Network([4, MAX_WIDTH, 2], dtype="float32").layer_sizes[1] == MAX_WIDTH
    with pytest.raises(ValueError, match=rf"layer_sizes must be an integer in \[1, {MAX_WIDTH}\]"):
        Network([4, MAX_WIDTH + 1, 2])
