"""[selection] ensemble: kept predictions, Caruana's selection, the ensemble export."""

import json
import re

import numpy as np
import optuna
import pandas as pd
import pytest

from nnsearch.model import Network, evaluate_outputs
from nnsearch.search.ensemble import (
    CANDIDATES,
    FORMAT,
    cross_check,
    greedy,
    load_candidates,
)
from tests.helpers import messy_table, run_cli, write_study


def _complementary(n: int = 60) -> tuple[list[np.ndarray], np.ndarray]:
    """Three classes; A is sure and right on the first half and unsure on the second, B
    the reverse, C middling everywhere: A alone beats C, and A with B beats both."""
    y = np.arange(n) % 3
    first = np.arange(n) < n // 2

    def outputs(p_right: np.ndarray) -> np.ndarray:
        P = np.tile(((1 - p_right) / 2)[:, None], (1, 3))
        P[np.arange(n), y] = p_right
        return P.astype(np.float32)

    a = outputs(np.where(first, 0.98, 0.4))
    b = outputs(np.where(first, 0.4, 0.98))
    c = outputs(np.full(n, 0.6))
    return [c, a, b], y


def test_the_selection_finds_two_complementary_networks():
    outputs, y = _complementary()
    judge = Network([4, 3], output="softmax")
    counts, key = greedy(outputs, y, judge, "val_loss", size=8)
    assert counts[0] == 0 and counts[1] > 0 and counts[2] > 0  # A and B, not C
    assert abs(int(counts[1]) - int(counts[2])) <= 1  # about equal weights
    alone = [greedy([o], y, judge, "val_loss", size=1)[1][0] for o in outputs]
    assert key[0] < min(alone) - 0.05
    # with one member allowed, it is the best single: A or B, never C
    one, _ = greedy(outputs, y, judge, "val_loss", size=1)
    assert np.count_nonzero(one) == 1 and one[0] == 0


def test_on_accuracy_the_selection_breaks_ties_by_the_loss():
    outputs, y = _complementary()
    judge = Network([4, 3], output="softmax")
    counts, key = greedy(outputs, y, judge, "val_accuracy", size=8)
    assert key[0] == -1.0  # every row right
    assert counts[1] > 0 and counts[2] > 0


def _loss(net):
    return lambda P, y: evaluate_outputs(net, P, y)[0]


def test_the_cross_check_scores_the_selection_on_rows_it_did_not_see():
    outputs, y = _complementary()
    judge = Network([4, 3], output="softmax")
    parts = [np.arange(len(y)) % 5 == i for i in range(5)]
    team, alone = map(np.mean, cross_check(outputs, y, judge, "val_loss", 8, parts,
                                           _loss(judge)))
    assert team < alone - 0.05
    # a team of one trial's copies is that trial: the cross-check sees no gain
    copies = [outputs[1]] * 3
    team, alone = cross_check(copies, y, judge, "val_loss", 8, parts, _loss(judge))
    assert len(team) == len(parts) and team == pytest.approx(alone)


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    """A study on a messy CSV, run by one worker (the same trials every time), whose export
    is an ensemble; then trained."""
    tmp = tmp_path_factory.mktemp("ensemble")
    messy_table(tmp / "messy.csv", rows=400)
    study = write_study(tmp / "ens.toml", name="ens", source="messy.csv", trials=12,
                        epochs=30, metric="val_loss",
                        data_extra='target = "label"\ndrop = ["id"]\nfolds = 3')
    res = run_cli("run", str(study), "--workers", "1", cwd=tmp)
    assert res.returncode == 0, res.stderr
    assert "ensemble of " in res.stdout and " alone: " in res.stdout, res.stdout
    export = json.loads((tmp / "ens-best.json").read_text())
    assert export["format"] == FORMAT
    res = run_cli("train", "ens-best.json", "--json", cwd=tmp)
    assert res.returncode == 0, res.stderr
    return tmp, export, json.loads(res.stdout)


