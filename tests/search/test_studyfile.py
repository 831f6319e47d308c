"""Study files: the shipped ones load; errors name the file, key, value and valid values."""

import dataclasses
import tomllib
from pathlib import Path

import optuna
import pytest

from nnsearch.model import LAYER_WIDTH, NETWORK_DOMAINS, TRAIN_DOMAINS, Network, TrainConfig
from nnsearch.search.errors import UsageError
from nnsearch.search.space import (
    CONDITIONS,
    DEFAULTS,
    PARAMS,
    TRAIN_PARAMS,
    build_configs,
    parse_param,
    sample,
)
from nnsearch.search.studyfile import METRICS, load_study_file, parse_study
from tests.helpers import run_cli, write_study

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["digits", "article"])
def test_shipped_study_files_load(name):
    spec = load_study_file(ROOT / "studies" / f"{name}.toml")
    assert spec.name == name
    metric = {"digits": "val_loss", "article": "val_accuracy"}[name]
    assert spec.metric == metric and spec.direction == METRICS[metric][0]


def test_the_default_study_searches_the_whole_space():
    """Depth 1-4, widths, activation, all six inits, dropout, learning rate, optimizer,
    L2, every clipping with its threshold, and batch size (issue #13)."""
    from nnsearch.model import CLIP_TYPES, INITIALIZERS

    s = load_study_file(ROOT / "studies" / "digits.toml").space
    assert (s["n_layers"].low, s["n_layers"].high) == (1, 4)
    assert set(s["init"].choices or ()) == set(INITIALIZERS)
    assert set(s["clip_type"].choices or ()) == set(CLIP_TYPES)
    assert set(s["optimizer"].choices or ()) == {"adam", "momentum", "sgd"}
    assert len(s["activation"].choices or ()) >= 3 and len(s["batch_size"].choices or ()) >= 2
    for name in ("width", "dropout", "learning_rate", "l2", "clip_value"):
        assert s[name].kind == "range", name


def test_article_space_is_the_articles():
    spec = load_study_file(ROOT / "studies" / "article.toml")
    s = spec.space
    assert (s["n_layers"].low, s["n_layers"].high) == (1, 10)
    assert (s["width"].low, s["width"].high) == (32, 128)
    assert (s["dropout"].low, s["dropout"].high) == (0.0, 0.5)
    assert (s["learning_rate"].low, s["learning_rate"].high, s["learning_rate"].log) == \
        (1e-3, 1e-1, True)
    assert set(s["init"].choices) == {"glorot_uniform", "glorot_normal", "he_uniform",
                                      "he_normal", "random"}
    assert set(s["clip_type"].choices) == {"value", "norm"}
    assert s["clip_value"].low > 0 and s["clip_value"].high == 1.0
    assert s["activation"].fixed == "sigmoid" and s["batch_size"].fixed == "full"
    text = (ROOT / "studies" / "article.toml").read_text()
    assert "10,000" in text and "pruning" in text


def _minimal(**space):
    return {"study": {"name": "t"}, "space": space}


