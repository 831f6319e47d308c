"""How many seeds train averages by default (search/seeds.py)."""

from types import SimpleNamespace

import numpy as np
import pytest

from nnsearch.search.seeds import SEED_SECONDS, SEEDS, default_seeds


def data(rows: int, folds: int | None):
    """What default_seeds reads of a Dataset: its rows and folds."""
    return SimpleNamespace(y_train=np.zeros(rows), y_val=np.zeros(0), y_test=np.zeros(0),
                           n_folds=folds)


def export(seconds):
    return {"trial": {"user_attrs": {} if seconds is None else {"train_seconds": seconds}}}


@pytest.mark.parametrize(("seconds", "folds", "seeds"), [
    (0.05, 3, SEEDS),  # a small table's trial: the seeds cost nothing
    (None, 3, SEEDS),  # an export that does not say what its trial cost
    (9.0, 3, 1 + int(SEED_SECONDS / 9.0)),  # a seed: two trainings of ~4.5 s
    (68.0, 3, 1),  # one seed alone costs more than SEED_SECONDS
    (10.0, None, 1 + int(SEED_SECONDS / 20.0)),  # one validation split: two trainings
])
def test_the_seeds_beyond_the_first_cost_about_seed_seconds(seconds, folds, seeds):
    assert default_seeds(data(500, folds), export(seconds)) == seeds


def test_a_large_table_gets_one_seed_however_cheap():
    assert default_seeds(data(20_000, 3), export(0.01)) == 1
