"""The stored study is the truth: an edited file or changed data is refused, and an old
trial is exported and retrained from its own record."""

import hashlib
import json

import numpy as np

from tests.helpers import run_cli, write_study


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_old_trial_is_retrained_from_its_record_after_the_file_is_edited(tmp_path):
    study = write_study(tmp_path / "s.toml", trials=2, epochs=8)
    assert run_cli("run", str(study), cwd=tmp_path).returncode == 0
    original = study.read_text()
    study.write_text(original.replace('source = "iris"', 'source = "iris"\nseed = 1'))
    db = tmp_path / "s.db"
    before = digest(db)
    res = run_cli("run", str(study), cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "data.seed: 0 -> 1" in res.stderr and "--study small" in res.stderr
    assert digest(db) == before
    # Readers go on, with the stored definition (and say so).
    res = run_cli("export", str(study), "--trial", "0", "-o", "t0.json", cwd=tmp_path)
    assert res.returncode == 0 and "using the stored one" in res.stderr, res.stderr
    config = json.loads((tmp_path / "t0.json").read_text())
    assert config["data"]["seed"] == 0
    res = run_cli("train", "t0.json", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["val_accuracy"] == config["trial"]["value"]
    # The stored definition runs by name, without the file; the budget may grow.
    (tmp_path / "small-best.json").unlink()
    res = run_cli("run", "--study", "small", "--storage", f"sqlite:///{db}", "--trials", "3",
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "small-best.json").is_file()
    study.write_text(original.replace("\ntrials = 2", "\ntrials = 4"))  # no edit: the budget
    assert run_cli("run", str(study), cwd=tmp_path).returncode == 0


def test_changed_data_is_refused_by_run_worker_and_train(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    rows = ["a,b,label"] + [f"{a:.4f},{b:.4f},{int(a > 0)}" for a, b in X]
    data = tmp_path / "d.csv"
    data.write_text("\n".join(rows) + "\n")
    study = write_study(tmp_path / "d.toml", name="d", source="d.csv", trials=2, epochs=5,
                        data_extra='target = "label"')
    assert run_cli("run", str(study), cwd=tmp_path).returncode == 0
    data.write_text("\n".join([*rows[:-1], "9.9,9.9,1"]) + "\n")
    db = tmp_path / "d.db"
    before = digest(db)
    cached = sorted((tmp_path / "d-cache").iterdir())  # the data the study was created on
    assert len(cached) == 1
    for command in ("run", "worker"):
        res = run_cli(command, str(study), cwd=tmp_path)
        assert res.returncode == 2, (command, res.stderr)
        assert "changed since study 'd' was created" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert digest(db) == before
    assert sorted((tmp_path / "d-cache").iterdir()) == cached  # nothing cached for refusals
    res = run_cli("train", "d-best.json", cwd=tmp_path)
    assert res.returncode == 2 and "changed since trial" in res.stderr, res.stderr


def test_a_result_that_does_not_reproduce_is_an_error(tmp_path):
    study = write_study(tmp_path / "s.toml", trials=1, epochs=5)
    assert run_cli("run", str(study), cwd=tmp_path).returncode == 0
    export = tmp_path / "small-best.json"
    config = json.loads(export.read_text())
    config["trial"]["value"] = config["trial"]["value"] - 0.125  # as if edited
    export.write_text(json.dumps(config))
    res = run_cli("train", str(export), cwd=tmp_path)
    assert res.returncode == 1 and "not reproduced" in res.stderr, res.stderr
    assert res.stdout.startswith("val_accuracy=")  # the metrics are still shown
