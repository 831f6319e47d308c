"""[data] folds = k: cross-validation over train + validation, the folds trained side by
side and judged on their mean curve, and what ``train`` does with a cross-validated
config (refit on train + validation)."""

import json
import re

import numpy as np
import optuna
import pytest

from nnsearch.model import evaluate_outputs
from nnsearch.search.data import DataSpec, load_data, shifted_copies
from nnsearch.search.studyfile import parse_study
from tests.helpers import run_cli

IRIS_FOLDS = """
[study]
name = "cv"
seed = 5

[pruner]
name = "{pruner}"
{pruner_extra}

[data]
source = "iris"
folds = {folds}

[budget]
trials = {trials}

[space]
n_layers = {{ low = 1, high = 2 }}
width = {{ low = 4, high = 32, log = true }}
learning_rate = {{ low = 1e-4, high = 3.0, log = true }}
epochs = 60
patience = 10
{extra}
"""


def _study(tmp_path, pruner="median", pruner_extra="n_startup_trials = 3", folds=3, trials=24,
           extra=""):
    path = tmp_path / "cv.toml"
    path.write_text(IRIS_FOLDS.format(pruner=pruner, pruner_extra=pruner_extra, folds=folds,
                                      trials=trials, extra=extra))
    return path


def test_folds_cover_train_and_validation_once_and_keep_test_out():
    data = load_data(DataSpec("digits", folds=3, shift=1, seed=4))
    n = len(data.fold_ids)
    assert data.n_folds == 3 and len(data.X_val) == 0
    assert n + len(data.X_test) == 1797 and len(data.X_test) == 360  # test: 20%, held out
    assert len(data.X_train) == 5 * n  # the pool and its shifted copies
    sizes = np.bincount(data.fold_ids)
    assert sizes.max() - sizes.min() <= 10  # stratified folds of (nearly) equal size
    seen = np.zeros(n, int)
    for i in range(data.n_folds):
        fold = data.fold(i)
        held = np.flatnonzero(data.fold_ids == i)
        seen[held] += 1
        assert np.array_equal(fold.X_val, data.X_train[held])  # originals only, never copies
        m = n - len(held)
        assert len(fold.X_train) == 5 * m and len(fold.X_test) == 0
        # the shifted copies in a fold's training part are those of its own training rows
        raw = fold.X_train[:m] * data.prep.scale + data.prep.mean
        copies = (shifted_copies(raw, (8, 8), 1) - data.prep.mean) / data.prep.scale
        np.testing.assert_allclose(fold.X_train, copies, atol=1e-4)
        # every class is in every fold, about as often as in the whole
        assert set(np.unique(fold.y_val)) == set(range(10))
    assert np.all(seen == 1)


def test_folds_are_stored_only_when_set():
    base = {"study": {"name": "x"}, "data": {"source": "iris"}}
    assert "folds" not in parse_study(base, "t").to_dict()["data"]  # old definitions unchanged
    with_folds = {**base, "data": {"source": "iris", "folds": 4}}
    spec = parse_study(with_folds, "t")
    assert spec.to_dict()["data"]["folds"] == 4
    assert parse_study(spec.to_dict(), "stored").data.folds == 4


