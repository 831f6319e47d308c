"""The trainer: early stopping, divergence, callbacks, reproducibility, accuracy, I/O."""

import json

import numpy as np
import pytest

from nnsearch.model import SCHEDULES, Network, TrainConfig, fit, load, read_header, save


def test_early_stopping_restores_best_weights_and_biases(digits_split):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    snapshots = {}

    def remember(epoch, metrics):
        snapshots[epoch] = net.flat.copy()

    # A large learning rate makes the validation loss bottom out and climb again.
    net = Network([64, 32, 10], seed=0)
    cfg = TrainConfig(epochs=200, learning_rate=0.02, patience=5, seed=0)
    history = fit(net, X_tr, y_tr, X_va, y_va, cfg, on_epoch_end=remember)
    assert history.stopped_early
    assert history.best_epoch < history.epochs_run - 1
    assert history.best_epoch == int(np.argmin(history.val_loss))
    best = snapshots[history.best_epoch]
    last = snapshots[history.epochs_run - 1]
    assert not np.array_equal(best, last)
    np.testing.assert_array_equal(net.flat, best)
    biases = net.parameters()[1::2]
    assert all(b.any() for b in biases), "biases were trained and restored too"
    # The restored state is the one the history reports.
    _, acc = history.val_loss[history.best_epoch], history.val_metric[history.best_epoch]
    assert np.mean(net.predict(X_va) == y_va) == pytest.approx(acc)


def test_without_patience_all_epochs_run(digits_split):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    history = fit(Network([64, 16, 10]), X_tr, y_tr, X_va, y_va,
                  TrainConfig(epochs=7, patience=None))
    assert history.epochs_run == 7 and not history.stopped_early
    assert len(history.train_loss) == len(history.val_metric) == len(history.grad_norms) == 7
    assert all(len(n) == 2 for n in history.grad_norms)
    assert history.best_epoch == 6


def test_callback_can_stop_training(digits_split):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    seen = []

    def stop_at_three(epoch, metrics):
        seen.append((epoch, set(metrics)))
        return epoch == 2

    history = fit(Network([64, 16, 10]), X_tr, y_tr, X_va, y_va,
                  TrainConfig(epochs=50), on_epoch_end=stop_at_three)
    assert history.epochs_run == 3 and history.stopped_by_callback
    assert {"train_loss", "val_loss", "val_metric", "learning_rate"} <= seen[0][1]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # reported, not warned about either
def test_divergence_is_reported_not_raised(digits_split):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    net = Network([64, 64, 10], activation="relu", init="random", seed=0)
    cfg = TrainConfig(epochs=30, batch_size="full", optimizer="sgd", learning_rate=50.0,
                      patience=None)
    history = fit(net, X_tr, y_tr, X_va, y_va, cfg)
    assert history.diverged
    assert history.epochs_run < 30
    assert not np.isfinite(history.train_loss[-1]) or not np.isfinite(history.val_loss[-1])


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_same_seed_same_result_bit_for_bit(digits_split, optimizer, dropout):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    runs = []
    for _ in range(2):
        net = Network([64, 32, 10], dropout=dropout, seed=11)
        cfg = TrainConfig(epochs=4, optimizer=optimizer, learning_rate=0.01, seed=5,
                          schedule="cosine", l2=1e-4, clip_type="norm", clip_value=0.5)
        history = fit(net, X_tr, y_tr, X_va, y_va, cfg)
        runs.append((net.flat.copy(), history.to_dict()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    other = Network([64, 32, 10], dropout=dropout, seed=12)
    fit(other, X_tr, y_tr, X_va, y_va, TrainConfig(epochs=1))
    assert not np.array_equal(other.flat, runs[0][0])


def test_schedules_are_pure_functions_of_the_epoch():
    lrs = {name: [fn(e, 0.1, 10, 0.5, 3, 0.0) for e in range(10)]
           for name, fn in SCHEDULES.items()}
    assert lrs["constant"] == [0.1] * 10
    assert lrs["exponential"][2] == pytest.approx(0.025)
    assert lrs["step"][:7] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])
    assert lrs["cosine"][0] == pytest.approx(0.1) and lrs["cosine"][-1] == pytest.approx(0.0)


def test_learning_rate_is_logged_per_epoch(digits_split):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    history = fit(Network([64, 8, 10]), X_tr, y_tr, X_va, y_va,
                  TrainConfig(epochs=4, learning_rate=0.1, schedule="exponential", lr_decay=0.5,
                              patience=None))
    assert history.learning_rate == pytest.approx([0.1, 0.05, 0.025, 0.0125])


def test_binary_and_regression_heads_learn():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 3))
    yb = (X[:, 0] + X[:, 1] > 0).astype(int)
    net = Network([3, 16, 1], output="log_loss", seed=0)
    h = fit(net, X[:300], yb[:300], X[300:], yb[300:], TrainConfig(epochs=60, patience=None))
    assert h.metric_name == "accuracy" and h.val_metric[-1] > 0.9
    assert net.predict_proba(X[:5]).shape == (5, 2)
    yr = X @ np.array([1.0, -2.0, 0.5])
    reg = Network([3, 16, 1], output="mse", seed=0)
    h = fit(reg, X[:300], yr[:300], X[300:], yr[300:],
            TrainConfig(epochs=80, learning_rate=1e-2, patience=None))
    assert h.metric_name == "rmse" and h.val_metric[-1] < 0.3 * yr.std()
    assert reg.predict(X[:4]).shape == (4,)
    with pytest.raises(ValueError, match="predict_proba"):
        reg.predict_proba(X[:2])


