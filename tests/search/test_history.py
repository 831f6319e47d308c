"""The bounded history a trial's sampler and pruner read (search/history.py)."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nnsearch.search import history
from nnsearch.search.cli import main as cli_main
from nnsearch.search.history import TrialHistory, bounded
from nnsearch.search.worker_storage import WorkerStorage
from tests.helpers import write_study

DIST = {"x": FloatDistribution(0.0, 1.0)}


def trials_of(values, states=None, constraints=None):
    """Frozen trials numbered 0.. with these values (None: not finished)."""
    out = []
    for i, value in enumerate(values):
        state = (states or {}).get(i, TrialState.COMPLETE if value is not None
                                   else TrialState.RUNNING)
        attrs = {}
        if constraints and i in constraints:
            attrs["constraints"] = constraints[i]  # (Optuna 5's name; only front reads it)
        t = create_trial(value=0.0, params={"x": 0.5}, distributions=DIST,
                         system_attrs=attrs)
        t.state, t.number = state, i
        t.values = [value] if state == TrialState.COMPLETE else None
        out.append(t)
    return out


def test_a_small_study_is_read_whole():
    trials = trials_of([float(i) for i in range(8)] + [None])
    assert TrialHistory("minimize", best=3, recent=5)(trials) is trials


def test_the_view_keeps_the_best_older_trials_the_recent_ones_and_every_running_one():
    # 0..19 finished (values: 19 - i, so the oldest are the best when maximising), then
    # two running; trial 3 pruned, trial 5 failed
    values = [float(19 - i) for i in range(20)] + [None, None]
    states = {3: TrialState.PRUNED, 5: TrialState.FAIL}
    view = TrialHistory("maximize", best=4, recent=6)(trials_of(values, states))
    # the best 4 of the older completed trials (0..13, less 3 and 5): 0, 1, 2, 4
    assert [t.number for t in view] == [0, 1, 2, 4, *range(14, 20), 20, 21]
    view = TrialHistory("minimize", best=4, recent=6)(trials_of(values, states))
    assert [t.number for t in view] == [10, 11, 12, 13, *range(14, 22)]


def test_an_infeasible_trial_is_never_kept_as_one_of_the_best():
    values = [float(i) for i in range(12)]
    view = TrialHistory("minimize", best=2, recent=5)(
        trials_of(values, constraints={0: [1.0]}))
    assert [t.number for t in view] == [1, 2, *range(7, 12)]


def test_the_view_is_worked_out_once_per_read():
    trials = trials_of([float(i) for i in range(30)])
    h = TrialHistory("minimize", best=3, recent=5)
    first = h(trials)
    assert h(trials) is first and len(first) == 8
    assert h(list(trials)) is not first  # another read of the trials: worked out again


def test_a_worker_storage_answers_with_the_view_only_while_bounded():
    storage = WorkerStorage(optuna.storages.InMemoryStorage(), None, window=0.0)
    study = optuna.create_study(storage=storage)
    for i in range(30):
        study.add_trial(create_trial(value=float(i), params={"x": 0.5}, distributions=DIST))
    h = TrialHistory("minimize", best=3, recent=5)
    assert len(study.get_trials()) == 30
    with bounded(storage, h):
        assert [t.number for t in study.get_trials()] == [0, 1, 2, *range(25, 30)]
        with bounded(storage, h):  # (nested: still bounded, and unbounded after both)
            assert len(study.get_trials()) == 8
        assert len(study.get_trials()) == 8
    assert len(study.get_trials()) == 30
    with bounded(storage, None):  # a multi-objective study's: read whole
        assert len(study.get_trials()) == 30


def test_a_worker_samples_from_the_bounded_view(tmp_path, monkeypatch):
    """A worker past BEST + RECENT finished trials: every read its sampler makes holds
    at most BEST + RECENT finished trials, and the study ends as budgeted."""
    monkeypatch.setattr(history, "BEST", 2)
    monkeypatch.setattr(history, "RECENT", 4)
    seen = []
    view = TrialHistory.view

    def spy(self, trials):
        out = view(self, trials)
        seen.append((sum(t.state.is_finished() for t in trials),
                     sum(t.state.is_finished() for t in out)))
        return out

    monkeypatch.setattr(TrialHistory, "view", spy)
    study = write_study(tmp_path / "small.toml", trials=16, epochs=10)
    assert cli_main(["-q", "create", str(study)]) == 0
    assert cli_main(["-q", "worker", str(study)]) == 0
    assert seen and max(whole for whole, _ in seen) >= 10
    assert all(kept == min(whole, 6) for whole, kept in seen), seen
    done = optuna.load_study(study_name="small", storage=f"sqlite:///{tmp_path / 'small.db'}")
    states = [t.state for t in done.get_trials()]
    assert len(states) == 16 and TrialState.FAIL not in states


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_best_trials_in_the_view_are_the_studys_best(direction):
    values = [float((i * 7) % 23) for i in range(40)]
    view = TrialHistory(direction, best=5, recent=10)(trials_of(values))
    older = sorted(values[:30], reverse=direction == "maximize")[:5]
    assert sorted(t.value for t in view if t.number < 30) == sorted(older)


def test_a_growing_study_gets_the_view_a_fresh_reader_would():
    """The pool is built as the trials come (each ranked once): as the study grows,
    trials finishing out of order included, each view is the one worked out afresh."""
    import random

    rng = random.Random(5)
    values = [rng.random() for _ in range(120)]
    states = {i: TrialState.PRUNED for i in range(3, 120, 7)}
    grown = TrialHistory("minimize", best=6, recent=10)
    for size in range(20, 121, 9):
        trials = trials_of(values[:size], states)
        for late in (size - 15, size - 4):  # still running, then finished later
            trials[late].state, trials[late].values = TrialState.RUNNING, None
        fresh = TrialHistory("minimize", best=6, recent=10)
        assert [t.number for t in grown(trials)] == [t.number for t in fresh(trials)]
