"""[selection] recheck: the top trials retrained with more seeds, the export picks by the mean."""

import json

import numpy as np

from tests.helpers import run_cli, write_study


def test_run_rechecks_the_top_trials_and_exports_by_the_mean(tmp_path):
    study = write_study(tmp_path / "small.toml", trials=5, epochs=30)
    text = study.read_text().replace('name = "median"\nn_startup_trials = 2', 'name = "none"')
    study.write_text(text + "\n[selection]\nrecheck = 3\nseeds = 2\n")  # 5 complete trials
    res = run_cli("run", str(study), "--workers", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "re-check of the top 3 trial(s)" in res.stdout and "re-checked mean" in res.stdout
    from nnsearch.search.export import RECHECK_ATTR
    from nnsearch.search.storage import StorageURL, open_storage

    storage = open_storage(StorageURL.resolve(None, study), heartbeat=False)
    import optuna

    stored = optuna.load_study(study_name="small", storage=storage).user_attrs[RECHECK_ATTR]
    assert len(stored) == 3 and all(len(v) == 3 for v in stored.values())
    export = json.loads((tmp_path / "small-best.json").read_text())
    means = {int(n): float(np.mean(v)) for n, v in stored.items()}
    assert means[export["trial"]["number"]] == max(means.values())
    # the export keeps the trial's own seed: train reproduces the trial, not a re-check
    trained = json.loads(run_cli("train", str(tmp_path / "small-best.json"), "--json",
                                 cwd=tmp_path).stdout)
    assert trained["val_accuracy"] == export["trial"]["value"]
    # the selection is no part of what the trials are: changing it is no edit
    study.write_text(study.read_text().replace("recheck = 3", "recheck = 2"))
    res = run_cli("run", str(study), "--trials", "6", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "re-check of the top 2 trial(s)" in res.stdout