def test_a_plain_config_learns_digits(digits_split):
    """[64, 128, 10], relu, he_normal, adam, batch 64, early stopping: mean of 5 seeds.

    It scores about 0.974 here; the bar keeps a margin that holds on any CPU and BLAS
    build (bench/network.py reports the precise figure beside scikit-learn's).
    """
    X_tr, y_tr, X_va, y_va, X_te, y_te = digits_split
    accs = []
    for seed in range(5):
        net = Network([64, 128, 10], activation="relu", init="he_normal", dropout=0.2, seed=seed)
        cfg = TrainConfig(epochs=300, batch_size=64, learning_rate=1e-3, optimizer="adam",
                          l2=1e-3, patience=20, seed=seed)
        fit(net, X_tr, y_tr, X_va, y_va, cfg)
        accs.append(float(np.mean(net.predict(X_te) == y_te)))
    assert np.mean(accs) >= 0.95, accs


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_save_load_predicts_exactly_the_same(tmp_path, output):
    rng = np.random.default_rng(0)
    width = 4 if output == "softmax" else 1
    net = Network([5, 7, width], output=output, activation="tanh", seed=3, dropout=0.1)
    net.flat += rng.normal(0, 0.1, net.flat.shape).astype(net.flat.dtype)
    path = save(net, tmp_path / "m.npz", metadata={"classes": ["a", "b"]})
    loaded = load(path)
    X = rng.standard_normal((50, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    assert loaded.config() == net.config()
    assert read_header(path)["metadata"] == {"classes": ["a", "b"]}
    with np.load(path, allow_pickle=False) as data:  # plain arrays, no pickles
        assert json.loads(str(data["config"]))["network"]["output"] == output


def test_load_refuses_garbage_and_pickles(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not an nnsearch model"):
        load(bad)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, flat=np.zeros(3), config=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not an nnsearch model"):
        load(pickled)


def test_a_logging_line_every_n_epochs(digits_split, caplog):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    with caplog.at_level("INFO", logger="nnsearch.model"):
        fit(Network([64, 8, 10]), X_tr, y_tr, X_va, y_va,
            TrainConfig(epochs=6, patience=None, log_every=2))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("nnsearch.model")]
    assert [line.split(":")[0] for line in lines] == ["epoch 2", "epoch 4", "epoch 6"]
    assert all("val_accuracy=" in line and "lr=" in line for line in lines)


@pytest.mark.parametrize(("name", "other"), [
    ("clip_value", 0.01), ("momentum", 0.3), ("nesterov", True), ("beta1", 0.5),
    ("beta2", 0.9), ("epsilon", 1e-3), ("lr_decay", 0.5), ("lr_step", 2), ("min_lr", 0.1),
])
def test_a_field_is_unused_wherever_its_condition_says_so(digits_split, name, other):
    # TRAIN_CONDITIONS is what the search reads to skip a parameter: it must be true.
    # Under every value of its condition's field that is not listed, changing the field
    # changes nothing, bit for bit.
    from nnsearch.model import CLIP_TYPES, OPTIMIZERS, TRAIN_CONDITIONS

    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    parent, used_for = TRAIN_CONDITIONS[name]
    choices = {"clip_type": CLIP_TYPES, "optimizer": tuple(OPTIMIZERS),
               "schedule": tuple(SCHEDULES)}[parent]
    for value in (c for c in choices if c not in used_for):
        runs = []
        for setting in ({}, {name: other}):
            net = Network([64, 16, 10], seed=0)
            fit(net, X_tr[:300], y_tr[:300], X_va, y_va,
                TrainConfig(epochs=3, seed=0, log_every=0, **{parent: value}, **setting))
            runs.append(net.flat.copy())
        assert np.array_equal(*runs), (name, parent, value)


@pytest.mark.parametrize(("name", "kwargs"), [("adam", {"beta1": 0.9, "beta2": 0.999}),
                                              ("adam", {"beta1": 0.5, "beta2": 0.999}),
                                              ("adam", {"beta1": 0.0, "beta2": 0.9}),
                                              ("momentum", {"momentum": 0.9}),
                                              ("momentum", {"momentum": 0.99})])
def test_a_decaying_optimizer_state_never_turns_subnormal(name, kwargs):
    # A dead unit's gradient is zero: its momentum decays geometrically, and below the
    # smallest normal float every operation on it is many times slower on x86 (an
    # epoch took 2.2x as long). The state is zeroed long before.
    from nnsearch.model._optimizers import OPTIMIZERS

    opt = OPTIMIZERS[name](4, np.dtype(np.float32), **kwargs)
    params = np.zeros(4, np.float32)
    grad = np.array([1.0, 1e-3, -1e-6, 0.0], np.float32)
    opt.step(params, grad, 1e-3)
    tiny = np.finfo(np.float32).tiny
    states = [opt.m, opt.v] if name == "adam" else [opt.velocity]
    moved = params.copy()
    for _ in range(20_000):
        opt.step(params, np.zeros(4, np.float32), 1e-3)
        assert not any(((s != 0) & (np.abs(s) < tiny)).any() for s in states)
    assert all((s == 0).all() for s in states[:1]), "it decayed to zero, not to a subnormal"
    assert np.isfinite(params).all()
    if kwargs.get("beta1", kwargs.get("momentum")):  # the momentum kept moving them
        assert (params != moved).any()
