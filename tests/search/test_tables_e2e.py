"""Your own table, end to end through the CLI, as a new user would: init, run, export,
train, predict; a planted signal in a text column against scikit-learn's pipeline;
regression in the target's units."""

import csv
import hashlib
import json

import numpy as np
import pytest

from tests.helpers import messy_table, run_cli


def _ok(res):
    assert res.returncode == 0, res.stderr
    return res


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(path):
    return list(csv.reader(path.open(newline="")))


def _write(path, rows):
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.mark.parametrize("name", ["digits", "article"])
def test_init_writes_the_bundled_examples(tmp_path, name):
    from tests.helpers import ROOT

    _ok(run_cli("init", "--example", name, cwd=tmp_path))
    assert (tmp_path / f"{name}.toml").read_text() == (ROOT / "studies" / f"{name}.toml"
                                                       ).read_text()
    res = run_cli("init", "--example", name, cwd=tmp_path)  # never over a file
    assert res.returncode == 2 and "exists" in res.stderr


@pytest.mark.slow
def _kept_as_run_loads_it(study, table):
    """``init`` kept the table, split and preprocessed, where ``run`` looks first: the
    same arrays and preprocessing as a load of the file gives."""
    from nnsearch.search.cache import ARRAYS, cache_dir, load_cached
    from nnsearch.search.data import file_fingerprint, load_data
    from nnsearch.search.study import target_from_args

    target = target_from_args(str(study), None, None)
    kept = load_cached(cache_dir(target.url), target.spec.data, file_fingerprint(table))
    fresh = load_data(target.spec.data, target.spec.base_dir)
    assert kept is not None and kept.prep.to_dict() == fresh.prep.to_dict()
    for name in (*ARRAYS, "fold_ids"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(fresh, name))


