"""Datasets: every bundled one, CSV and NPZ; the split and the scaling; bad data."""

import numpy as np
import pytest

from nnsearch.search.data import BUILTIN, DataSpec, load_data, shifted_copies
from nnsearch.search.errors import UsageError


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_bundled_datasets_split_and_scale(name):
    data = load_data(DataSpec(name, validation=0.2, test=0.2, seed=1))
    n = len(data.X_train) + len(data.X_val) + len(data.X_test)
    assert len(data.X_val) == pytest.approx(0.2 * n, abs=2)
    assert len(data.X_test) == pytest.approx(0.2 * n, abs=2)
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-5)
    stds = data.X_train.std(axis=0)
    assert np.all((np.abs(stds - 1) < 1e-3) | (stds < 1e-6))
    assert data.X_train.dtype == np.float32
    if data.task == "classification":
        # Stratified: every class keeps its share in each part.
        shares = [np.bincount(y, minlength=len(data.classes)) / len(y)
                  for y in (data.y_train, data.y_val, data.y_test)]
        np.testing.assert_allclose(shares[0], shares[1], atol=0.04)
        np.testing.assert_allclose(shares[0], shares[2], atol=0.04)
    else:
        assert name == "diabetes"
        assert data.y_train.mean() == pytest.approx(0, abs=1e-9)
    again = load_data(DataSpec(name, validation=0.2, test=0.2, seed=1))
    np.testing.assert_array_equal(again.X_val, data.X_val)
    other = load_data(DataSpec(name, validation=0.2, test=0.2, seed=2))
    assert not np.array_equal(other.X_val, data.X_val)


def test_shifted_copies_move_each_image_one_pixel_four_ways():
    image = np.zeros((4, 5))
    image[1, 2] = 7.0
    out = shifted_copies(image.reshape(1, 20), (4, 5), 1).reshape(-1, 4, 5)
    assert len(out) == 5
    np.testing.assert_array_equal(out[0], image)
    lit = [tuple(int(v) for v in np.argwhere(copy)[0]) for copy in out[1:]]
    assert lit == [(2, 2), (0, 2), (1, 3), (1, 1)]  # down, up, right, left
    assert all(copy.sum() == 7.0 for copy in out)
    # Shifted past the edge, the pixel is gone and the uncovered edge is background.
    edge = np.zeros((4, 5))
    edge[0, 0] = 1.0
    far = shifted_copies(edge.reshape(1, 20), (4, 5), 2).reshape(-1, 4, 5)
    assert len(far) == 9
    assert [int(copy.sum()) for copy in far] == [1, 1, 0, 1, 0, 1, 0, 1, 0]


def test_shift_augments_train_only_with_the_same_scaling():
    plain = load_data(DataSpec("digits"))
    shifted = load_data(DataSpec("digits", shift=1))
    n = len(plain.X_train)
    assert len(shifted.X_train) == 5 * n and len(shifted.y_train) == 5 * n
    np.testing.assert_array_equal(shifted.X_train[:n], plain.X_train)
    np.testing.assert_array_equal(np.tile(plain.y_train, 5), shifted.y_train)
    for part in ("X_val", "y_val", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(shifted, part), getattr(plain, part))
    np.testing.assert_array_equal(shifted.prep.mean, plain.prep.mean)
    # The first copy is every image moved one row down, in raw pixels: row 0 is background.
    raw = (shifted.X_train[n:2 * n] * plain.prep.scale + plain.prep.mean).reshape(n, 8, 8)
    raw_plain = (plain.X_train * plain.prep.scale + plain.prep.mean).reshape(n, 8, 8)
    np.testing.assert_allclose(raw[:, 0, :], 0, atol=1e-4)
    np.testing.assert_allclose(raw[:, 1:, :], raw_plain[:, :-1, :], atol=1e-4)


def test_image_shape_must_match_the_features(tmp_path):
    path = tmp_path / "img.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.random((60, 12)), y=np.arange(60) % 3)
    data = load_data(DataSpec(str(path), image_shape=(3, 4), shift=1))
    assert len(data.X_train) == 5 * (60 - len(data.X_val) - len(data.X_test))
    with pytest.raises(UsageError, match=r"image_shape \[4, 4\] holds 16 pixels, but the "
                                         r"data has 12 features"):
        load_data(DataSpec(str(path), image_shape=(4, 4)))
    with pytest.raises(UsageError, match=r"shift must be below the image's smaller side \(3\)"):
        load_data(DataSpec(str(path), image_shape=(3, 4), shift=3))
    with pytest.raises(UsageError, match=r"data\.shift needs data\.image_shape"):
        load_data(DataSpec(str(path), shift=1))


