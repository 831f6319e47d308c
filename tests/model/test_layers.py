"""Initialisation variances, dropout scaling, clipping, and input validation."""

import itertools

import numpy as np
import pytest

from nnsearch.model import EXPECTED_VARIANCE, INITIALIZERS, Network, TrainConfig, fit


@pytest.mark.parametrize("init", sorted(INITIALIZERS))
def test_init_variance_matches_formula(init):
    fan_in, fan_out = 300, 200
    net = Network([fan_in, fan_out, 10], init=init, seed=0, dtype="float64")
    W = net.parameters()[0]
    expected = EXPECTED_VARIANCE[init](fan_in, fan_out)
    if expected == 0:
        assert not W.any()
    else:
        # 60,000 draws: the sample variance is within a few percent of the truth.
        assert W.var() == pytest.approx(expected, rel=0.03)
        assert abs(W.mean()) < 4 * np.sqrt(expected / W.size)
    assert not net.parameters()[1].any(), "biases start at zero"


def test_he_uniform_limit_is_sqrt_6_over_fan_in():
    net = Network([50, 400, 2], init="he_uniform", seed=1, dtype="float64")
    W = net.parameters()[0]
    limit = np.sqrt(6 / 50)
    assert W.max() <= limit and W.min() >= -limit
    assert W.max() > 0.98 * limit


def test_inverted_dropout_preserves_expected_activation():
    rng = np.random.default_rng(0)
    X = np.abs(rng.standard_normal((4000, 8)))
    net = Network([8, 64, 3], activation="relu", dropout=0.4, seed=0, dtype="float64")
    Xa = net.augment(X)
    net.forward_augmented(Xa)  # evaluation: dropout off
    clean = net._workspaces[len(X)].inputs[0][:, :-1].copy()
    net.forward_augmented(Xa, rng=np.random.default_rng(1))
    dropped = net._workspaces[len(X)].inputs[0][:, :-1]
    zero_share = np.mean(dropped[clean > 0] == 0)
    assert zero_share == pytest.approx(0.4, abs=0.02)
    # Kept units are scaled by 1/0.6, so the mean activation is unchanged.
    assert dropped.mean() == pytest.approx(clean.mean(), rel=0.02)
    kept = dropped[dropped > 0] / clean[dropped > 0]
    np.testing.assert_allclose(kept, 1 / 0.6)


