"""OwnTrial: the trial a worker created is written in two transactions, and stored
exactly as Optuna's one-write-per-change path stores it."""

from __future__ import annotations

import time

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from nnsearch.search import own_trial


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("pg_url")
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=60)
    yield storage
    storage.engine.dispose()


def elsewhere(storage: optuna.storages.RDBStorage, name: str) -> optuna.Study:
    """The study as another process sees it (a storage of its own)."""
    return optuna.load_study(study_name=name, storage=storage.url)


def heartbeats(storage: optuna.storages.RDBStorage) -> int:
    with storage.engine.connect() as connection:
        return connection.execute(sqlalchemy.text("SELECT count(*) FROM trial_heartbeats")) \
            .scalar_one()


def objective(trial: optuna.Trial, seen: dict | None = None) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    n = trial.suggest_int("n", 1, 4)
    act = trial.suggest_categorical("act", ["relu", "tanh"])
    own_trial.write(trial, {"worker": "w1", "shape": [n, 2]})
    trial.set_user_attr("direct", True)
    trial.set_constraint("size", n - 3.0)
    own_trial.training_starts(trial)
    if seen is not None:  # what another process sees once training starts
        other = elsewhere(trial.study._storage._backend, trial.study.study_name)
        seen["during"] = other.trials[trial.number]
    reports = {}
    for step in range(3):
        trial.report(x + step, step)  # Optuna's own report (no defer_report here)
        reports[step + 10] = x - step
    own_trial.write(trial, {"result": x, "act": act}, reports)
    assert reports == {}, "taken"
    return x * n


def comparable(t: optuna.trial.FrozenTrial) -> tuple:
    return (t.state, t.values, t.params, t.distributions, t.user_attrs,
            {k: v for k, v in t.system_attrs.items()}, t.intermediate_values)


def test_a_trial_is_stored_as_optuna_stores_it_in_two_transactions(storage):
    plain = optuna.create_study(study_name="plain", storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=3))
    plain.optimize(objective, n_trials=3)
    kept = optuna.create_study(study_name="kept", storage=storage,
                               sampler=optuna.samplers.RandomSampler(seed=3))
    own = own_trial.own_trials(kept)
    assert own is not None
    seen: dict = {}
    kept.optimize(lambda t: objective(t, seen), n_trials=3)
    assert own.transactions == 3 * 2, "training starts, and the result with its state"
    for a, b in zip(plain.trials, elsewhere(storage, "kept").trials, strict=True):
        assert comparable(a) == comparable(b)
        assert b.constraints == a.constraints
        # stored in Optuna's convention (naive UTC, read back as local time)
        assert abs((b.datetime_complete - a.datetime_complete).total_seconds()) < 60
    during = seen["during"]
    assert during.state == TrialState.RUNNING and set(during.params) == {"x", "n", "act"}
    assert during.user_attrs == {"worker": "w1", "shape": during.user_attrs["shape"],
                                 "direct": True}
    assert heartbeats(storage) == 3 + 3, "each trial's first beat (with its first writes)"
    own.remove()
    kept.optimize(objective, n_trials=1)  # Optuna's own path again
    assert own.transactions == 6 and len(kept.trials) == 4


