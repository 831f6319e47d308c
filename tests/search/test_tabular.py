"""Tables as users have them: text columns, missing cells, identifiers, rare categories."""

import os

import numpy as np
import pytest

from nnsearch.search.data import DataSpec, infer_task, load_data
from nnsearch.search.errors import UsageError
from nnsearch.search.readers import read_csv, read_rows
from nnsearch.search.tabular import MAX_CATEGORIES, MISSING, OTHER, Preprocessor, fit_preprocessor


def _table(tmp_path, rows, name="t.csv"):
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return path


def _mixed(n=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["num,color,label"]
    for i in range(n):
        num = "" if i % 10 == 0 else f"{rng.normal() + 5:.3f}"
        color = "" if i % 25 == 0 else ["red", "blue", "green"][i % 3]
        rows.append(f"{num},{color},{['yes', 'no'][i % 2]}")
    return rows


def test_missing_numbers_get_the_training_median_and_an_indicator(tmp_path):
    table, _ = read_csv(_table(tmp_path, _mixed()), "label")
    train = np.arange(0, 200, 2)  # rows 0, 2, 4, ...: every 10th is missing
    prep = fit_preprocessor(table, train)
    assert prep.feature_names[:2] == ["num", "num?missing"]
    values = table.columns[0].values
    assert prep.columns[0]["median"] == pytest.approx(np.nanmedian(values[train]))
    raw = prep.transform(table, standardise=False)
    assert raw[0, 0] == pytest.approx(prep.columns[0]["median"]) and raw[0, 1] == 1.0
    assert raw[1, 0] == pytest.approx(values[1]) and raw[1, 1] == 0.0
    scaled = prep.transform(table, train)
    numeric = [i for i, name in enumerate(prep.feature_names) if "=" not in name]
    assert numeric == [0, 1]
    np.testing.assert_allclose(scaled[:, numeric].mean(axis=0), 0, atol=1e-6)  # on train
    np.testing.assert_allclose(scaled[:, numeric].std(axis=0), 1, atol=1e-5)
    # one-hot inputs stay 0/1: standardised, a rare category became a large input
    one_hot = scaled[:, 2:]
    assert set(np.unique(one_hot)) == {0.0, 1.0}
    np.testing.assert_array_equal(one_hot.sum(axis=1), 1)
    np.testing.assert_array_equal(one_hot, raw[train, 2:])


def test_clip_takes_numbers_beyond_the_training_range_at_its_edge(tmp_path):
    rows = _mixed()
    for i, value in ((3, "1e6"), (5, "-1e6")):  # outliers outside the training rows, as
        rows[i + 1] = value + rows[i + 1][rows[i + 1].index(","):]  # data-entry slips make
    table, _ = read_csv(_table(tmp_path, rows), "label")
    values = table.columns[0].values
    train = np.arange(0, 200, 2)
    prep = fit_preprocessor(table, train, clip=True)
    low, high = prep.columns[0]["low"], prep.columns[0]["high"]
    assert (low, high) == (np.nanmin(values[train]), np.nanmax(values[train]))
    raw = prep.transform(table, standardise=False)
    assert raw[3, 0] == pytest.approx(high) and raw[5, 0] == pytest.approx(low)
    assert raw[7, 0] == pytest.approx(values[7])  # within the range: as it was
    assert raw[0, 0] == pytest.approx(prep.columns[0]["median"])  # missing: the median
    # the record says so, and a record without it (clip off, or before 0.3) does not clip
    again = Preprocessor.from_dict(prep.to_dict())
    assert again.transform(table, standardise=False)[3, 0] == pytest.approx(high)
    plain = fit_preprocessor(table, train)
    assert "low" not in plain.columns[0]
    assert plain.transform(table, standardise=False)[3, 0] == pytest.approx(1e6)
    # the same split, fitted and clipped through the study file's data.clip
    path = tmp_path / "t.csv"
    on = load_data(DataSpec(str(path), target="label", clip=True))
    off = load_data(DataSpec(str(path), target="label"))
    assert np.array_equal(on.X_train, off.X_train)  # the rows it was fitted on: unchanged
    assert on.X_test.max() <= on.X_train.max() + 1e-6


def test_quantile_maps_numbers_to_normal_scores_as_scikit_learn_does(tmp_path):
    from sklearn.preprocessing import QuantileTransformer

    rng = np.random.default_rng(3)
    rows = ["money,flag,color,label"]
    for i in range(300):  # a skewed column with missing cells, a 0/1 flag, a text column
        money = "" if i % 10 == 0 else f"{rng.lognormal(3, 1.5):.4f}"
        rows.append(f"{money},{i % 2},{['red', 'blue'][i % 3 == 0]},{i % 2}")
    table, _ = read_csv(_table(tmp_path, rows), "label")
    train = np.arange(0, 300, 3)
    prep = fit_preprocessor(table, train, quantile=True)
    plain = fit_preprocessor(table, train)
    filled = np.where(np.isnan(v := table.columns[0].values), prep.columns[0]["median"], v)
    peer = QuantileTransformer(n_quantiles=len(train), output_distribution="normal",
                               random_state=0).fit(filled[train].reshape(-1, 1))
    expected = peer.transform(filled.reshape(-1, 1))[:, 0]  # every row: train and beyond
    raw = prep.transform(table, standardise=False)
    np.testing.assert_allclose(raw[:, 0], expected, rtol=1e-5, atol=1e-5)
    scaled = prep.transform(table, train)  # then standardised on the training rows
    assert abs(scaled[:, 0].mean()) < 1e-5 and abs(scaled[:, 0].std() - 1) < 1e-4
    assert "quantiles" not in prep.columns[2]  # two values: as standardised without it
    np.testing.assert_array_equal(scaled[:, 2:], plain.transform(table, train)[:, 2:])
    # the record carries the quantiles; numbers far beyond them stay within the clip
    again = Preprocessor.from_dict(prep.to_dict())
    far = _table(tmp_path, ["money,flag,color", "1e12,0,red", "-5,1,blue"], "far.csv")
    X = again.transform(read_csv(far, None)[0], standardise=False)
    assert 5.1 < X[0, 0] < 5.3 and -5.3 < X[1, 0] < -5.1
    # through the study file's data.numeric, on the same split
    on = load_data(DataSpec(str(tmp_path / "t.csv"), target="label", numeric="quantile"))
    off = load_data(DataSpec(str(tmp_path / "t.csv"), target="label"))
    assert on.X_train.shape == off.X_train.shape and not np.allclose(on.X_train, off.X_train)
    assert DataSpec("t.csv", numeric="quantile").to_dict()["numeric"] == "quantile"
    assert "numeric" not in DataSpec("t.csv").to_dict()  # stored studies stay the same


def test_text_columns_are_one_hot_with_a_missing_category_and_other(tmp_path):
    table, _ = read_csv(_table(tmp_path, _mixed()), "label")
    color = table.columns[1]
    assert color.categories == sorted(["blue", "green", "red", MISSING])
    prep = fit_preprocessor(table, np.arange(200))
    names = [n for n in prep.feature_names if n.startswith("color=")]
    assert names == [f"color={c}" for c in ("<missing>", "blue", "green", "red")] + \
        [f"color={OTHER}"]
    raw = prep.transform(table, standardise=False)
    onehot = raw[:, 2:]
    assert (onehot.sum(axis=1) == 1).all()
    assert onehot[0, 0] == 1 and onehot[1, names.index("color=blue")] == 1


def test_rare_and_unseen_categories_go_to_other(tmp_path):
    rows = ["c,label"] + [f"{'common' if i % 2 else 'also'},{i % 2}" for i in range(60)]
    rows += ["rare,0", "rare,1"]  # seen twice: below MIN_COUNT
    table, _ = read_csv(_table(tmp_path, rows), "label")
    prep = fit_preprocessor(table, np.arange(len(table)))
    assert prep.columns[0]["categories"] == ["also", "common"]
    new = _table(tmp_path, ["c", "common", "rare", "never seen"], "new.csv")
    rows_ = read_rows(new, prep.columns)
    assert prep.unseen(rows_) == {"c": 1}  # "rare" was seen in training: not new
    raw = prep.transform(rows_, standardise=False)
    np.testing.assert_array_equal(raw, [[0, 1, 0], [0, 0, 1], [0, 0, 1]])


def test_a_category_explosion_keeps_the_most_frequent(tmp_path):
    rows = ["code,label"] + [f"k{i % 100},{i % 2}" for i in range(2000)]  # 100 codes x 20
    table, _ = read_csv(_table(tmp_path, rows), "label")
    prep = fit_preprocessor(table, np.arange(len(table)))
    assert len(prep.columns[0]["categories"]) == MAX_CATEGORIES
    assert prep.n_inputs == MAX_CATEGORIES + 1


def test_an_identifier_column_is_refused_with_a_hint(tmp_path):
    rows = ["name,x,label"] + [f"person{i},{i},{i % 2}" for i in range(50)]
    path = _table(tmp_path, rows)
    with pytest.raises(UsageError, match=r"column 'name' looks like an identifier \(50 distinct "
                       r"values in 50 rows\); drop it with data\.drop = \['name'\]"):
        read_csv(path, "label")
    table, _ = read_csv(path, "label", drop=("name",))
    assert table.names == ["x"]


def test_categorical_codes_are_one_category_however_written(tmp_path):
    rows = ["zip,label"] + [f"{['10', '10.0', '20', '30'][i % 4]},{i % 2}" for i in range(40)]
    table, _ = read_csv(_table(tmp_path, rows), "label", categorical=("zip",))
    assert table.columns[0].categories == ["10", "20", "30"]
    prep = fit_preprocessor(table, np.arange(len(table)))
    # predict reads the codes the same way: 20.0 is the category 20, not a new one
    new = read_rows(_table(tmp_path, ["zip", "20.0", "10"], "new.csv"), prep.columns)
    assert prep.unseen(new) == {}
    X = prep.transform(new, standardise=False)
    at = prep.feature_names.index("zip=20")
    assert X[0, at] == 1.0 and X[1, prep.feature_names.index("zip=10")] == 1.0


def test_a_numeric_column_with_a_typo_names_the_cell(tmp_path):
    rows = ["x,label"] + [f"{i}.5,{i % 2}" for i in range(40)]
    rows[7] = "6.5.1,0"
    with pytest.raises(UsageError, match=r"column 'x' is numeric except 1 cell\(s\) \(e\.g\. "
                       r"'6\.5\.1' at line 8\)"):  # rows[7] is the file's line 8
        read_csv(_table(tmp_path, rows), "label")


@pytest.mark.parametrize(("values", "task"), [
    ([str(i % 3) for i in range(100)], "classification"),
    ([str(i) for i in range(100)], "regression"),  # 100 distinct integers: a quantity
    ([f"{i / 3:.2f}" for i in range(100)], "regression"),
    (["a", "b"] * 50, "classification"),
])
def test_task_inference(values, task):
    got, note = infer_task(np.array(values))
    assert got == task
    if task == "regression" and values[1] == "1":
        assert "data.task" in note and "100 distinct integer values" in note


def test_a_symlink_named_csv_into_a_cache_without_extension(tmp_path):
    # DVC and git-annex keep the file under its hash; the link has the name.
    store = tmp_path / ".dvc" / "cache" / "ab"
    store.mkdir(parents=True)
    (store / "cdef0123").write_text("\n".join(_mixed()) + "\n")
    os.symlink(store / "cdef0123", tmp_path / "data.csv")
    data = load_data(DataSpec("data.csv", target="label"), base=tmp_path)
    assert data.classes == ["no", "yes"]


def test_a_file_that_is_not_a_table_is_never_quoted(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hunter2hash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    os.symlink(secret, tmp_path / "data.csv")
    with pytest.raises(UsageError) as err:
        load_data(DataSpec("data.csv", target="label"), base=tmp_path)
    assert "hunter2" not in str(err.value) and "daemon" not in str(err.value)
    assert "not in the header" in str(err.value)


def test_the_record_survives_json_and_a_020_record_still_predicts():
    from nnsearch.search.builtin import numeric_table

    table = numeric_table(np.array([[1.0, 2.0], [3.0, 6.0]]), ["a", "b"])
    prep = fit_preprocessor(table, np.arange(2))
    again = Preprocessor.from_dict(prep.to_dict())
    np.testing.assert_array_equal(again.transform(table), prep.transform(table))
    old = Preprocessor.from_dict({"feature_names": ["a", "b"], "x_mean": [2.0, 4.0],
                                  "x_scale": [1.0, 2.0]})
    np.testing.assert_array_equal(old.transform(table), [[-1, -1], [1, 1]])


def test_an_error_names_the_line_where_the_row_starts_past_quoted_line_breaks(tmp_path):
    path = tmp_path / "t.csv"
    rows = ['a,note,label', '1.5,"two\nlines",x', '', '2.5,"three\nmore\nlines",y']
    rows += [f"{i}.5,plain,{'xy'[i % 2]}" for i in range(20)] + ["oops,plain,x"]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(UsageError, match=r"'oops' at line 28\)"):
        read_csv(path, "label")
    assert path.read_text().splitlines()[27] == "oops,plain,x"  # line 28, row 22


def _standardised_one_hot(monkeypatch):
    """fit_preprocessor as it was before one-hot inputs stayed 0/1: each one-hot input
    standardised with its category's share p of the training rows (float64 counts / n)
    and sqrt(p(1 - p))."""
    import nnsearch.search.data as data_module

    def old(table, rows, clip=False, quantile=False):
        prep = fit_preprocessor(table, rows, clip=clip, quantile=quantile)
        X = prep.transform(table, rows, standardise=False)
        for i in prep.one_hot_inputs():
            p = np.count_nonzero(X[:, i]) / len(rows)
            prep.mean[i], prep.scale[i] = p, float(np.sqrt(p * (1 - p))) or 1.0
        return prep

    monkeypatch.setattr(data_module, "fit_preprocessor", old)


@pytest.mark.parametrize("folds", [0, 3])
def test_a_study_with_standardised_one_hot_inputs_keeps_them_bit_for_bit(tmp_path,
                                                                         monkeypatch, folds):
    """A study (or export) made while one-hot inputs were standardised records their
    statistics; ``scaled_as`` gives it those very inputs from today's 0/1 ones."""
    spec = DataSpec(str(_table(tmp_path, _mixed())), target="label", folds=folds, clip=True)
    data = load_data(spec)
    hot = data.prep.one_hot_inputs()
    assert [data.feature_names[i] for i in hot] == ["color=blue", "color=green",
                                                    "color=red", "color=<other>"]
    assert set(np.unique(data.X_train[:, hot])) == {0.0, 1.0}
    with monkeypatch.context() as patch:
        _standardised_one_hot(patch)
        old = load_data(spec)
    assert not np.array_equal(old.X_train, data.X_train)  # they did differ
    again = data.scaled_as(old.preprocessing())
    assert again.preprocessing() == old.preprocessing()  # the model file records those
    for name in ("X_train", "X_val", "X_test"):
        got, want = getattr(again, name), getattr(old, name)
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), name  # bit for bit, row by row
    assert data.scaled_as(data.preprocessing()) is data and data.scaled_as(None) is data
    # only one-hot inputs are moved; a record of other inputs is not this data's
    other = old.preprocessing() | {"x_mean": [m + 1 for m in old.preprocessing()["x_mean"]]}
    assert data.scaled_as(other).X_train[:, 0].tobytes() == data.X_train[:, 0].tobytes()
    with pytest.raises(UsageError, match="x_mean and x_scale must be"):
        data.scaled_as(old.preprocessing() | {"x_scale": [1.0]})


def test_an_export_with_standardised_one_hot_inputs_reproduces_its_trial(tmp_path,
                                                                         monkeypatch):
    """``retrain`` (``nnsearch train``) trains an old export's trial on its own inputs:
    the value it recorded, exactly."""
    from nnsearch.search.export import retrain
    from nnsearch.search.training import metric_value, train_trial

    spec = DataSpec(str(_table(tmp_path, _mixed())), target="label", clip=True)
    with monkeypatch.context() as patch:
        _standardised_one_hot(patch)
        old = load_data(spec)
    network = {"layer_sizes": [old.n_features, 8, old.n_outputs], "activation": "relu",
               "output": "softmax", "init": "he_normal", "dropout": 0.0, "seed": 7,
               "dtype": "float32"}
    training = {"epochs": 5, "batch_size": 32, "learning_rate": 0.01, "optimizer": "adam",
                "patience": None, "seed": 7, "log_every": 0}
    *_, loss, score, _, _ = train_trial(network, training, old)
    value = metric_value("val_loss", old, loss, score)
    config = {"study": {"metric": "val_loss"}, "data": spec.to_dict(), "network": network,
              "training": training, "preprocessing": old.preprocessing(),
              "trial": {"number": 0, "value": value, "user_attrs": {}}}
    *_, metrics = retrain(config, "old.json")
    assert metrics["val_loss"] == value
    del config["preprocessing"]  # without the record: today's inputs, another value
    *_, metrics = retrain(config, "old.json")
    assert metrics["val_loss"] != value


def test_a_study_made_with_standardised_one_hot_inputs_goes_on_with_them(tmp_path):
    """The CLI: a study whose stored preprocessing has standardised one-hot inputs (as
    one created before they stayed 0/1 has) trains its new trials on those inputs, so
    that their exports still reproduce."""
    import json

    import optuna

    from nnsearch.search.study import PREP_ATTR

    from ..helpers import messy_table, run_cli

    messy_table(tmp_path / "customers.csv", rows=200)
    assert run_cli("init", "customers.csv", "--target", "label", cwd=tmp_path).returncode == 0
    res = run_cli("run", "customers.toml", "--workers", "1", "--trials", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    study = optuna.load_study(study_name="customers",
                              storage=f"sqlite:///{tmp_path / 'customers.db'}")
    prep = study.user_attrs[PREP_ATTR]
    names = prep["feature_names"]
    hot = [i for i, name in enumerate(names) if name.startswith(("city=", "plan="))]
    assert hot and all(prep["x_mean"][i] == 0 and prep["x_scale"][i] == 1 for i in hot)
    for i in hot:  # as a study created before would hold them
        prep["x_mean"][i], prep["x_scale"][i] = 0.25, 0.4330127018922193
    study.set_user_attr(PREP_ATTR, prep)
    res = run_cli("run", "customers.toml", "--workers", "1", "--trials", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = run_cli("export", "customers.toml", "--trial", "1", "-o", "one.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "one.json").read_text())["preprocessing"] == prep
    res = run_cli("train", "one.json", "--seeds", "1", cwd=tmp_path)
    assert res.returncode == 0 and "not reproduced" not in res.stderr, res.stderr
