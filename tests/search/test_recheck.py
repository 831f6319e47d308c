"""[selection] recheck: the top trials retrained with more seeds, the export picks by the mean."""

import json
import os
import signal
import subprocess

import numpy as np

from tests.helpers import NNSEARCH, cli_env, run_cli, write_study


def test_run_rechecks_the_top_trials_and_exports_by_the_mean(tmp_path):
    study = write_study(tmp_path / "small.toml", trials=5, epochs=30)
    text = study.read_text().replace('name = "median"\nn_startup_trials = 2', 'name = "none"')
    # 5 complete trials; one network exported (an ensemble may beat the re-checked pick)
    study.write_text(text + "\n[selection]\nrecheck = 3\nseeds = 2\nensemble = 1\n")
    res = run_cli("run", str(study), "--workers", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "re-check of the top 3 trial(s)" in res.stdout and "re-checked mean" in res.stdout
    from nnsearch.search.export import RECHECK_ATTR
    from nnsearch.search.storage import open_storage
    from nnsearch.search.storage_url import StorageURL

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


def test_ctrl_c_stops_the_recheck_and_a_finished_recheck_is_used_again(tmp_path):
    """A signal during the re-check stops it at the next epoch (it re-checked every
    trial first, then exited without an export); a later run re-checks once, and the
    next uses what is stored while the top trials are the same."""
    study = write_study(tmp_path / "small.toml", trials=6, epochs=60, data_extra="folds = 5")
    text = study.read_text().replace('name = "median"\nn_startup_trials = 2', 'name = "none"')
    study.write_text(text + "\n[selection]\nrecheck = 5\nseeds = 4\n")
    proc = subprocess.Popen([*NNSEARCH, "run", str(study), "--workers", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(), start_new_session=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "re-checked trial" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole group
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "".join([*seen, err]).count("re-checked trial") <= 2, err  # of 5
    assert "Traceback" not in err and not (tmp_path / "small-best.json").exists()
    res = run_cli("run", str(study), "--workers", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("re-checked trial") == 5
    assert (tmp_path / "small-best.json").is_file()
    again = run_cli("run", str(study), "--workers", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "re-checked already" in again.stderr and "re-checked trial" not in again.stderr
    assert "re-check of the top 5 trial(s)" in again.stdout