def test_a_trial_is_created_with_its_worker_s_claim_and_an_enqueued_one_is_not(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    own = own_trial.own_trials(study)
    claim = {"nnsearch.created_by": ["host:1", "tag"]}
    own.claim = claim
    seen = []

    def objective(trial):  # before its first writes, as another process sees it
        seen.append(elsewhere(storage, "s").trials[trial.number])
        trial.suggest_float("x", 0, 1)
        own_trial.training_starts(trial)
        return 1.0

    study.optimize(objective, n_trials=1)
    study.enqueue_trial({"x": 0.5})
    study.optimize(objective, n_trials=1)
    assert seen[0].state == TrialState.RUNNING and seen[0].params == {}
    assert seen[0].user_attrs == claim, "in the creation's own transaction"
    assert seen[1].user_attrs == {}, "an enqueued trial is not created here"
    stored = elsewhere(storage, "s").trials
    assert stored[0].user_attrs == claim and stored[0].params.keys() == {"x"}
    assert own.transactions == 2 + 0, "the claim costs no transaction of its own"


def test_a_trial_pruned_ends_on_its_last_report_and_a_failed_one_keeps_its_record(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    own_trial.own_trials(study)

    def pruned(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        reports = {0: 0.5, 4: 0.25}
        own_trial.write(trial, {"why": "pruned"}, reports)
        raise optuna.TrialPruned()

    def failing(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        own_trial.write(trial, {"why": "failed"})
        raise RuntimeError("boom")

    study.optimize(pruned, n_trials=1)
    study.optimize(failing, n_trials=1, catch=(RuntimeError,))
    first, second = elsewhere(storage, "s").trials
    assert (first.state, first.value, first.intermediate_values) == \
        (TrialState.PRUNED, 0.25, {0: 0.5, 4: 0.25})
    assert first.user_attrs == {"why": "pruned"} and "x" in first.params
    assert (second.state, second.user_attrs) == (TrialState.FAIL, {"why": "failed"})


def test_a_trial_a_sweeper_ended_meanwhile_is_left_as_the_sweeper_left_it(storage, caplog):
    study = optuna.create_study(study_name="s", storage=storage)
    own_trial.own_trials(study)

    def swept(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        own_trial.training_starts(trial)
        other = elsewhere(storage, "s")
        other._storage.set_trial_state_values(other.trials[0]._trial_id, TrialState.FAIL)
        own_trial.write(trial, {"result": 1})
        return 1.0

    study.optimize(swept, n_trials=1)  # (Optuna's optimize would fail on an exception)
    (trial,) = elsewhere(storage, "s").trials
    assert trial.state == TrialState.FAIL and trial.user_attrs == {}
    assert "ended by the sweeper before its result was stored" in caplog.text


def test_enqueued_trials_and_other_storages_go_optuna_s_way(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    own = own_trial.own_trials(study)
    assert own is not None
    study.enqueue_trial({"x": 0.5})
    study.optimize(objective, n_trials=1)  # a WAITING trial, taken from the queue
    assert own.transactions == 0 and study.trials[0].params["x"] == 0.5
    assert study.trials[0].user_attrs["result"] == 0.5
    assert own_trial.own_trials(optuna.create_study()) is None  # in memory: nothing to do


def test_a_sampler_slower_than_a_heartbeat_has_its_trial_written_by_the_next_beat(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}",
                                         heartbeat_interval=1)
    study = optuna.create_study(study_name="s", storage=storage)
    own_trial.own_trials(study)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # x is known now
    seen = []

    def slow(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        own_trial.write(trial, {"worker": "w1"})
        other = elsewhere(storage, "s")
        seen.append(other.trials[1])  # kept back
        time.sleep(1.6)  # sampling on: the thread beats again at 1 s
        seen.append(other.trials[1])
        return 1.0

    study.optimize(slow, n_trials=1)
    assert (seen[0].params, seen[0].user_attrs) == ({}, {})
    assert "x" in seen[1].params and seen[1].user_attrs == {"worker": "w1"}
    assert heartbeats(storage) == 1  # (the first trial ended before any flush: none)
    storage.engine.dispose()


def test_a_value_optuna_would_refuse_fails_the_trial_where_optuna_did(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    own_trial.own_trials(study)

    def bad(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        own_trial.write(trial, {"not json": object()})
        return 1.0

    study.optimize(bad, n_trials=1, catch=(TypeError,))  # not the worker's end
    (trial,) = elsewhere(storage, "s").trials
    assert trial.state == TrialState.FAIL


def test_while_it_trains_a_pruner_s_records_are_written_at_once(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    own_trial.own_trials(study)
    seen = []

    def rungs(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        trial.storage.set_trial_system_attr(trial._trial_id, "before", 1)  # kept
        own_trial.training_starts(trial)
        trial.storage.set_trial_system_attr(trial._trial_id, "rung_0", 0.5)  # a pruner's
        seen.append(elsewhere(storage, "s").trials[0].system_attrs)
        assert trial.storage.get_trial_system_attrs(trial._trial_id)["rung_0"] == 0.5
        own_trial.write(trial, {"result": 1})
        trial.storage.set_trial_system_attr(trial._trial_id, "after", 2)  # kept again
        seen.append(elsewhere(storage, "s").trials[0].system_attrs)
        return 1.0

    study.optimize(rungs, n_trials=1)
    assert seen == [{"before": 1, "rung_0": 0.5}, {"before": 1, "rung_0": 0.5}]
    assert elsewhere(storage, "s").trials[0].system_attrs == {"before": 1, "rung_0": 0.5,
                                                             "after": 2}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # (ask outside optimize)
def test_a_heartbeat_that_cannot_write_the_first_writes_does_not_end_the_thread(
        tmp_path, caplog, monkeypatch):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}",
                                         heartbeat_interval=60)
    study = optuna.create_study(study_name="s", storage=storage)
    own = own_trial.own_trials(study)
    assert own is not None
    study.ask()
    trial_id = study.trials[0]._trial_id
    monkeypatch.setattr(own.rdb, "write", lambda *a, **k: (_ for _ in ()).throw(
        OSError("the storage is away")))
    own.record_heartbeat(trial_id)  # the first beat: kept
    own.record_heartbeat(trial_id)  # the second: tries to write them, and says so
    assert "first writes not recorded by its heartbeat (the storage is away)" in caplog.text
    storage.engine.dispose()
