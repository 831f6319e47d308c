"""The acceptance path: run studies/digits.toml, export the best, retrain it."""

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


# The default search (60 s here, running trials stopped at 66 s), then train's 3 folds
# and refit: over the suite's 300 s default on a loaded 2-core machine (seen: 3 xdist
# processes beside other work).
@pytest.mark.timeout(900)
def test_digits_study_export_and_retrain(tmp_path):
    study = tmp_path / "digits.toml"
    shutil.copy(ROOT / "studies" / "digits.toml", study)
    # the README's main job, in 60 s of its 90 (the suite's time: the starting points alone
    # reach the bar below; bench/digits.py measures the whole budget)
    res = run_cli("run", str(study), "--workers", "2", "--timeout", "60", cwd=tmp_path,
                  timeout=600)
    assert res.returncode == 0, res.stderr
    assert "best trial" in res.stdout and "exported config:" in res.stdout

    exported = tmp_path / "best.json"
    assert run_cli("export", str(study), "-o", str(exported), cwd=tmp_path).returncode == 0
    config = json.loads(exported.read_text())
    res = run_cli("train", str(exported), "--json", "--seeds", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)
    # About 0.98 here; another CPU's BLAS sums in another order and takes the search down
    # another path. The bar keeps a margin that holds on any machine; the precise claim
    # lives in bench/digits.py, over ten split seeds.
    assert metrics["test_accuracy"] >= 0.95, metrics
    # Same seeds, same folds: train reproduces the trial's cross-validated value exactly,
    # then refits on train + validation for the folds' mean epochs
    assert metrics["val_loss"] == config["trial"]["value"]
    assert metrics["folds"] == 3 and metrics["refit_epochs"] >= 1
    # The search never touched the test split: only validation metrics were reported.
    assert config["study"]["metric"] == "val_loss"
