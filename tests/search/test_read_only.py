"""A study folder the user may only read: status, export and train still work."""

import json
import os
import shutil
import subprocess

import pytest

from tests.helpers import run_cli, write_study


def chattr(flag: str, *paths) -> bool:
    exe = shutil.which("chattr")
    return exe is not None and subprocess.run([exe, flag, *map(str, paths)],
                                              capture_output=True).returncode == 0


@pytest.fixture
def read_only_study(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    study = write_study(folder / "s.toml", trials=2, epochs=5)
    assert run_cli("run", str(study), cwd=folder).returncode == 0
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    # Root may write anywhere: the immutable flag is what stops even root.
    if not chattr("+i", *files, *[p for p in folder.rglob("*") if p.is_dir()], folder):
        if os.environ.get("CI") == "true":
            pytest.fail("chattr +i is needed to make a folder read-only for root")
        pytest.skip("chattr +i is not available here")
    try:
        assert subprocess.run(["touch", str(folder / "new")], capture_output=True).returncode
        yield folder, study
    finally:
        chattr("-i", folder, *folder.rglob("*"))


def test_status_export_and_train_work_on_a_read_only_folder(read_only_study, tmp_path):
    folder, study = read_only_study
    out = tmp_path / "mine"
    out.mkdir()
    res = run_cli("status", str(study), "--json", cwd=out)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["complete"] + json.loads(res.stdout)["pruned"] == 2
    res = run_cli("export", str(study), "-o", "-", cwd=out)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["format"] == "nnsearch.trial/1"
    res = run_cli("export", str(study), "-o", str(out / "best.json"), cwd=out)
    assert res.returncode == 0, res.stderr
    res = run_cli("train", str(folder / "small-best.json"), "-o", str(out / "m.npz"), cwd=out)
    assert res.returncode == 0, res.stderr
    assert (out / "m.npz").is_file() and (out / "m.png").is_file()
    # Writing commands say why they cannot, in one line.
    res = run_cli("run", str(study), "--trials", "3", cwd=out)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    # train's default output is beside its export: refused before any training, as is an
    # init there (both failed with a raw OSError, train only after the whole retrain)
    res = run_cli("train", str(folder / "small-best.json"), cwd=out)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "small-best.npz: its folder is read-only" in res.stderr
    res = run_cli("init", "--example", "digits", "-o", str(folder / "d.toml"), cwd=out)
    assert res.returncode == 2 and "d.toml: its folder is read-only" in res.stderr, res.stderr