@pytest.mark.parametrize(("raw", "pattern"), [
    ({"study": {"name": "t"}, "spaces": {}}, r"unknown section \[spaces\]"),
    ({"study": {"name": "t", "metrik": "x"}}, r"unknown key study\.'metrik'; valid keys: name"),
    (_minimal(learning_rate={"low": 0.1, "high": 0.01}), r"space\.learning_rate: the range is "
     r"reversed.*low=0\.1, high=0\.01"),
    (_minimal(activation=["relu", "swish"]), r"space\.activation: invalid choice 'swish'; "
     r"valid: one of leaky_relu, relu, sigmoid, tanh"),
    (_minimal(init="xavier"), r"space\.init: invalid value 'xavier'; valid: one of"),
    (_minimal(dropout={"low": 0.0, "high": 1.0}), r"space\.dropout\.high: invalid value 1\.0"),
    (_minimal(learning_rate={"low": 0.0, "high": 0.1, "log": True}), r"learning_rate\.low"),
    (_minimal(l2={"low": 0.0, "high": 0.1, "log": True}), r"log range needs low > 0"),
    (_minimal(widht=32), r"unknown key space\.'widht'; valid keys: n_layers, width"),
    (_minimal(n_layers={"low": 1}), r"needs both low and high"),
    (_minimal(activation={"low": 1, "high": 2}), r"a range needs a numeric parameter"),
    ({"study": {"name": "t"}, "sampler": {"name": "anneal"}}, r"unknown sampler 'anneal'; "
     r"valid: tpe, random, cmaes, gp, qmc"),
    ({"study": {"name": "t"}, "pruner": {"name": "median", "patience": 3}},
     r"unknown key pruner\.'patience' for pruner 'median'; valid keys: name, n_startup"),
    ({"study": {"name": "t"}, "sampler": {"name": "tpe", "seed": 1}}, r"study\.seed"),
    ({"study": {"name": "t", "metric": "val_rmse"}}, r"'val_rmse' does not apply to a "
     r"classification task"),
    ({"study": {"name": "t", "metric": "val_accuracy", "direction": "minimize"}},
     r"val_accuracy is to maximize"),
    ({"study": {"name": "t"}, "data": {"source": "mnist"}}, r"unknown dataset 'mnist'"),
    ({"study": {"name": "t"}, "data": {"source": "x.csv"}}, r"data\.target is required"),
    ({"study": {"name": "t"}, "data": {"validation": 0.5, "test": 0.45}}, r"at least 10%"),
    ({"study": {"name": "t"}, "data": {"source": "iris", "shift": 1}},
     r"data\.shift needs data\.image_shape"),
    ({"study": {"name": "t"}, "data": {"shift": -1}}, r"data\.shift must be an integer >= 0"),
    ({"study": {"name": "t"}, "data": {"image_shape": [8]}}, r"data\.image_shape must be "
     r"\[height, width\]"),
    ({"study": {"name": "t"}, "data": {"image_shape": [8, 0]}}, r"two positive integers"),
    ({"study": {"name": "t"}, "data": {"numeric": "robust"}}, r"data\.numeric must be one "
     r"of 'standard', 'quantile', but got 'robust'"),
    ({"study": {"name": "t"}, "data": {"numeric": "quantile"}},  # digits: 8 x 8 images
     r"data\.numeric = \"quantile\" is for a table's columns, not an image's pixels"),
    ({"study": {}}, r"study\.name is required"),
    ({"study": {"name": "t"}, "budget": {"trials": 0}}, r"budget\.trials must be >= 1"),
    ({"study": {"name": "t"}, "pruner": {"name": "median", "n_warmup_steps": -1}},
     r"\[pruner\] median"),
    # accepted by validation once, then crashed or was taken wrongly at run time
    (_minimal(width={"low": 8, "high": 32, "step": 0.5}), r"width\.step: width takes "
     r"integers, so its step must be a whole number, but got step=0\.5"),
    (_minimal(width={"low": 8, "high": 32, "step": 2.5}), r"whole number, but got step=2\.5"),
    ({"study": {"name": "t", "seed": -1}}, r"study\.seed must be a seed in \[0, 2\*\*32 - 1\]"),
    ({"study": {"name": "t", "seed": 2**32}}, r"study\.seed must be a seed"),
    ({"study": {"name": "t"}, "data": {"seed": -1}}, r"data\.seed must be a seed"),
    ({"study": {"name": "t"}, "sampler": {"name": "tpe", "n_startup_trials": "ten"}},
     r"sampler\.n_startup_trials must be int, but got 'ten'"),
    ({"study": {"name": "t"}, "pruner": {"name": "median", "n_startup_trials": 2.5}},
     r"pruner\.n_startup_trials must be int, but got 2\.5"),
    ({"study": {"name": "t"}, "sampler": {"name": "tpe", "multivariate": 1}},
     r"sampler\.multivariate must be bool, but got 1"),
    ({"study": {"name": "t"}, "pruner": {"name": "hyperband", "reduction_factor": 1}},
     r"pruner\.reduction_factor must be >= 2"),
    ({"study": {"name": "t"}, "sampler": {"name": "tpe", "gamma": 0.1}},
     r"unknown key sampler\.'gamma'"),  # a function in Optuna, not a number
    ({"study": {"name": "a/b"}}, r"study\.name must be letters, digits"),
    ({"study": {"name": "../up"}}, r"study\.name must be letters, digits"),
])
def test_invalid_study_files(raw, pattern):
    with pytest.raises(UsageError, match=pattern) as err:
        parse_study(raw, "bad.toml")
    assert str(err.value).startswith("bad.toml")
    assert "\n" not in str(err.value)


