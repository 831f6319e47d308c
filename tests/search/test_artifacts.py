"""Which new bests get which artifacts: the exported config always, the learning-curve
PNG as ``[artifacts] curves`` says (by default, while PNGs cost at most a tenth of the
worker's training)."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from nnsearch.search.errors import UsageError
from nnsearch.search.objective import CURVE_SHARE, FIRST_CURVE_SECONDS, Objective
from nnsearch.search.studyfile import definition_changes, load_study_file
from tests.helpers import run_cli, write_study

NPY = "application/octet-stream"


def artifact_kinds(db, name: str = "small") -> dict[int, set[str]]:
    """Trial number -> the mimetypes of its artifacts."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        return {t.number: {m.mimetype for m in optuna.artifacts.get_all_artifact_meta(
                    t, storage=storage)} for t in study.trials}
    finally:
        storage.engine.dispose()


def test_small_trials_get_their_config_and_no_curve_unless_asked(tmp_path):
    path = write_study(tmp_path / "small.toml", trials=6, epochs=10)
    res = run_cli("run", str(path), "--workers", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    kinds = artifact_kinds(tmp_path / "small.db")
    # trial 0 is the first best; a few ms of training pay for no PNG (~0.45 s the first);
    # every trial of the best 25 keeps its validation predictions for the ensemble (.npy)
    assert kinds[0] == {"application/json", NPY}
    assert all(k <= {"application/json", NPY} for k in kinds.values())

    asked = tmp_path / "asked"
    asked.mkdir()
    path = write_study(asked / "small.toml", trials=2, epochs=10)
    path.write_text(path.read_text() + '\n[artifacts]\ncurves = "every best"\n')
    assert run_cli("run", str(path), "--workers", "1", cwd=asked).returncode == 0
    assert artifact_kinds(asked / "small.db")[0] == {"application/json", "image/png", NPY}


def test_the_curve_budget_is_a_share_of_the_training_time():
    objective = Objective.__new__(Objective)
    objective.spec = SimpleNamespace(curves="budget")
    objective.curve_seconds, objective.curve_cost = 0.0, FIRST_CURVE_SECONDS
    objective.trained_seconds = 0.99 * FIRST_CURVE_SECONDS / CURVE_SHARE
    assert not objective.draws_curve()
    objective.trained_seconds = FIRST_CURVE_SECONDS / CURVE_SHARE
    assert objective.draws_curve()
    objective.curve_seconds, objective.curve_cost = 0.5, 0.05  # drawn once, then cheaper
    assert not objective.draws_curve()
    objective.trained_seconds = 5.5 / CURVE_SHARE
    assert objective.draws_curve()
    for curves, drawn in (("every best", True), ("none", False)):
        objective.spec = SimpleNamespace(curves=curves)
        objective.trained_seconds = 0.0 if drawn else 1e9
        assert objective.draws_curve() is drawn


def test_a_curves_setting_is_checked_and_left_out_of_the_definition(tmp_path):
    path = write_study(tmp_path / "small.toml")
    base = load_study_file(path)
    path.write_text(path.read_text() + '\n[artifacts]\ncurves = "always"\n')
    with pytest.raises(UsageError, match=r"artifacts.curves must be one of 'budget', "
                                         r"'every best', 'none', but got 'always'"):
        load_study_file(path)
    path.write_text(path.read_text().replace('"always"', '"none"'))
    spec = load_study_file(path)
    assert spec.curves == "none" and base.curves == "budget"
    assert definition_changes(base.to_dict(), spec.to_dict()) == []
