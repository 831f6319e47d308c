"""A password, in any form, never appears: output, exports, artifacts, the dashboard, ps."""

import contextlib
import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import NNSEARCH, cli_env, run_cli, worker_pids, write_study


@pytest.mark.parametrize("form", ["userinfo", "query", "at sign", "environment"])
def test_passwords_never_appear(tmp_path, pg_url, form):
    # PostgreSQL here trusts local connections: any password is accepted, none is needed.
    secret = {"userinfo": pg_url.replace("postgres@", "postgres:hunter2@"),
              "query": pg_url + "?password=hunter2",
              "at sign": pg_url.replace("postgres@", "postgres:hun@ter2@"),
              "environment": pg_url.replace("postgres@", "postgres:hunter2@")}[form]
    leaks = ("hunter2", "ter2")
    env = cli_env() | {"NNSEARCH_STORAGE": secret} if form == "environment" else cli_env()
    storage = [] if form == "environment" else ["--storage", secret]
    study = write_study(tmp_path / "small.toml", trials=2, epochs=30)
    proc = subprocess.Popen([*NNSEARCH, "run", str(study), *storage], cwd=tmp_path, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    worker_lines = set()
    while proc.poll() is None:  # the workers' command lines, as ps shows them
        for pid in worker_pids(str(study)):
            with contextlib.suppress(OSError):
                worker_lines.add((Path("/proc") / str(pid) / "cmdline").read_bytes().decode())
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert worker_lines, "no worker seen"

    def cli(*args):
        res = run_cli(*args, *storage, cwd=tmp_path, env=env)
        return res.stdout + res.stderr

    texts = [out, err, *worker_lines, (tmp_path / "small-best.json").read_text(),
             cli("status", str(study)), cli("export", str(study)),
             cli("doctor", str(study)), cli("create", str(study)),
             cli("status", "--study", "nosuch")]
    texts += [p.read_text(errors="replace") for p in (tmp_path / "nnsearch-artifacts").rglob("*")
              if p.is_file()]
    dash = subprocess.Popen([*NNSEARCH, "dashboard", str(study), *storage, "--port", "0"],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        banner = dash.stdout.readline()
        port = re.search(r":(\d+)/dashboard/", banner).group(1)
        def get(path):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
                texts.append(r.read().decode())
            return json.loads(texts[-1])

        for study_summary in get("/api/studies")["study_summaries"]:
            get(f"/api/studies/{study_summary['study_id']}")
        texts.append(banner)
    finally:
        dash.terminate()
        texts.append(dash.communicate(timeout=10)[1])
    for text in texts:
        assert not any(leak in text for leak in leaks), text[:300]
    assert len(texts) > 12 and "***" in (tmp_path / "small-best.json").read_text()