def _csv(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(n=30, label=lambda i: ["cat", "dog", "eel"][i % 3]):
    lines = ["a,b,kind"]
    rng = np.random.default_rng(0)
    for i in range(n):
        lines.append(f"{rng.normal():.3f},{rng.normal() + i % 3:.3f},{label(i)}")
    return "\n".join(lines) + "\n"


def test_csv_with_string_labels(tmp_path):
    path = _csv(tmp_path, _rows())
    data = load_data(DataSpec(str(path), target="kind"))
    assert data.task == "classification"
    assert data.classes == ["cat", "dog", "eel"]
    assert data.feature_names == ["a", "b"]
    # Training statistics only: the validation part is not exactly standardised.
    assert data.prep.mean.shape == (2,)


def test_csv_regression_is_inferred(tmp_path):
    path = _csv(tmp_path, _rows(label=lambda i: f"{i * 0.37:.2f}"))
    data = load_data(DataSpec(str(path), target="kind"))
    assert data.task == "regression" and data.y_scale > 0


def test_npz_source(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    data = load_data(DataSpec("d.npz"), base=tmp_path)
    assert data.task == "classification" and data.classes == [0, 1]
    assert data.n_features == 4


@pytest.mark.parametrize(("text", "pattern"), [
    ("", r"the CSV file is empty"),
    ("a,b,kind\n", r"header but no data rows"),
    (_rows().replace("kind", "label"), r"target column 'kind' is not in the header"),
    (_rows().replace("0.", "x.", 1), r"column 'a' is numeric except 1 cell\(s\) \(e\.g\. 'x\."
     r".*' at line 2\); fix them, or list the column in data\.categorical"),
    (_rows(label=lambda i: "cat"), r"single class \('cat'\)"),
    (_rows() + "inf,1,cat\n", r"column 'a' holds infinite values \(first at line 32\)"),
    (_rows() + "1.0,2.0,cat,9\n", r"line 32 has 4 fields, the header has 3"),
    (_rows() + "1.0,2.0,\n",
     r"1 row\(s\) have an empty or missing target 'kind' \(first at line 32;"),
    ("a,a,kind\n" + _rows().split("\n", 1)[1], r"names column\(s\) \['a'\] more than once"),
    (_rows().replace("a,b,", "a,b,c,", 1).replace(",cat", ",,cat").replace(",dog", ",,dog")
     .replace(",eel", ",,eel"), r"column 'c' is empty \(no value in any row\); drop it"),
    (_rows(label=lambda i: "x" if i < 29 else "y"), r"class 'y' has only 1 sample\(s\).*"
     r"data\.task = \"regression\""),
])
def test_bad_csv(tmp_path, text, pattern):
    path = _csv(tmp_path, text)
    with pytest.raises(UsageError, match=pattern) as err:
        load_data(DataSpec(str(path), target="kind"))
    assert str(path) in str(err.value)


def test_bad_npz(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((20, 2)))
    with pytest.raises(UsageError, match=r"needs arrays 'X' and 'y'; missing \['y'\]"):
        load_data(DataSpec(str(tmp_path / "d.npz")))
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(UsageError, match=r"cannot read as \.npz"):
        load_data(DataSpec(str(tmp_path / "bad.npz")))
    with pytest.raises(UsageError, match="data file not found"):
        load_data(DataSpec(str(tmp_path / "missing.csv"), target="y"))


def test_numeric_looking_labels_are_one_class_however_written(tmp_path):
    rows = ["x,label"] + [f"{i},{['1', '1.0', ' 1', '2', '2.00'][i % 5]}" for i in range(40)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_data(DataSpec("labels.csv", target="label"), base=tmp_path)
    assert data.classes == [1, 2]
    rows = ["x,label"] + [f"{i},{['a', 'b', '10'][i % 3]}" for i in range(30)]
    (tmp_path / "text.csv").write_text("\n".join(rows) + "\n")
    assert load_data(DataSpec("text.csv", target="label"), base=tmp_path).classes == \
        ["10", "a", "b"]  # not all numbers: text, as written