def test_dropout_is_identity_at_evaluation():
    X = np.random.default_rng(0).standard_normal((20, 5))
    a = Network([5, 16, 3], dropout=0.5, seed=2)
    b = Network([5, 16, 3], dropout=0.0, seed=2)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def _one_step_grad(clip_type: str, clip_value: float):
    """Gradient the optimizer received after clipping, via SGD with lr=1."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 6)) * 5, rng.integers(0, 3, 32)
    net = Network([6, 8, 3], init="random", seed=0, dtype="float64")
    before = net.flat.copy()
    _, raw = net.loss_and_gradients(X, y)
    cfg = TrainConfig(epochs=1, batch_size="full", learning_rate=1.0, optimizer="sgd",
                      clip_type=clip_type, clip_value=clip_value, patience=None)
    history = fit(net, X, y, None, None, cfg)
    applied = before - net.flat
    return raw, applied, net, history


def test_clip_by_value():
    raw, applied, _, history = _one_step_grad("value", 0.05)
    flat_raw = np.concatenate([g.ravel() for g in raw])
    assert np.abs(flat_raw).max() > 0.05
    assert np.abs(applied).max() == pytest.approx(0.05)
    np.testing.assert_allclose(np.sort(applied), np.sort(np.clip(flat_raw, -0.05, 0.05)))
    assert history.clip_fraction == [1.0]


def test_clip_by_norm_per_tensor():
    raw, applied, net, history = _one_step_grad("norm", 0.1)
    starts = [*list(net.tensor_starts), net.flat.size]
    raw_by_tensor = {tuple(np.sort(g.ravel())): g for g in raw}
    for a, b in itertools.pairwise(starts):
        piece = applied[a:b]
        norm = np.linalg.norm(piece)
        assert norm <= 0.1 + 1e-12
        # Each tensor keeps its direction: it is its raw gradient scaled by min(1, c/|g|).
        match = [g for g in raw_by_tensor.values() if g.size == piece.size]
        assert any(np.allclose(np.sort(piece), np.sort(g.ravel() * min(1, 0.1 / np.linalg.norm(g))))
                   for g in match)
    assert history.clip_fraction == [1.0]


def test_clip_by_global_norm():
    raw, applied, _, history = _one_step_grad("global_norm", 0.1)
    flat_raw = np.concatenate([g.ravel() for g in raw])
    total = np.linalg.norm(flat_raw)
    assert total > 0.1
    assert np.linalg.norm(applied) == pytest.approx(0.1)
    assert np.sort(applied) == pytest.approx(np.sort(flat_raw * 0.1 / total))
    assert history.max_grad_norm == pytest.approx(total)


def test_no_clipping_when_under_threshold():
    raw, applied, _, history = _one_step_grad("global_norm", 1e9)
    flat_raw = np.concatenate([g.ravel() for g in raw])
    assert np.sort(applied) == pytest.approx(np.sort(flat_raw))
    assert history.clip_fraction == [0.0]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"activation": "swish"}, "activation"),
    ({"init": "xavier"}, "init"),
    ({"output": "hinge"}, "output"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"dtype": "float16"}, "dtype"),
])
def test_invalid_network_args_name_field_value_and_choices(kwargs, field):
    with pytest.raises(ValueError, match=field) as err:
        Network([4, 3, 2], **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(err.value)


def test_unknown_choice_lists_valid_ones():
    with pytest.raises(ValueError, match=r"one of leaky_relu, relu, sigmoid, tanh, but got"):
        Network([4, 2], activation="swish")


@pytest.mark.parametrize("sizes", [[4, 0, 2], [4], [4, -3, 2], [4, 2.5, 2]])
def test_layer_sizes_below_one_are_refused(sizes):
    with pytest.raises(ValueError, match="layer_sizes"):
        Network(sizes)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"clip_type": "percentile"}, "clip_type"),
    ({"schedule": "linear"}, "schedule"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": "half"}, "batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"patience": 0}, "patience"),
])
def test_invalid_train_config(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


def test_input_width_must_match():
    net = Network([4, 3, 2])
    with pytest.raises(ValueError, match=r"layer_sizes\[0\]=4.*\(10, 5\)"):
        net.predict(np.zeros((10, 5)))
    with pytest.raises(ValueError, match="X_train"):
        fit(net, np.zeros((10, 5)), np.zeros(10, int), None, None, TrainConfig(epochs=1))


def test_class_index_out_of_range():
    with pytest.raises(ValueError, match="class indices"):
        Network([4, 3]).loss_and_gradients(np.zeros((2, 4)), np.array([0, 3]))


def test_a_network_too_big_is_refused_before_anything_is_allocated():
    import tracemalloc

    from nnsearch.model import MAX_PARAMS

    tracemalloc.start()
    with pytest.raises(ValueError, match=r"parameters, but a network holds at most"):
        Network([64, 65536, 65536, 10])  # 4.3e9 parameters: 17 GB in float32
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 << 20 and MAX_PARAMS == 2**28


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_activations_agree_with_their_formula_on_every_layout(activation, layout):
    from nnsearch.model._functions import ACTIVATIONS, LEAKY_SLOPE

    Z = np.random.default_rng(0).standard_normal((37, 11)).astype(np.float32)
    Z[0, :3] = [0.0, -0.0, 1e-30]
    expected = {"relu": np.where(Z > 0, Z, 0), "leaky_relu": np.where(Z > 0, Z, LEAKY_SLOPE * Z),
                "sigmoid": 1 / (1 + np.exp(-Z.astype(np.float64))), "tanh": np.tanh(Z)}[activation]
    # C: a plain array; F: the network's hidden buffers (column-major, beside a ones
    # column); strided: the same slice of a row-major buffer
    buf = np.full((37, 12), 7.0, np.float32, order="F" if layout == "F" else "C")
    out = np.empty((37, 11), np.float32) if layout == "C" else buf[:, :-1]
    ACTIVATIONS[activation](np.asarray(Z, order="F" if layout == "F" else "C"), out)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    assert np.all(buf[:, -1] == 7.0)  # nothing written beside the output


def test_relu_zeros_are_shared_read_only_and_bounded():
    from nnsearch.model import _functions as f

    Z = np.asfortranarray(np.ones((64, 128), np.float32))
    zeros = f._zeros_like(Z)
    assert isinstance(zeros, np.ndarray) and zeros.shape == Z.shape and not zeros.any()
    assert zeros.flags.f_contiguous and not zeros.flags.writeable
    assert f._zeros_like(Z) is zeros  # a second call reuses the view
    for n in range(1, 200):  # many shapes: the views are capped, the buffer too
        f._zeros_like(np.empty((n, 3), np.float32))
    assert len(f._zero_views) <= 64
    big = np.empty(f.ZEROS_MAX + 1, np.float32)
    assert f._zeros_like(big) == 0.0  # past the cap, NumPy's scalar (as fast there)
    assert all(buf.size <= f.ZEROS_MAX and not buf.any() for buf in f._zero_buffers.values())