def test_folds_on_iris_end_to_end_are_judged_on_their_mean_curve_and_train_refits(tmp_path):
    study = _study(tmp_path, pruner_extra="n_startup_trials = 3\nreport_every = 5",
                   extra="\n[selection]\nrecheck = 2\nseeds = 1\nensemble = 1\n")
    res = run_cli("run", str(study), "--workers", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    loaded = optuna.load_study(study_name="cv", storage=f"sqlite:///{tmp_path / 'cv.db'}")
    trials = loaded.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(trials) == 24 and pruned and complete
    # the pruner sees the folds' mean curve every 5 epochs, as one split's
    for t in pruned:
        reason = t.user_attrs["pruned_reason"]
        if reason.startswith("diverged"):
            continue
        assert re.fullmatch(r"pruned by median at epoch \d+", reason), reason
        epoch = int(reason.split()[-1])
        assert (epoch + 1) % 5 == 0 and max(t.intermediate_values) == epoch
        assert "fold_values" not in t.user_attrs or not t.user_attrs["fold_values"]
    assert any(not t.user_attrs["pruned_reason"].startswith("diverged") for t in pruned)
    for t in complete:
        values = t.user_attrs["fold_values"]
        assert len(values) == 3 and t.user_attrs["folds_together"] is True
        assert t.value == pytest.approx(np.mean(values))
        assert all((s + 1) % 5 == 0 for s in t.intermediate_values)
        # every fold keeps the epoch of the folds' best mean: one count, what refit trains
        (kept,) = set(t.user_attrs["fold_epochs"])
        if kept % 5 == 0:  # reported there: the mean curve's value is the trial's
            assert t.intermediate_values[kept - 1] == pytest.approx(t.value)
    # the re-check reran all three folds with another seed for the top two
    rechecked = loaded.user_attrs["nnsearch.recheck"]
    assert len(rechecked) == 2 and all(len(v) == 2 for v in rechecked.values())

    export = json.loads((tmp_path / "cv-best.json").read_text())
    train = run_cli("train", "cv-best.json", "--json", cwd=tmp_path)
    assert train.returncode == 0, train.stderr  # 0: the folds' mean reproduced exactly
    metrics = json.loads(train.stdout)
    assert metrics["val_accuracy"] == export["trial"]["value"]
    epochs = max(1, round(float(np.mean(export["trial"]["user_attrs"]["fold_epochs"]))))
    assert metrics["folds"] == 3 and metrics["refit_epochs"] == epochs
    assert metrics["test_accuracy"] >= 0.8  # iris: margin for any CPU

    # the test figure is one network refitted on train + validation (all 120 rows outside
    # the test split) for that many epochs, as the README says; the model file is refitted
    # on all 150 rows for as many (--holdout keeps the scored one): both rebuilt here
    from dataclasses import replace

    from nnsearch.model import Ensemble, load
    from nnsearch.search.record import other_seed
    from nnsearch.search.seeds import with_seed
    from nnsearch.search.training import refit

    data = load_data(DataSpec(**export["data"]))
    assert len(data.X_train) == 120 and len(data.X_test) == 30
    assert metrics["model_rows"] == 150
    net, history = refit(export["network"], export["training"], data, epochs)
    assert history.epochs_run == epochs
    every = replace(data, X_train=np.concatenate([data.X_train, data.X_test]),
                    y_train=np.concatenate([data.y_train, data.y_test]))
    net_all, _ = refit(export["network"], export["training"], every, epochs)
    # ...as five networks (a small table): the trial's seed first, then its other seeds
    model = load(tmp_path / "cv-best.npz")
    assert isinstance(model, Ensemble) and len(model.members) == 5 == metrics["seeds"]
    assert np.array_equal(model.members[0].forward(data.X_test), net_all.forward(data.X_test))
    other = with_seed(export, other_seed(export["seed"], 4))
    net_4, _ = refit(other["network"], other["training"], every, epochs)
    assert np.array_equal(model.members[4].forward(data.X_test), net_4.forward(data.X_test))
    assert "test_accuracy_single" in metrics  # the trial's own network's figure, beside
    out = run_cli("train", "cv-best.json", "--holdout", "--seeds", "1", "-o", "held.npz",
                  cwd=tmp_path).stdout
    assert f"val: mean ± sd of 3 folds; test: refitted on train + validation for {epochs} " \
        "epochs)" in out and "refitted on all" not in out and "seeds" not in out
    held = load(tmp_path / "held.npz")
    assert np.array_equal(held.forward(data.X_test), net.forward(data.X_test))
    assert not np.array_equal(held.forward(data.X_test), model.forward(data.X_test))


def test_the_epoch_kept_is_the_folds_best_mean_and_each_fold_is_scored_there():
    from nnsearch.search.training import cross_validate

    data = load_data(DataSpec(source="iris", folds=3))
    network = {"layer_sizes": [4, 16, 3], "seed": 1}
    training = {"epochs": 40, "learning_rate": 0.05, "patience": 5, "batch_size": 16,
                "seed": 1}
    seen = []
    folds = cross_validate(network, training, data, "val_loss", outputs=True, together=True,
                           on_epoch_end=lambda epoch, m: seen.append(m["val_loss"]))
    assert folds.stopped is None and len(folds.values) == 3
    best = int(np.argmin(seen))
    assert folds.epochs == [best + 1] * 3 and folds.refit_epochs == best + 1
    assert folds.value == pytest.approx(seen[best], rel=1e-6)
    assert len(seen) in (best + 1 + 5, 40)  # patience on the mean curve
    for i in range(3):  # each fold's out-of-fold predictions, from that epoch's network
        rows = folds.outputs[data.fold_ids == i]
        loss, _ = evaluate_outputs(folds.net, rows, data.fold(i).y_val)  # (the same head)
        assert loss == pytest.approx(folds.values[i], rel=1e-5)
    # the same config, folds in turn: each fold its own best epoch, scored where it chose
    alone = cross_validate(network, training, data, "val_loss")
    assert alone.values != folds.values


def test_wilcoxon_pairs_folds_across_trials(tmp_path):
    study = _study(tmp_path, pruner="wilcoxon", pruner_extra="", folds=5, trials=10)
    res = run_cli("run", str(study), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    loaded = optuna.load_study(study_name="cv", storage=f"sqlite:///{tmp_path / 'cv.db'}")
    for t in loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        values = t.user_attrs["fold_values"]
        # wilcoxon gets each fold's own value, by fold, for folds 0..3
        assert [t.intermediate_values[i] for i in range(4)] == pytest.approx(values[:4])
