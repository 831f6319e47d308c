"""Warm starts: [[enqueue]] trials run first and exactly once; bad ones are refused."""

import pytest
from optuna.trial import TrialState

from nnsearch.search.enqueue import to_params
from nnsearch.search.errors import UsageError
from nnsearch.search.space import parse_param
from tests.helpers import run_cli, write_study
from tests.search.test_workers import trials

ENQUEUE = """
[[enqueue]]
n_layers = 2
width = [31, 9]
activation = "tanh"
learning_rate = 0.005

[[enqueue]]
width = 17
dropout = 0.15

[[enqueue]]                  # the same again: a second trial, with its own seed
width = 17
dropout = 0.15
"""


def test_enqueued_trials_run_first_and_once_with_four_workers(tmp_path):
    study = write_study(tmp_path / "warm.toml", name="warm", trials=8, epochs=10)
    study.write_text(study.read_text() + ENQUEUE)
    res = run_cli("run", str(study), "--workers", "4", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    # Run again with a larger budget: the study exists, nothing is enqueued again.
    res = run_cli("run", str(study), "--workers", "4", "--trials", "12", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    ts = trials(f"sqlite:///{tmp_path / 'warm.db'}", "warm")
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ts) == 12
    first = [t for t in ts if t.params.get("width_l0") == 31 and t.params.get("width_l1") == 9
             and t.params.get("activation") == "tanh" and t.params.get("learning_rate") == 0.005]
    second = [t for t in ts if t.params.get("dropout") == 0.15
              and all(t.params[f"width_l{i}"] == 17 for i in range(t.params["n_layers"]))]
    assert [t.number for t in first] == [0] and first[0].params["n_layers"] == 2
    assert [t.number for t in second] == [1, 2]
    # The sampler filled in what the second one left out, within the space.
    assert 1 <= second[0].params["n_layers"] <= 2 and "learning_rate" in second[0].params
    assert second[0].user_attrs["training"]["seed"] != second[1].user_attrs["training"]["seed"]


SPACE = {name: parse_param(name, raw, "s") for name, raw in {
    "n_layers": {"low": 1, "high": 3},
    "width": {"low": 8, "high": 64, "step": 8},
    "activation": ["relu", "tanh"],
    "optimizer": ["adam", "momentum"],
    "momentum": {"low": 0.5, "high": 0.99},
    "clip_type": ["none", "norm"],
    "clip_value": {"low": 0.1, "high": 10.0, "log": True},
    "dropout": 0.1,
}.items()}


def test_values_are_stored_as_the_space_samples_them():
    params = to_params({"n_layers": 2, "width": [16, 8], "momentum": 0.9,
                        "optimizer": "momentum", "clip_type": "norm", "clip_value": 2}, SPACE, "w")
    assert params == {"n_layers": 2, "width_l0": 16, "width_l1": 8, "momentum": 0.9,
                      "optimizer": "momentum", "clip_type": "norm", "clip_value": 2.0}
    assert type(params["clip_value"]) is float  # as suggest_float gives it
    assert type(params["n_layers"]) is int
    batch = {"batch_size": parse_param("batch_size", [32, 64], "s")}
    assert type(to_params({"batch_size": 64}, batch, "w")["batch_size"]) is int


def test_a_width_for_every_layer_the_sampler_may_pick():
    assert to_params({"width": 16}, SPACE, "w") == {f"width_l{i}": 16 for i in range(3)}
    assert to_params({"n_layers": 2, "width": [8, 64], "optimizer": "momentum",
                      "momentum": 0.9}, SPACE, "w") == {
        "n_layers": 2, "width_l0": 8, "width_l1": 64, "optimizer": "momentum", "momentum": 0.9}


@pytest.mark.parametrize(("table", "message"), [
    ({}, "must be a table of parameters"),
    ({"depth": 2}, "unknown parameter 'depth'; the searched ones are: n_layers, width"),
    ({"dropout": 0.2}, "dropout: not searched (space.dropout is fixed at 0.1)"),
    ({"l2": 0.01}, "l2: not searched (space.l2 is not in [space])"),
    ({"n_layers": 4}, "n_layers: 4 is outside the space's range [1, 3]"),
    ({"n_layers": 1.5}, "n_layers: n_layers takes whole numbers, but got 1.5"),
    ({"n_layers": 2.0}, "n_layers: n_layers takes whole numbers, but got 2.0"),
    ({"n_layers": 1, "width": [8.0]}, "width takes whole numbers"),
    ({"activation": "gelu"}, "activation: 'gelu' is not one of the space's choices"),
    ({"width": 12}, "width: 12 is not on the space's grid"),
    ({"width": [8, 16]}, "a list of widths needs the depth; set n_layers"),
    ({"n_layers": 1, "width": [8, 16]}, "width: 2 width(s) for 1 hidden layer(s)"),
    ({"momentum": 0.9}, "momentum: applies only when optimizer is momentum; set optimizer"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum: does not apply: it is used when "
                                              "optimizer is momentum, and optimizer is 'adam'"),
    ({"clip_type": "none", "clip_value": 1.0}, "clip_value: does not apply"),
    ({"activation": True}, "True is not one of the space's choices"),
    ({"momentum": "0.9", "optimizer": "momentum"}, "must be a number in the space's range"),
])
def test_a_bad_enqueued_trial_is_one_clear_error(table, message):
    with pytest.raises(UsageError) as info:
        to_params(table, SPACE, "f.toml: [[enqueue]] 1")
    assert message in str(info.value), str(info.value)
    assert str(info.value).startswith("f.toml: [[enqueue]] 1: ")