def test_a_key_written_twice_is_quoted(tmp_path):
    path = tmp_path / "twice.toml"
    path.write_text('[study]\nname = "t"\nseed = 1\nseed = 2\n')
    with pytest.raises(UsageError, match=r"line 4.*: 'seed = 2'"):
        load_study_file(path)


def test_gp_without_pytorch_is_refused_before_anything_is_written(tmp_path):
    import importlib.util

    raw = {"study": {"name": "t"}, "sampler": {"name": "gp"}}
    if importlib.util.find_spec("torch") is not None:
        assert parse_study(raw, "gp.toml").sampler == "gp"
    else:
        with pytest.raises(UsageError, match="sampler gp needs PyTorch"):
            parse_study(raw, "gp.toml")


def test_every_param_has_a_validator_and_describes_itself():
    for name, info in PARAMS.items():
        assert info.describe(), name


def test_search_domains_are_the_models():
    """PARAMS takes each domain from the model's declaration, not a copy of it."""
    assert set(TRAIN_DOMAINS) == {*TRAIN_PARAMS, "seed", "log_every", "epsilon"}
    assert PARAMS["width"] is LAYER_WIDTH
    for name, info in PARAMS.items():
        if name in NETWORK_DOMAINS:
            assert info is NETWORK_DOMAINS[name], name
        elif name == "patience":  # TOML has no null: "none" stands for None
            assert info == dataclasses.replace(TRAIN_DOMAINS[name], optional=False,
                                               extra=("none",))
        elif name in TRAIN_DOMAINS:
            assert info is TRAIN_DOMAINS[name], name
        else:
            assert name in ("n_layers", "width"), name


@pytest.mark.parametrize(("name", "value"), [
    ("dropout", 0.0), ("dropout", 0.999), ("dropout", 1.0), ("dropout", -0.1),
    ("learning_rate", 0.0), ("learning_rate", 1e-9), ("learning_rate", float("inf")),
    ("batch_size", "full"), ("batch_size", "half"), ("batch_size", 1), ("batch_size", 0),
    ("batch_size", 2.0), ("width", 1), ("width", 65536), ("width", 65537), ("width", 0),
    ("patience", "none"), ("patience", 1), ("patience", 0), ("momentum", 0.0),
    ("momentum", 1.0), ("beta2", 0.999), ("nesterov", True), ("nesterov", 1),
    ("clip_type", "global_norm"), ("clip_type", "percentile"), ("l2", 0.0), ("l2", -1e-9),
    ("activation", "tanh"), ("activation", "swish"), ("init", "random"), ("init", "xavier"),
    ("epochs", 1), ("epochs", 0), ("lr_step", 0), ("min_lr", 0.0), ("lr_decay", 0.0),
])
def test_search_and_model_accept_the_same_values(name, value):
    try:
        parse_param(name, value, "t.toml")
        search_ok = True
    except UsageError:
        search_ok = False
    values = {**DEFAULTS, "widths": [DEFAULTS["width"]], name: value}
    if name in CONDITIONS:  # where it applies, so that the model sees it
        parent, applies_for = CONDITIONS[name]
        values[parent] = applies_for[0]
    if name == "width":
        values["widths"] = [value]
    network, training = build_configs(values, 4, 3, "classification", seed=0)
    try:
        Network(**network)
        TrainConfig(**training)
        model_ok = True
    except ValueError:
        model_ok = False
    assert search_ok == model_ok


