"""Central-difference gradient checks in float64 for every activation x output head."""

import numpy as np
import pytest

from nnsearch.model import ACTIVATIONS, HEADS, Network


def _targets(head: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, int]:
    if head == "softmax":
        return rng.integers(0, 3, n), 3
    if head == "sigmoid":
        return rng.integers(0, 2, n), 1
    return rng.standard_normal((n, 2)), 2


def _numeric_gradient(net: Network, X, y, l2: float, h: float = 1e-6) -> list[np.ndarray]:
    grads = []
    for p in net.parameters():
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            orig = p[idx]
            p[idx] = orig + h
            plus = net.loss_and_gradients(X, y, l2=l2)[0]
            p[idx] = orig - h
            minus = net.loss_and_gradients(X, y, l2=l2)[0]
            p[idx] = orig
            g[idx] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


@pytest.mark.parametrize("l2", [0.0, 0.05])
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradients_match_central_differences(activation, head, l2):
    rng = np.random.default_rng(7)
    y, width = _targets(head, rng, 9)
    X = rng.standard_normal((9, 4))
    net = Network([4, 5, 3, width], activation=activation, output=head, init="glorot_normal",
                  seed=3, dtype="float64")
    # Biases start at zero; move them so their gradients are exercised away from 0.
    for b in net.parameters()[1::2]:
        b += rng.normal(0, 0.1, b.shape)
    loss, analytic = net.loss_and_gradients(X, y, l2=l2)
    assert np.isfinite(loss)
    numeric = _numeric_gradient(net, X, y, l2)
    assert len(analytic) == len(net.parameters())
    for a, n, p in zip(analytic, numeric, net.parameters(), strict=True):
        assert a.shape == p.shape
        rel = np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), 1e-12)
        assert rel < 1e-6, (activation, head, l2, rel)


def test_l2_term_is_in_loss_and_weight_gradients_only():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    net = Network([3, 4, 2], dtype="float64", seed=1)
    base, g0 = net.loss_and_gradients(X, y)
    loss, g1 = net.loss_and_gradients(X, y, l2=0.5)
    W = net.parameters()[0::2]
    assert loss == pytest.approx(base + 0.25 * sum((w**2).sum() for w in W))
    for i, (a, b) in enumerate(zip(g0, g1, strict=True)):
        expected = a + 0.5 * net.parameters()[i] if i % 2 == 0 else a
        np.testing.assert_allclose(b, expected, rtol=1e-12, atol=1e-12)


def test_loss_aliases_reach_the_same_head():
    for alias, name in [("categorical_crossentropy", "softmax"), ("log_loss", "sigmoid"),
                        ("mse", "identity")]:
        width = 3 if name == "softmax" else 1
        assert Network([2, width], output=alias).output == name
