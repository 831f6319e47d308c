"""Ensemble: several networks predicting as one, saved and loaded in one file."""

import numpy as np
import pytest

from nnsearch.model import Ensemble, Network, load, save


def _nets(sizes, output, n=3):
    return [Network(sizes, output=output, seed=s) for s in range(n)]


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_an_ensemble_averages_its_members_outputs_with_their_weights(output):
    outs = {"softmax": 3, "sigmoid": 1, "identity": 1}[output]
    nets = _nets([4, 8, outs], output)
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    ens = Ensemble(nets, [1.0, 2.0, 1.0])
    expected = (nets[0].forward(X) + 2 * nets[1].forward(X) + nets[2].forward(X)) / 4
    np.testing.assert_allclose(ens.forward(X), expected, rtol=1e-6)
    if output == "identity":
        np.testing.assert_allclose(ens.predict(X), expected[:, 0], rtol=1e-6)
        with pytest.raises(ValueError, match="for classifiers"):
            ens.predict_proba(X)
        return
    proba = ens.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(ens.predict(X), proba.argmax(axis=1))


def test_an_ensemble_is_saved_and_loaded_as_it_predicts(tmp_path):
    nets = [*_nets([5, 6, 3], "softmax"), Network([5, 9, 4, 3], output="softmax", seed=7)]
    ens = Ensemble(nets, [0.1, 0.2, 0.3, 0.4])
    path = save(ens, tmp_path / "m.npz", metadata={"k": 1})
    back = load(path)
    assert isinstance(back, Ensemble) and back.metadata == {"k": 1}
    X = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    assert np.array_equal(back.forward(X), ens.forward(X))
    assert [n.config() for n in back.members] == [n.config() for n in nets]
    single = load(save(nets[0], tmp_path / "one.npz"))  # one network stays a Network
    assert isinstance(single, Network) and np.array_equal(single.forward(X), nets[0].forward(X))


def test_members_that_cannot_be_averaged_are_refused():
    with pytest.raises(ValueError, match="share their inputs, outputs and head"):
        Ensemble([Network([4, 3], output="softmax"), Network([5, 3], output="softmax")])
    with pytest.raises(ValueError, match="share their inputs, outputs and head"):
        Ensemble([Network([4, 1], output="sigmoid"), Network([4, 1], output="identity")])
    with pytest.raises(ValueError, match="at least one network"):
        Ensemble([])
    for weights in ([1.0], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="weights must be 2 finite numbers"):
            Ensemble(_nets([4, 3], "softmax", 2), weights)
