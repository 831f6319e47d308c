"""docker-compose.yml: checked statically, and its topology run as local processes."""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers import NNSEARCH, cli_env, run_cli, write_study

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
OUR_SERVICES = ("create", "worker", "dashboard")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def _ref(value: str) -> bool:
    """True when a value comes from the environment (${VAR...}) rather than a literal."""
    return bool(re.fullmatch(r"\$\{[A-Z_]+(:?[-?][^}]*)?\}", value))


def test_every_command_is_a_real_cli_command(compose):
    for name in OUR_SERVICES:
        command = compose["services"][name]["command"]
        res = run_cli(*command, "--help", cwd=ROOT)
        assert res.returncode == 0, (name, res.stderr)
        assert f"nnsearch {command[0]}" in res.stdout


def test_postgres_has_a_healthcheck_and_a_named_volume(compose):
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.split(":")[0] in compose["volumes"] for v in pg["volumes"])


def test_startup_order(compose):
    services = compose["services"]
    assert services["create"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("worker", "dashboard"):
        assert services[name]["depends_on"]["create"]["condition"] == \
            "service_completed_successfully"
    assert services["worker"]["restart"].startswith("on-failure")
    assert "replicas" in services["worker"]["deploy"]
    assert services["dashboard"]["command"][:1] == ["dashboard"]
    assert "--read-only" in services["dashboard"]["command"]


def test_no_port_is_published_on_all_interfaces(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            spec = port if isinstance(port, str) else port.get("host_ip", "")
            assert isinstance(port, str) and spec.startswith("127.0.0.1:"), (name, port)


def test_no_secret_is_a_literal(compose):
    text = COMPOSE.read_text()
    assert not re.search(r"://[^:/@\s]+:(?!\$\{)[^@\s]+@", text), "a password inside a URL"
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|KEY", key):
                assert isinstance(value, str) and _ref(value), (name, key, value)
    example = (ROOT / ".env.example").read_text()
    for var in set(re.findall(r"\$\{([A-Z_]+)", text)):
        assert re.search(rf"^{var}=", example, re.M), f"{var} is missing from .env.example"


def test_studies_are_mounted_not_baked_in(compose):
    for name in OUR_SERVICES:
        assert any(v.startswith("./studies:") for v in compose["services"][name]["volumes"])


def test_dockerfile_runs_as_non_root_with_nnsearch_entrypoint():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert 'ENTRYPOINT ["nnsearch"]' in text
    assert "[test]" not in text  # no dev tools in the image


def test_docker_compose_config_validates():
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True) \
        if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("docker compose is not available on this machine, so `docker compose "
                    "config` cannot validate the file; the checks above parse it instead")
    env = dict(os.environ, POSTGRES_PASSWORD="x")
    res = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (the forms the file uses)."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose would refuse to start: {arg}")
        return arg
    return re.sub(r"\$\{([A-Z_]+)(:[-?])?([^}]*)\}", one, value)


def _service_env(compose, pg_url: str, artifacts: Path) -> dict[str, str]:
    """The services' environment, as compose would give it, pointed at local PostgreSQL."""
    env = cli_env()
    env.pop("NNSEARCH_DASHBOARD_USER", None)
    env.pop("NNSEARCH_DASHBOARD_PASSWORD", None)
    given = env | {"POSTGRES_PASSWORD": "unused-here"}
    for key, value in compose["x-nnsearch"]["environment"].items():
        env[key] = _interpolate(str(value), given)
    env["NNSEARCH_STORAGE"] = pg_url
    env["NNSEARCH_ARTIFACTS"] = str(artifacts)
    env["NNSEARCH_HEARTBEAT"] = "1"
    return env


def test_compose_topology_as_local_processes(compose, tmp_path, pg_url):
    """create, then 3 workers, then dashboard --read-only, as compose runs them."""
    study = write_study(tmp_path / "small.toml", trials=10, epochs=15)
    env = _service_env(compose, pg_url, tmp_path / "artifacts")

    def command(name: str) -> list[str]:
        return [str(study) if part == "studies/digits.toml" else part
                for part in compose["services"][name]["command"]]

    run = subprocess.run([*NNSEARCH, *command("create")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    workers = [subprocess.Popen([*NNSEARCH, *command("worker")],
                                cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
               for _ in range(3)]
    dash = subprocess.Popen([*NNSEARCH, *command("dashboard"),
                             "--port", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        banner = dash.stdout.readline() if dash.stdout else ""
        port = re.search(r":(\d+)/dashboard/", banner)
        assert port, banner
        assert "read-only" in banner and "nnsearch:" not in banner
        for w in workers:
            assert w.wait(timeout=300) == 0, w.stderr.read() if w.stderr else ""
        base = f"http://127.0.0.1:{port.group(1)}"
        with urllib.request.urlopen(f"{base}/api/studies", timeout=30) as resp:
            names = [s["study_name"] for s in json.load(resp)["study_summaries"]]
        assert names == ["small"]
        req = urllib.request.Request(f"{base}/api/studies/1/note", method="PUT",
                                     data=b'{"version": 2, "body": "x"}')
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 403
    finally:
        dash.terminate()
        dash.wait(timeout=10)
        for w in workers:
            w.kill()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(pg_url)
    trials = optuna.load_study(study_name="small", storage=storage).trials
    storage.engine.dispose()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 10
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_grpc_proxy_carries_two_workers(tmp_path, pg_url):
    pytest.importorskip("grpc", reason="the grpc extra is not installed")
    study = write_study(tmp_path / "small.toml", trials=6, epochs=10)
    env = cli_env() | {"NNSEARCH_STORAGE": pg_url}
    assert run_cli("create", str(study), cwd=tmp_path, env=env).returncode == 0
    port = "13077"
    proxy = subprocess.Popen([*NNSEARCH, "proxy", "--host", "127.0.0.1",
                              "--port", port], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proxy.stdout.readline() if proxy.stdout else ""
        assert f"grpc://127.0.0.1:{port}" in banner, banner
        time.sleep(0.5)
        wenv = cli_env() | {"NNSEARCH_STORAGE": f"grpc://127.0.0.1:{port}"}
        workers = [subprocess.Popen([*NNSEARCH, "worker", str(study)],
                                    cwd=tmp_path, env=wenv, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
        for w in workers:
            assert w.wait(timeout=300) == 0, w.stderr.read() if w.stderr else ""
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
    storage = optuna.storages.RDBStorage(pg_url)
    trials = optuna.load_study(study_name="small", storage=storage).trials
    storage.engine.dispose()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 6
    assert not [t for t in trials if t.state == TrialState.RUNNING]
