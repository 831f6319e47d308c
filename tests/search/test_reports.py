"""A trial's reported values: the pruner sees each at once; the storage gets them in the
trial's last write, or as they come once REPORT_WRITE_SECONDS have passed."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from nnsearch.search import worker_storage
from nnsearch.search._optuna import cached_storage, rdb_of
from nnsearch.search.worker_storage import WorkerStorage, training_starts

from ..helpers import run_cli, write_study


def test_every_reported_value_is_stored_and_a_pruned_trial_ends_on_its_last(tmp_path):
    study = write_study(tmp_path / "small.toml", trials=12)
    study.write_text(study.read_text().replace("n_startup_trials = 2",
                                               "n_startup_trials = 2\nreport_every = 2"))
    res = run_cli("run", str(study), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    trials = optuna.load_study(study_name="small",
                               storage=f"sqlite:///{tmp_path / 'small.db'}").trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(trials) == 12 and pruned, [t.state for t in trials]
    for t in trials:
        epochs = t.user_attrs["epochs_run"]
        assert sorted(t.intermediate_values) == [e for e in range(epochs) if (e + 1) % 2 == 0], \
            (t.number, epochs, t.intermediate_values)
    for t in pruned:  # Optuna gives a pruned trial its last reported value
        assert t.value == t.intermediate_values[max(t.intermediate_values)]


def _stored(storage: optuna.storages.RDBStorage, name: str) -> dict[int, float]:
    other = optuna.load_study(study_name=name, storage=storage.url)  # another process's view
    return other.trials[0].intermediate_values


def test_reports_wait_for_the_trial_s_write_but_not_longer_than_the_limit(tmp_path,
                                                                         monkeypatch):
    seen = []

    class Look(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            seen.append(dict(trial.intermediate_values))
            return False

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'r.db'}")
    ours = WorkerStorage(cached_storage(storage), rdb_of(storage))
    study = optuna.create_study(study_name="r", storage=ours, pruner=Look())
    trial = study.ask()
    monkeypatch.setattr(worker_storage, "REPORT_WRITE_SECONDS", 3600.0)
    training_starts(trial)
    trial.report(0.5, 0)
    trial.report(0.25, 1)
    assert trial.should_prune() is False and seen == [{0: 0.5, 1: 0.25}]
    assert _stored(storage, "r") == {}, "kept back"
    monkeypatch.setattr(worker_storage, "REPORT_WRITE_SECONDS", 0.0)
    trial.report(0.75, 2)
    assert _stored(storage, "r") == {0: 0.5, 1: 0.25, 2: 0.75}, "written once the limit passed"
    monkeypatch.setattr(worker_storage, "REPORT_WRITE_SECONDS", 3600.0)
    trial.report(1.0, 3)
    study.tell(trial, 1.0)
    assert _stored(storage, "r") == {0: 0.5, 1: 0.25, 2: 0.75, 3: 1.0}, "with the state"
    storage.engine.dispose()