def test_sampling_is_conditional_on_depth_and_clip_type():
    spec = parse_study(_minimal(n_layers={"low": 1, "high": 3}, width={"low": 4, "high": 8},
                                clip_type=["none", "norm"],
                                clip_value={"low": 0.1, "high": 1.0}), "t.toml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_depths, seen_clip = set(), set()
    for _ in range(30):
        trial = study.ask()
        values = sample(spec.space, trial)
        depth = values["n_layers"]
        seen_depths.add(depth)
        assert {k for k in trial.params if k.startswith("width_l")} == \
            {f"width_l{i}" for i in range(depth)}
        assert ("clip_value" in trial.params) == (values["clip_type"] != "none")
        seen_clip.add(values["clip_type"])
        network, training = build_configs(values, 64, 10, "classification", seed=5)
        assert network["layer_sizes"] == [64, *values["widths"], 10]
        assert training["seed"] == network["seed"] == 5
        study.tell(trial, 0.0)
    assert seen_depths == {1, 2, 3} and seen_clip == {"none", "norm"}


def test_a_parameter_that_does_not_apply_is_neither_sampled_nor_stored():
    spec = parse_study(_minimal(
        optimizer=["sgd", "momentum", "adam"], schedule=["constant", "step", "cosine"],
        momentum={"low": 0.5, "high": 0.99}, nesterov=[True, False],
        beta1={"low": 0.8, "high": 0.95}, beta2={"low": 0.9, "high": 0.9999},
        lr_decay={"low": 0.5, "high": 0.99}, lr_step={"low": 2, "high": 20},
        min_lr={"low": 1e-6, "high": 1e-4, "log": True}), "t.toml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        values = sample(spec.space, trial)
        _, training = build_configs(values, 4, 3, "classification", seed=0)
        optimizer, schedule = values["optimizer"], values["schedule"]
        seen.add((optimizer, schedule))
        expected = {"momentum": optimizer == "momentum", "nesterov": optimizer == "momentum",
                    "beta1": optimizer == "adam", "beta2": optimizer == "adam",
                    "lr_decay": schedule == "step", "lr_step": schedule == "step",
                    "min_lr": schedule in ("step", "cosine")}
        for name, used in expected.items():
            assert (name in trial.params) == used, (name, optimizer, schedule)
            assert (name in training) == used, (name, optimizer, schedule)
        study.tell(trial, 0.0)
    assert len(seen) == 9  # every optimizer with every schedule


@pytest.mark.parametrize(("space", "message"), [
    ({"optimizer": "adam", "momentum": 0.8}, "space.momentum never applies: it is used when "
     "optimizer is momentum, and optimizer is 'adam'"),
    ({"beta1": {"low": 0.8, "high": 0.9}, "optimizer": ["sgd", "momentum"]},
     "space.beta1 never applies"),
    ({"lr_step": 5}, "schedule is 'constant'"),  # the default schedule
    ({"clip_value": 0.5, "clip_type": "none"}, "space.clip_value never applies"),
])
def test_a_parameter_that_can_never_apply_is_refused(space, message):
    with pytest.raises(UsageError) as err:
        parse_study(_minimal(**space), "t.toml")
    assert message in str(err.value)


@pytest.mark.parametrize(("pruner", "first"), [
    ('name = "none"', float("inf")),
    ('name = "median"', 0),
    ('name = "median"\nn_warmup_steps = 7', 7),
    ('name = "successive_halving"\nmin_resource = 3', 2),  # resources count from 1, steps from 0
    ('name = "hyperband"', 0),  # min_resource "auto": decided at run time, so always ask
])
def test_first_prunable_step_from_the_pruner_arguments(pruner, first):
    spec = parse_study(tomllib.loads(f'[study]\nname = "s"\n[pruner]\n{pruner}\n'), "t")
    assert spec.first_prunable_step() == first
    # The pruner itself agrees: it never prunes before that step.
    pruning = spec.make_pruner()
    study = optuna.create_study(pruner=pruning, direction="maximize")
    for _ in range(6):
        trial = study.ask()
        for step in range(10):
            trial.report(1.0 if trial.number < 5 else 0.0, step)
            if trial.should_prune():
                assert step >= first, (pruner, step)
                break
        study.tell(trial, 1.0 if trial.number < 5 else 0.0)


def test_the_study_note_says_when_a_parameter_applies():
    from nnsearch.search.study import study_note

    note = study_note(parse_study(_minimal(optimizer=["sgd", "momentum"],
                                           momentum={"low": 0.5, "high": 0.9}), "t.toml"))
    assert "| momentum | 0.5 – 0.9 (when optimizer is momentum) |" in note
    assert "| optimizer | sgd, momentum |" in note


def test_init_writes_the_default_space_and_folds_for_a_small_table(tmp_path):
    import tomllib

    from nnsearch.search.starter import study_for_table

    rows = "a,b,label\n" + "".join(f"{i % 7}.5,{i % 3},{'xy'[i % 2]}\n" for i in range(60))
    (tmp_path / "t.csv").write_text(rows)
    text, _ = study_for_table(str(tmp_path / "t.csv"), "label", tmp_path / "t.toml")
    spec = parse_study(tomllib.loads(text), "init", tmp_path / "t.toml")
    default = load_study_file(ROOT / "studies" / "digits.toml")
    assert spec.space == default.space  # one default space, not a hand-kept copy
    assert (spec.sampler, spec.sampler_args) == (default.sampler, default.sampler_args)
    assert (spec.pruner, spec.pruner_args) == (default.pruner, default.pruner_args)
    assert spec.data.folds == 5  # a small table is cross-validated, 5 folds up to 2,000 rows
    assert spec.metric == "val_loss" and spec.timeout == 60 and spec.trials is None
    assert spec.data.clip  # numbers beyond the training rows' range taken at its edge

    # a class of 4 rows is too few for 5 folds outside the test split: 3 folds
    (tmp_path / "four.csv").write_text(rows + "".join(f"{i}.5,1,z\n" for i in range(4)))
    text, _ = study_for_table(str(tmp_path / "four.csv"), "label", tmp_path / "4.toml")
    assert parse_study(tomllib.loads(text), "init", tmp_path / "4.toml").data.folds == 3

    # a class of 3 rows is too few for 3 folds, and for one validation split alike
    (tmp_path / "few.csv").write_text(rows + "".join(f"{i}.5,1,z\n" for i in range(3)))
    with pytest.raises(UsageError, match=r"data\.folds = 3 needs at least 3 samples of"):
        study_for_table(str(tmp_path / "few.csv"), "label", tmp_path / "f.toml")


@pytest.mark.parametrize(("rows", "folds", "batches", "timeout"), [
    (9_000, 0, [32, 64, 128], 120), (20_000, 0, [128, 256, 512], 240),
    (60_000, 0, [128, 256, 512], 720), (500_000, 0, [128, 256, 512], 900)])
def test_init_for_a_large_table(rows, folds, batches, timeout):
    import tomllib

    from nnsearch.search.starter import Inferred, _render

    text = _render("big", "big.csv", "y", "classification", "val_accuracy", "why", [],
                   Inferred(["a line"]), rows, folds)
    raw = tomllib.loads(text)
    assert raw["space"]["batch_size"] == batches
    assert "folds" not in raw["data"] and raw["data"]["validation"] == 0.2
    assert raw["budget"] == {"timeout": timeout}  # time, no count: 60 s per 5,000 rows
    large = rows > 10_000  # a smaller space: trials of seconds
    assert raw["space"]["width"]["high"] == (512 if large else 1024)
    assert raw["space"]["epochs"] == 100 and raw["space"]["patience"] == 10
    parse_study(raw, "init")  # valid as written


def test_every_shipped_study_file_parses():
    files = sorted((ROOT / "studies").glob("*.toml"))
    assert len(files) >= 3
    for path in files:
        spec = load_study_file(path)
        assert spec.name == path.stem
    tradeoff = load_study_file(ROOT / "studies" / "digits_tradeoff.toml")
    assert tradeoff.objectives == ("val_accuracy", "n_params") and tradeoff.pruner == "none"
    assert tradeoff.directions == ["maximize", "minimize"] and tradeoff.max_params == 50000


def test_a_study_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Notepad saves UTF-8 with a byte-order mark: it is still the UTF-8 it says."""
    study = write_study(tmp_path / "bom.toml", name="bom", trials=1, epochs=2)
    study.write_bytes(b"\xef\xbb\xbf" + study.read_bytes())
    res = run_cli("run", str(study), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "bom-best.json").is_file()
