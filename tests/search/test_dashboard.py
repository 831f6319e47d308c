"""The dashboard: API, read-only mode, basic auth, artifacts, a real browser; reports."""

import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from tests.helpers import NNSEARCH, cli_env, grow_by_copies, run_cli, run_small_study, write_study

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished 12-trial iris study (artifacts attached by the workers: every new best
    its curve, which by default only trials long enough to pay for it get)."""
    tmp = tmp_path_factory.mktemp("dash")
    path = write_study(tmp / "small.toml", trials=12, epochs=15)
    path.write_text(path.read_text() + '\n[artifacts]\ncurves = "every best"\n')
    res = run_cli("run", str(path), "--workers", "2", cwd=tmp)
    assert res.returncode == 0, res.stderr
    return tmp, path


class Dashboard:
    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen([*NNSEARCH, "dashboard", *args,
                                      "--port", "0"], cwd=cwd, env=env or cli_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        match = re.search(r"(https?)://[^ ]+:(\d+)/dashboard/", line)
        assert match, (line, self.proc.stderr.read() if self.proc.stderr else "")
        self.banner = line
        self.base = f"{match.group(1)}://127.0.0.1:{match.group(2)}"
        self.tls = ssl.create_default_context()  # a self-signed test certificate
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE

    def request(self, method: str, path: str, body: dict | None = None,
                auth: tuple[str, str] | None = None,
                host: str | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        if host:
            req.add_header("Host", host)
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.tls) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def get_json(self, path: str, **kwargs):
        status, body = self.request("GET", path, **kwargs)
        assert status == 200, (status, body[:200])
        return json.loads(body)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def dashboard(study):
    tmp, path = study
    opened: list[Dashboard] = []

    def start(*args: str, env=None) -> Dashboard:
        d = Dashboard(tmp, str(path), *args, env=env)
        opened.append(d)
        return d

    yield start
    for d in opened:
        d.close()


def snapshot(tmp: Path) -> list[tuple]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.load_study(study_name="small", storage=f"sqlite:///{tmp / 'small.db'}")
    study_attrs = s._storage.get_study_system_attrs(s._study_id)  # the note lives here
    return [(t.number, t.state, t.values, sorted(t.user_attrs)) for t in s.trials] + \
        [tuple(sorted((k, str(v)) for k, v in study_attrs.items()))]


def test_api_lists_the_study(dashboard):
    d = dashboard()
    assert d.banner.startswith("optuna-dashboard for sqlite:///")
    studies = d.get_json("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["small"]


def test_read_only_refuses_every_write(study, dashboard):
    tmp, _ = study
    d = dashboard("--read-only")
    detail = d.get_json("/api/studies/1")
    trial_id = detail["trials"][0]["trial_id"]
    before = snapshot(tmp)
    writes = [("POST", f"/api/trials/{trial_id}/tell", {"state": "Complete", "values": [-1e9]}),
              ("PUT", "/api/studies/1/note", {"version": 2, "body": "vandalised"}),
              ("DELETE", "/api/studies/1", None),
              ("POST", f"/api/trials/{trial_id}/user-attrs", {"user_attrs": {"x": 1}})]
    for method, path, body in writes:
        status, reply = d.request(method, path, body)
        assert status == 403, (method, path, status)
        assert b"read-only" in reply
    assert snapshot(tmp) == before
    assert d.get_json("/api/studies/1")["note"]["body"].startswith("# small")


def test_off_loopback_is_read_only_by_default(dashboard):
    d = dashboard("--host", "0.0.0.0")
    assert "read-only" in d.banner
    status, _ = d.request("PUT", "/api/studies/1/note", {"version": 2, "body": "x"})
    assert status == 403


def test_basic_auth(dashboard):
    env = cli_env() | {"NNSEARCH_DASHBOARD_USER": "ada", "NNSEARCH_DASHBOARD_PASSWORD": "s3cr3t"}
    d = dashboard(env=env)
    assert d.request("GET", "/api/studies")[0] == 401
    assert d.request("GET", "/api/studies", auth=("ada", "wrong"))[0] == 401
    assert d.request("GET", "/api/studies", auth=("ada", "s3cr3t"))[0] == 200
    assert "s3cr3t" not in d.banner


def test_a_loopback_dashboard_refuses_foreign_host_headers(dashboard):
    d = dashboard()  # writable: loopback
    assert d.request("GET", "/api/studies")[0] == 200
    assert d.request("GET", "/api/studies", host="localhost:8080")[0] == 200
    for foreign in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example"):
        status, body = d.request("GET", "/api/studies", host=foreign)
        assert status == 403 and b"Host header" in body, foreign


@pytest.mark.parametrize("variables", [
    {"NNSEARCH_DASHBOARD_PASSWORD": "secret"},
    {"NNSEARCH_DASHBOARD_USER": "me", "NNSEARCH_DASHBOARD_PASSWORD": ""},
    {"NNSEARCH_DASHBOARD_USER": "me"},
])
def test_half_configured_auth_refuses_to_start(study, variables):
    tmp, path = study
    env = {k: v for k, v in cli_env().items() if not k.startswith("NNSEARCH_DASHBOARD_")}
    res = subprocess.run([*NNSEARCH, "dashboard", str(path), "--port", "0"], cwd=tmp,
                         env=env | variables, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "half configured" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "secret" not in res.stderr


def test_tls_with_a_certificate_and_its_key(study, dashboard, tmp_path):
    tmp, path = study
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    env = cli_env() | {"NNSEARCH_DASHBOARD_USER": "ada", "NNSEARCH_DASHBOARD_PASSWORD": "s3cr3t"}
    d = dashboard("--host", "0.0.0.0", env=env)
    d.close()
    warning = [line for line in d.proc.stderr.read().splitlines() if "WARNING" in line]
    assert len(warning) == 1 and "basic auth over plain HTTP" in warning[0], warning
    d = dashboard("--host", "0.0.0.0", "--certfile", str(cert), "--keyfile", str(key), env=env)
    assert d.base.startswith("https://")
    assert d.request("GET", "/api/studies", auth=("ada", "s3cr3t"))[0] == 200
    plain = d.base.replace("https://", "http://") + "/api/studies"
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(plain, timeout=10)  # plain HTTP gets no answer
    assert d.request("GET", "/api/studies", auth=("ada", "s3cr3t"))[0] == 200  # still serving
    d.close()
    assert "plain HTTP" not in d.proc.stderr.read()  # TLS: no warning about the password
    for args, message in [(["--certfile", str(key)], "cannot use --certfile"),
                          (["--certfile", str(cert), "--keyfile", str(cert)], "cannot use"),
                          (["--certfile", str(tmp_path / "none.pem")], "no such file"),
                          (["--keyfile", str(key)], "--keyfile needs --certfile")]:
        res = run_cli("dashboard", str(path), "--port", "0", *args, cwd=tmp, timeout=60)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1


def test_trials_show_curves_diagnostics_and_artifacts(dashboard):
    d = dashboard("--read-only")
    detail = d.get_json("/api/studies/1")
    assert detail["objective_names"] == ["val_accuracy"]
    assert "Objective" in detail["note"]["body"] and "| width |" in detail["note"]["body"]
    done = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert done
    # The first trial to complete was the best so far: it has its artifacts.
    trial = min(done, key=lambda t: t["datetime_complete"])
    assert len(trial["intermediate_values"]) >= 2  # the per-epoch validation metric
    attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
    for key in ("grad_norms", "max_grad_norm", "clip_rate", "epochs_run", "n_params",
                "diverged", "seed", "train_seconds"):
        assert key in attrs, key
    kinds = {a["mimetype"]: a for a in trial["artifacts"]}
    # its curve, its config, and its validation predictions kept for the ensemble
    assert set(kinds) == {"image/png", "application/json", "application/octet-stream"}
    png = kinds["image/png"]
    status, body = d.request("GET", f"/artifacts/1/{trial['trial_id']}/{png['artifact_id']}")
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = kinds["application/json"]
    status, body = d.request("GET", f"/artifacts/1/{trial['trial_id']}/{cfg['artifact_id']}")
    exported = json.loads(body)
    assert exported["format"] == "nnsearch.trial/1"
    assert exported["trial"]["number"] == trial["number"]


def test_export_skips_a_value_the_dashboard_wrote(tmp_path):
    path = write_study(tmp_path / "small.toml", trials=3, epochs=10)
    assert run_cli("run", str(path), cwd=tmp_path).returncode == 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'small.db'}"
    s = optuna.load_study(study_name="small", storage=url)
    owned = s.ask()  # a trial a worker still owns
    d = Dashboard(tmp_path, str(path))
    try:
        status, _ = d.request("POST", f"/api/trials/{owned._trial_id}/tell",
                              {"state": "Complete", "values": [1e9]})
        assert status == 204
    finally:
        d.close()
    s = optuna.load_study(study_name="small", storage=url)
    assert s.best_trial.number == owned.number  # Optuna itself now believes it
    res = run_cli("export", str(path), cwd=tmp_path)
    assert res.returncode == 0
    assert json.loads(res.stdout)["trial"]["number"] != owned.number
    assert f"skipped completed trial(s) [{owned.number}]" in res.stderr
    status = json.loads(run_cli("status", str(path), "--json", cwd=tmp_path).stdout)
    assert status["best"]["number"] != owned.number


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _chromium() -> str:
    """$NNSEARCH_CHROMIUM, else the first Chromium-family browser on PATH."""
    given = os.environ.get("NNSEARCH_CHROMIUM")
    exe = given or next((e for e in map(shutil.which, BROWSERS) if e), None)
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    return exe


def _visible_text(html: str) -> str:
    html = re.sub(r"<(style|script|svg)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _browse(exe: str, url: str, *args: str) -> str:
    """What headless Chromium prints for ``url`` (``--dump-dom``: the rendered page)."""
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                              "--window-size=1400,1000", *args, url],
                             capture_output=True, text=True, timeout=120)
    return res.stdout


def _rendered(exe: str, url: str, *expected: str) -> str:
    """The page's visible text once it shows every ``expected`` text (the app fetches,
    then renders: more virtual time each try)."""
    text = ""
    for budget in (5000, 10000, 20000, 40000):
        text = _visible_text(_browse(exe, url, f"--virtual-time-budget={budget}", "--dump-dom"))
        if all(e in text for e in expected):
            break
    return text


def test_real_browser_renders_the_study(dashboard, tmp_path):
    exe = _chromium()
    d = dashboard("--read-only")
    n_trials = len(d.get_json("/api/studies/1")["trials"])
    assert n_trials == 12
    url = f"{d.base}/dashboard/studies/1/trials"
    expected = f"{n_trials} Trials"
    text = _rendered(exe, url, "small", expected)
    assert "small" in text and expected in text, text[:500]
    shot = tmp_path / "dashboard.png"
    _browse(exe, url, "--virtual-time-budget=10000", f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_browser_renders_a_study_of_ten_thousand_trials(tmp_path):
    """Issue #27: a 10,000-trial study opens, its trials listed and its history drawn
    (the trials are copies of a small study's, made by SQL: running them takes minutes)."""
    exe = _chromium()
    study, _ = run_small_study(tmp_path, trials=10)
    n = grow_by_copies(tmp_path / "small.db", "small", 10_000)
    d = Dashboard(tmp_path, str(study), "--read-only")
    try:
        assert len(d.get_json("/api/studies/1")["trials"]) == n
        text = _rendered(exe, f"{d.base}/dashboard/studies/1/trials", f"{n} Trials")
        assert f"{n} Trials" in text, text[:500]
        text = _rendered(exe, f"{d.base}/dashboard/studies/1", "History")
        assert "History" in text, text[:500]
    finally:
        d.close()


def test_report_writes_valid_pngs(study, tmp_path):
    import matplotlib.image

    tmp, path = study
    out = tmp_path / "report"
    res = run_cli("report", str(path), "--out", str(out), cwd=tmp)
    assert res.returncode == 0, res.stderr
    names = {"optimization_history.png", "param_importances.png", "parallel_coordinate.png",
             "learning_curves_top5.png"}
    assert {p.name for p in out.iterdir()} == names
    for name in names:
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0
