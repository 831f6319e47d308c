"""A training saved in the middle and resumed goes on bit for bit as it would have."""

import copy

import numpy as np
import pytest

from nnsearch.model import Network, StateError, TrainConfig, fit


class SaveAt:
    """Checkpoints that are due at the given epochs only, and keep deep copies."""

    def __init__(self, *epochs: int) -> None:
        self.epochs, self.epoch, self.saved = set(epochs), -1, {}

    def due(self) -> bool:
        self.epoch += 1
        return self.epoch in self.epochs

    def save(self, state):
        self.saved[self.epoch] = copy.deepcopy(state)


@pytest.mark.parametrize("optimizer,extra", [
    ("adam", {}),
    ("momentum", {"nesterov": True}),
    ("sgd", {"clip_type": "global_norm", "clip_value": 0.5}),
])
def test_a_resumed_fit_ends_as_the_uninterrupted_one(digits_split, optimizer, extra):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    config = TrainConfig(epochs=25, learning_rate=0.01, optimizer=optimizer, patience=4,
                         batch_size=64, seed=3, l2=1e-4, **extra)

    def network():
        return Network([64, 48, 10], dropout=0.2, seed=7)  # dropout: the generator matters

    whole, saves = network(), SaveAt(5, 11)
    history = fit(whole, X_tr, y_tr, X_va, y_va, config, checkpoints=saves)
    assert sorted(saves.saved) == [5, 11]
    for epoch, state in saves.saved.items():
        resumed = network()
        again = fit(resumed, X_tr, y_tr, X_va, y_va, config, resume=state)
        np.testing.assert_array_equal(resumed.flat, whole.flat)
        assert again.to_dict() == history.to_dict(), f"resumed after epoch {epoch}"
        assert state["trainer"]["history"]["epochs_run"] == epoch + 1


def test_no_save_after_the_last_epoch(digits_split):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split

    class Always(SaveAt):
        def due(self):
            super().due()
            return True

    saves = Always()
    history = fit(Network([64, 8, 10], seed=0), X_tr, y_tr, X_va, y_va,
                  TrainConfig(epochs=6, patience=None), checkpoints=saves)
    assert history.epochs_run == 6
    assert sorted(saves.saved) == [0, 1, 2, 3, 4]  # the 6th epoch ends the training


def test_a_state_that_does_not_fit_is_refused(digits_split):
    X_tr, y_tr, X_va, y_va, _, _ = digits_split
    config = TrainConfig(epochs=8, patience=None)
    saves = SaveAt(2)
    fit(Network([64, 16, 10], seed=0), X_tr, y_tr, X_va, y_va, config, checkpoints=saves)
    state = saves.saved[2]
    with pytest.raises(StateError, match="flat"):  # another network's shape
        fit(Network([64, 17, 10], seed=0), X_tr, y_tr, X_va, y_va, config, resume=state)
    with pytest.raises(StateError, match="history"):  # past the configured epochs
        fit(Network([64, 16, 10], seed=0), X_tr, y_tr, X_va, y_va,
            TrainConfig(epochs=3, patience=None), resume=state)
    broken = copy.deepcopy(state)
    del broken["trainer"]["optimizer"]["m"]
    with pytest.raises(StateError):
        fit(Network([64, 16, 10], seed=0), X_tr, y_tr, X_va, y_va, config, resume=broken)
    with pytest.raises(StateError):
        fit(Network([64, 16, 10], seed=0), X_tr, y_tr, X_va, y_va, config, resume={"x": 1})