def test_a_messy_table_from_init_to_predict(tmp_path):
    data = messy_table(tmp_path / "customers.csv")
    res = _ok(run_cli("init", "customers.csv", "--target", "label", cwd=tmp_path))
    assert "dropped as identifiers (almost every value distinct): id" in res.stderr
    assert "task: classification of 'label'" in res.stderr
    study = tmp_path / "customers.toml"
    assert 'drop = ["id"]' in study.read_text()
    _kept_as_run_loads_it(study, data)
    res = _ok(run_cli("run", "customers.toml", "--workers", "2", "--trials", "6", cwd=tmp_path))
    assert "2 text column(s) one-hot" in res.stdout and "dropped: id" in res.stdout
    _ok(run_cli("export", "customers.toml", "-o", "best.json", cwd=tmp_path))
    export = json.loads((tmp_path / "best.json").read_text())
    columns = {c["name"]: c for c in export["preprocessing"]["columns"]}
    assert set(columns) == {"age", "income", "city", "plan"}
    assert columns["city"]["kind"] == "text" and "brest" not in columns["city"]["categories"]
    trained = json.loads(_ok(run_cli("train", "best.json", "--json", cwd=tmp_path)).stdout)
    assert 0.5 < trained["test_accuracy"] <= 1.0

    # the same rows, columns shuffled and the target left out: identical predictions
    rows = _rows(data)
    order = [3, 1, 4, 2, 0]  # city, age, plan, income, id
    _write(tmp_path / "shuffled.csv", [[r[i] for i in order] for r in rows])
    first = _ok(run_cli("predict", "best.npz", "customers.csv", "--proba", cwd=tmp_path))
    again = _ok(run_cli("predict", "best.npz", "shuffled.csv", "--proba", cwd=tmp_path))
    assert first.stdout == again.stdout
    out = list(csv.DictReader(first.stdout.splitlines()))
    assert len(out) == len(rows) - 1
    assert {r["prediction"] for r in out} <= {"churned", "stayed"}
    p = np.array([[float(r["p(churned)"]), float(r["p(stayed)"])] for r in out])
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-4)
    assert "ignoring column(s) the model does not use: id" in again.stderr

    # a city first seen now goes to <other>, counted in one line; empty cells are imputed
    _write(tmp_path / "new.csv", [rows[0][:5], ["u9", "30", "40", "marseille", "pro"],
                                  ["u8", "", "", "", "basic"]])
    res = _ok(run_cli("predict", "best.npz", "new.csv", cwd=tmp_path))
    assert len(res.stdout.splitlines()) == 3
    warnings = [line for line in res.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "city: 1" in warnings[0] and "<other>" in warnings[0]

    # a header without rows, and rows that all end with a comma (a field more than the
    # header): one line and exit 2, or the same predictions, never shifted columns
    _write(tmp_path / "header.csv", [rows[0]])
    res = run_cli("predict", "best.npz", "header.csv", cwd=tmp_path)
    assert res.returncode == 2 and "a header but no data rows" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    (tmp_path / "trailing.csv").write_text("\n".join(
        ",".join(r) + ("," if i else "") for i, r in enumerate(rows)) + "\n")
    trailing = _ok(run_cli("predict", "best.npz", "trailing.csv", "--proba", cwd=tmp_path))
    assert trailing.stdout == first.stdout

    # a missing column: one line, exit 2, nothing stored changed
    before = _sha(tmp_path / "customers.db")
    _write(tmp_path / "nocity.csv", [[r[i] for i in (0, 1, 2, 4)] for r in rows[:5]])
    res = run_cli("predict", "best.npz", "nocity.csv", cwd=tmp_path)
    assert res.returncode == 2 and "missing column(s) ['city']" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert _sha(tmp_path / "customers.db") == before


def _planted(path, rows=2000, seed=1):
    """The label is the XOR of a text column and another: only a model that one-hot
    encodes ``city`` and combines it with ``plan`` finds it; the numbers are noise."""
    rng = np.random.default_rng(seed)
    lines = [["a", "b", "city", "plan", "label"]]
    cities = ["paris", "lyon", "nice", "lille", "nantes", "rennes"]
    for _ in range(rows):
        city, plan = cities[rng.integers(0, 6)], ["basic", "pro"][rng.integers(0, 2)]
        label = "yes" if (city in ("paris", "nice", "rennes")) ^ (plan == "pro") else "no"
        a = f"{rng.normal():.3f}" if rng.random() > 0.05 else ""
        b = f"{rng.normal():.3f}" if rng.random() > 0.05 else ""
        lines.append([a, b, city, plan, label])
    return _write(path, lines)


def _sklearn_pipeline_accuracy(path, spec):
    """scikit-learn's answer to a table like this one, on nnsearch's own split."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from nnsearch.search.data import split_rows

    frame = pd.read_csv(path)
    y = frame.pop("label").to_numpy()
    _, codes = np.unique(y, return_inverse=True)
    train, _val, test = split_rows(spec, len(frame), codes)
    model = make_pipeline(
        ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()),
             ["a", "b"]),
            ("text", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                   OneHotEncoder(handle_unknown="ignore")), ["city", "plan"]),
        ]),
        MLPClassifier(random_state=0, max_iter=500))
    model.fit(frame.iloc[train], y[train])
    return float(model.score(frame.iloc[test], y[test]))


@pytest.mark.slow
def test_a_planted_text_signal_is_found_as_well_as_by_sklearn(tmp_path):
    from nnsearch.search.studyfile import load_study_file

    _planted(tmp_path / "planted.csv")
    _ok(run_cli("init", "planted.csv", "--target", "label", cwd=tmp_path))
    # init's space is the default's, wide: its first 20 trials are random; 16 of them hold
    # a configuration that learns the XOR with near certainty
    _ok(run_cli("run", "planted.toml", "--workers", "2", "--trials", "16", cwd=tmp_path))
    trained = json.loads(_ok(run_cli("train", "planted-best.json", "--json", "--seeds", "1",
                                     cwd=tmp_path)).stdout)  # (what is found, not averaged)
    spec = load_study_file(tmp_path / "planted.toml").data  # the same test rows (3 folds:
    # both fit on train + validation)
    theirs = _sklearn_pipeline_accuracy(tmp_path / "planted.csv", spec)
    # The label is a function of two columns: both should be perfect, nnsearch no worse.
    assert trained["test_accuracy"] >= theirs, (trained, theirs)
    assert trained["test_accuracy"] >= 0.97, trained


@pytest.mark.slow
def test_regression_on_diabetes_in_the_target_units(tmp_path):
    from sklearn.datasets import load_diabetes

    (tmp_path / "d.toml").write_text(
        '[study]\nname = "d"\nmetric = "val_rmse"\n[data]\nsource = "diabetes"\n'
        '[budget]\ntrials = 6\n[space]\nwidth = { low = 16, high = 128 }\n'
        'learning_rate = { low = 1e-3, high = 1e-2, log = true }\nepochs = 150\n'
        'patience = 15\n')
    _ok(run_cli("run", "d.toml", "--workers", "2", cwd=tmp_path))
    trained = json.loads(_ok(run_cli("train", "d-best.json", "--json", cwd=tmp_path)).stdout)
    assert 35 < trained["test_rmse"] < 90, trained  # the target spans 25..346; its std is 77
    bunch = load_diabetes()
    _write(tmp_path / "rows.csv", [bunch.feature_names, *bunch.data[:50].tolist()])
    out = _ok(run_cli("predict", "d-best.npz", "rows.csv", cwd=tmp_path)).stdout.splitlines()
    values = np.array([float(v) for v in out[1:]])
    assert len(values) == 50 and 60 < values.mean() < 250  # units of the target, not z-scores
    rmse = float(np.sqrt(np.mean((values - bunch.target[:50]) ** 2)))
    assert rmse < 90, rmse


@pytest.mark.slow
def test_an_integer_target_with_many_values_is_regression_with_a_note(tmp_path):
    rng = np.random.default_rng(0)
    size = rng.uniform(30, 200, 800)
    rooms = rng.integers(1, 6, 800)
    price = (1000 * size + 5000 * rooms + rng.normal(0, 5000, 800)).round(-2).astype(int)
    _write(tmp_path / "houses.csv", [["size", "rooms", "price"],
                                     *zip(size.round(1), rooms, price, strict=True)])
    res = _ok(run_cli("init", "houses.csv", "--target", "price", cwd=tmp_path))
    assert "task: regression of 'price'" in res.stderr and "metric: val_rmse" in res.stderr
    text = (tmp_path / "houses.toml").read_text()
    assert "\ntimeout = 60 " in text and "\ntrials" not in text  # a time budget, no count
    text = text.replace("[budget]\n", "[budget]\ntrials = 6\n")
    (tmp_path / "houses.toml").write_text(text.replace('task = "regression"', ""))
    res = _ok(run_cli("run", "houses.toml", "--workers", "2", cwd=tmp_path))
    assert "taken as regression" in res.stderr and "data.task" in res.stderr
    trained = json.loads(_ok(run_cli("train", "houses-best.json", "--json",
                                     cwd=tmp_path)).stdout)
    assert trained["test_rmse"] < 0.5 * price.std(), (trained, price.std())
    out = _ok(run_cli("predict", "houses-best.npz", "houses.csv", cwd=tmp_path)).stdout
    values = np.array([float(v) for v in out.splitlines()[1:]])
    assert abs(values.mean() - price.mean()) < 0.2 * price.std()


def test_an_integer_target_of_many_classes_says_how_it_was_taken(tmp_path):
    """200 distinct integers in 6,000 rows are few enough to be classes, but a user should
    hear that it was a choice, and how to make the other."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=6000)
    code = rng.integers(0, 200, 6000)
    _write(tmp_path / "codes.csv", [["x", "code"], *zip(x.round(3), code, strict=True)])
    res = _ok(run_cli("init", "codes.csv", "--target", "code", cwd=tmp_path))
    assert "taken as classification into 200 classes" in res.stderr
    assert 'data.task = "regression"' in res.stderr


def _hitters_like(path, rows=120, unlabelled=15, seed=0):
    """A salary table as published: a text column, and rows whose salary is not known."""
    rng = np.random.default_rng(seed)
    years = rng.integers(1, 20, rows)
    hits = rng.integers(20, 200, rows)
    league = rng.choice(["A", "N"], rows)
    salary = (50 * years + 2 * hits + 100 * (league == "N") + rng.normal(0, 40, rows)).round(1)
    cells = [str(v) for v in salary]
    for i in rng.choice(rows, unlabelled, replace=False):
        cells[i] = ["", "NA"][i % 2]
    return _write(path, [["years", "hits", "league", "salary"],
                         *zip(years, hits, league, cells, strict=True)])


def test_init_leaves_out_unlabelled_rows_and_says_so(tmp_path):
    _hitters_like(tmp_path / "pay.csv")
    res = _ok(run_cli("init", "pay.csv", "--target", "salary", cwd=tmp_path))
    assert "105 rows" in res.stderr and "15 more row(s) have no 'salary'" in res.stderr
    text = (tmp_path / "pay.toml").read_text()
    assert 'unlabelled = "drop"' in text and "15 row(s) have no target value" in text
    # the same file without that line refuses the rows, naming the option, before any work
    (tmp_path / "strict.toml").write_text(text.replace('unlabelled = "drop"', "")
                                          .replace('name = "pay"', 'name = "strict"'))
    res = run_cli("run", "strict.toml", "--trials", "1", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "15 row(s) have an empty or missing target 'salary'" in res.stderr
    assert 'data.unlabelled = "drop"' in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "strict.db").exists()
    # a value init would never write, and a key for a bundled set
    for bad, message in (('unlabelled = "drop"', 'unlabelled = "keep"'),
                         ('source = "pay.csv"', 'source = "pay.npz"')):
        (tmp_path / "bad.toml").write_text(text.replace(bad, message))
        res = run_cli("create", "bad.toml", cwd=tmp_path)
        assert res.returncode == 2 and "data.unlabelled" in res.stderr, res.stderr


@pytest.mark.slow
def test_an_init_study_spends_its_time_and_predicts_in_the_target_units(tmp_path):
    """A study as init writes it: a time budget and no trial count, so a small table's
    search goes on until its timeout; its export predicts salaries, not z-scores."""
    import time

    _hitters_like(tmp_path / "pay.csv")
    _ok(run_cli("init", "pay.csv", "--target", "salary", cwd=tmp_path))
    text = (tmp_path / "pay.toml").read_text()
    (tmp_path / "pay.toml").write_text(text.replace("\ntimeout = 60 ", "\ntimeout = 6 "))
    start = time.monotonic()
    _ok(run_cli("run", "pay.toml", "--workers", "2", cwd=tmp_path))
    assert time.monotonic() - start >= 6  # not ended by a count of trials
    status = json.loads(_ok(run_cli("status", "pay.toml", "--json", cwd=tmp_path)).stdout)
    assert status["complete"] + status["pruned"] > 3, status
    export = json.loads((tmp_path / "pay-best.json").read_text())
    estimate = export["estimate"]
    assert estimate["metric"] == "val_rmse" and estimate["folds"] == 5 and estimate["sd"] > 0
    if export["format"] == "nnsearch.trial/1":
        assert estimate["mean"] == export["trial"]["value"]
    else:  # an ensemble of the best trials, chosen on their kept predictions
        assert estimate["mean"] < estimate["single"]
    res = _ok(run_cli("train", "pay-best.json", cwd=tmp_path))
    assert " ± " in res.stdout and "mean ± sd of 5 folds" in res.stdout
    rows = _rows(tmp_path / "pay.csv")
    labelled = [r for r in rows[1:] if r[3] not in ("", "NA")]
    out = _ok(run_cli("predict", "pay-best.npz", "pay.csv", cwd=tmp_path)).stdout.splitlines()
    values = np.array([float(v) for v in out[1:]])
    assert len(values) == len(rows) - 1  # unlabelled rows are predicted too
    truth = np.array([float(r[3]) for r in labelled])
    assert abs(values.mean() - truth.mean()) < 0.3 * truth.std()  # salaries, not z-scores


def test_init_asks_the_table_how_its_numbers_become_inputs(tmp_path):
    """A class set by a threshold on a skewed column: its quantiles (normal scores) beat
    standardising it; a target linear in a skewed column: standardising keeps the line.
    init trains the study's first starting point both ways on its folds, and writes
    data.numeric = "quantile" only where that wins beyond the folds' noise."""
    rng = np.random.default_rng(0)
    n = 300
    x, z = rng.lognormal(0, 2, n), rng.normal(size=n)
    label = np.where(x > np.median(x), "high", "low")
    flip = rng.random(n) < 0.05
    label[flip] = np.where(label[flip] == "high", "low", "high")
    _write(tmp_path / "skewed.csv", [["x", "z", "label"], *zip(x, z, label, strict=True)])
    x, z = rng.lognormal(0, 1, n), rng.normal(size=n)
    amount = 3 * x + 0.3 * rng.normal(size=n)
    _write(tmp_path / "linear.csv", [["x", "z", "amount"], *zip(x, z, amount, strict=True)])
    for name, target, chosen in (("skewed", "label", True), ("linear", "amount", False)):
        res = _ok(run_cli("init", f"{name}.csv", "--target", target, cwd=tmp_path))
        line = next(li for li in res.stderr.splitlines() if "numbers:" in li)
        assert ("through their quantiles" in line) == chosen, line
        assert "val_loss over 5 folds" in line, line
        text = (tmp_path / f"{name}.toml").read_text()
        assert ('\nnumeric = "quantile"' in text) == chosen
        assert '# numeric = "quantile"' in text or chosen  # offered where not chosen
    # the study runs on what init kept, and its export predicts through the quantiles
    _ok(run_cli("run", "skewed.toml", "--trials", "2", cwd=tmp_path))
    prep = json.loads((tmp_path / "skewed-best.json").read_text())["preprocessing"]
    assert "quantiles" in prep["columns"][0]