def test_an_ensemble_export_trains_and_predicts_the_same_from_shuffled_columns(ensemble_run):
    tmp, export, trained = ensemble_run
    members = export["members"]
    assert len(members) >= 2 and abs(sum(m["weight"] for m in members) - 1) < 1e-9
    estimate = export["estimate"]
    assert export["costs"]["n_params"] == sum(m["export"]["trial"]["user_attrs"]["n_params"]
                                              for m in members)
    assert estimate["mean"] < estimate["single"]  # val_loss: lower is better
    assert estimate["folds"] == 3 and estimate["sd"] > 0 and trained["val_loss"] == \
        estimate["mean"]
    # every member's trial value reproduced, and each member's test figure printed
    numbers = [m["export"]["trial"]["number"] for m in members]
    assert [m["trial"] for m in trained["members"]] == numbers
    for shown, member in zip(trained["members"], members, strict=True):
        assert shown["trial_val_loss"] == member["export"]["trial"]["value"]
        assert 0 <= shown["test_accuracy"] <= 1
    assert 0.5 < trained["test_accuracy"] <= 1
    table = pd.read_csv(tmp / "messy.csv")
    table[table.columns[::-1]].to_csv(tmp / "shuffled.csv", index=False)
    first = run_cli("predict", "ens-best.npz", "messy.csv", "--proba", cwd=tmp)
    again = run_cli("predict", "ens-best.npz", "shuffled.csv", "--proba", cwd=tmp)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert first.stdout == again.stdout
    rows = pd.read_csv(pd.io.common.StringIO(first.stdout))
    assert len(rows) == len(table) and np.allclose(rows.filter(like="p(").sum(axis=1), 1,
                                                   atol=1e-5)
    # export --ensemble gives what run wrote (and may replace it); export alone, the
    # single best
    res = run_cli("export", "ens.toml", "--ensemble", "-o", "ens-best.json", cwd=tmp)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp / "ens-best.json").read_text()) == export
    single = json.loads(run_cli("export", "ens.toml", cwd=tmp).stdout)
    assert single["trial"]["number"] == estimate["single_trial"]


@pytest.mark.parametrize("damage, words", [
    ("missing", "member 1 of the ensemble lacks its export"),
    ("weights", "weights sum to"),
    ("study", "is of study 'other'"),
    ("zero", "member 0's weight must be a number > 0"),
    ("huge", "member 0's weight must be a number > 0"),
    ("many", "members; an ensemble holds at most 25"),
    ("estimate", "the ensemble's 'estimate' is not its figures"),
])
def test_a_damaged_ensemble_export_is_one_line_and_exit_2(ensemble_run, damage, words):
    tmp, export, _ = ensemble_run
    bad = json.loads(json.dumps(export))
    if damage == "missing":
        del bad["members"][1]["export"]
    elif damage == "weights":
        for m in bad["members"]:
            m["weight"] *= 2
    elif damage == "study":
        bad["members"][1]["export"]["study"]["name"] = "other"
    elif damage == "zero":
        bad["members"][0]["weight"] = 0
    elif damage == "many":
        bad["members"] = bad["members"] * 26
    elif damage == "estimate":
        bad["estimate"] = ["not", "a", "dict"]
    text = json.dumps(bad)
    if damage == "huge":  # an integer no float holds
        text = re.sub(r'"weight": [0-9.e-]+', '"weight": 1' + "0" * 400, text, count=1)
    (tmp / f"bad-{damage}.json").write_text(text)
    res = run_cli("train", f"bad-{damage}.json", "-o", f"bad-{damage}.npz", cwd=tmp)
    assert res.returncode == 2
    assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr and not (tmp / f"bad-{damage}.npz").exists()


def test_ensemble_1_exports_the_single_best_and_keeps_no_predictions(tmp_path):
    study = write_study(tmp_path / "one.toml", name="one", trials=4, metric="val_loss")
    study.write_text(study.read_text() + "\n[selection]\nensemble = 1\n")
    res = run_cli("run", str(study), "--workers", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "one-best.json").read_text())["format"] == "nnsearch.trial/1"
    assert not list((tmp_path / "one-artifacts").glob("**/*predictions*")) and \
        "ensemble of" not in res.stdout


