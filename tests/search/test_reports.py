"""A trial's reported values: the pruner sees each at once; the storage gets them in the
trial's last write, or as they come once REPORT_WRITE_SECONDS have passed."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from nnsearch.search import objective as objective_module
from nnsearch.search.objective import Objective

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


def _bare_objective() -> Objective:
    """Only what Objective._report needs: its per-trial state."""
    objective = Objective.__new__(Objective)
    objective._reports = {}
    objective._reports_written = 0.0
    return objective


def _stored(study: optuna.Study) -> dict[int, float]:
    other = optuna.load_study(study_name=study.study_name,
                              storage=study._storage._backend.url)  # another process's view
    return other.trials[0].intermediate_values


def test_reports_wait_for_the_trial_s_write_but_not_longer_than_the_limit(tmp_path,
                                                                         monkeypatch):
    seen = []

    class Look(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            seen.append(dict(trial.intermediate_values))
            return False

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'r.db'}")
    study = optuna.create_study(study_name="r", storage=storage, pruner=Look())
    trial = study.ask()
    objective = _bare_objective()
    monkeypatch.setattr(objective_module, "REPORT_WRITE_SECONDS", 3600.0)
    objective._reports_written = objective_module.time.monotonic()
    objective._report(trial, 0.5, 0)
    objective._report(trial, 0.25, 1)
    assert trial.should_prune() is False and seen == [{0: 0.5, 1: 0.25}]
    assert _stored(study) == {}, "kept back"
    monkeypatch.setattr(objective_module, "REPORT_WRITE_SECONDS", 0.0)
    objective._report(trial, 0.75, 2)
    assert _stored(study) == {0: 0.5, 1: 0.25, 2: 0.75}, "written once the limit passed"
    assert objective._reports == {}
    storage.engine.dispose()