def test_with_2_workers_on_postgresql_every_top_trial_keeps_its_predictions(tmp_path, pg_url,
                                                                           monkeypatch):
    """The predictions the ensemble needs are all found, and no more are kept than the
    candidates (plus what workers finishing at once may add)."""
    study = write_study(tmp_path / "pg.toml", name="pg", trials=CANDIDATES + 15, epochs=10,
                        metric="val_loss", data_extra="folds = 3")
    study.write_text(study.read_text().replace('name = "median"\nn_startup_trials = 2',
                                               'name = "none"'))  # every trial completes
    res = run_cli("run", str(study), "--workers", "2", "--storage", pg_url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    from nnsearch.search.artifacts import artifact_store
    from nnsearch.search.export import rank_trials
    from nnsearch.search.storage import open_storage
    from nnsearch.search.storage_url import StorageURL

    monkeypatch.chdir(tmp_path)  # where the workers kept their artifacts (no shared folder)
    url = StorageURL.resolve(pg_url, None)
    storage = open_storage(url, heartbeat=False)
    loaded = optuna.load_study(study_name="pg", storage=storage)
    complete = loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) > CANDIDATES
    top = rank_trials(loaded, complete)[:CANDIDATES]
    store = artifact_store(url, create=False)
    found = load_candidates(top, storage, store, rows=120)  # iris: 150 rows, 30 for test
    assert [t.number for t, _ in found] == [t.number for t in top]
    files = list((tmp_path / "nnsearch-artifacts").rglob("*"))
    kept = sum(1 for f in files if f.is_file() and f.stat().st_size > 1000 and
               f.read_bytes()[:6] == b"\x93NUMPY")
    assert CANDIDATES <= kept <= CANDIDATES + 4


def test_a_starting_points_predictions_stay_however_it_ranks(tmp_path):
    """The export may keep a starting point (the noise rule), and an ensemble is judged
    against it: its predictions are kept when it ranks below the candidates, without
    costing a candidate its own, and are not removed when better trials push it out;
    another trial's are. A starting point is a trial queued with a table, not one whose
    sampled parameters happen to hold it."""
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
    from optuna.distributions import FloatDistribution

    from nnsearch.search.ensemble import keep_predictions
    from nnsearch.search.noise import is_starting_point

    store = FileSystemArtifactStore(str(tmp_path))
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    space = {"x": FloatDistribution(0.0, 100.0), "y": FloatDistribution(0.0, 1.0)}
    tables = [{"x": 50.0}]

    def finish(queued: dict, value: float) -> tuple[optuna.trial.FrozenTrial, bool]:
        study.enqueue_trial(queued)
        trial = study.ask(space)
        start = is_starting_point(study.trials[trial.number], tables)
        kept = keep_predictions(trial, store, np.zeros((4, 1)), value, None, tables, start)
        study.tell(trial, value)
        return study.trials[-1], kept

    def has(trial: optuna.trial.FrozenTrial) -> bool:
        return any(m.filename == f"predictions-{trial.number}.npy"
                   and (tmp_path / m.artifact_id).is_file()
                   for m in get_all_artifact_meta(trial, storage=storage))

    early, _ = finish({"x": 1.0}, 10.0)  # ranks first for now, then is pushed out
    fillers = [finish({"x": 2.0 + i}, -100.0 + i)[0] for i in range(CANDIDATES)]
    assert not has(early) and has(fillers[-1])
    start, kept = finish({"x": 50.0}, 20.0)  # below the candidates, and a starting point
    assert kept and has(fillers[-1])  # the 25th candidate keeps its own
    _, holds_it = finish({"x": 50.0, "y": 0.5}, 20.0)  # holds the table, queued otherwise
    assert not holds_it
    for i in range(8):  # better trials push the starting point further down
        finish({"x": 60.0 + i}, -200.0 - i)
    assert has(study.trials[start.number]) and not has(fillers[-1])
