"""The package: one import name, no import circle, a NumPy-only model, safe workers."""

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import NNSEARCH, ROOT, cli_env, write_study

PACKAGE = ROOT / "nnsearch"


def test_the_wheel_installs_exactly_one_top_level_name(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT),
                          "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("nnsearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert top == {"nnsearch"}
    assert "nnsearch/model/_network.py" in names and "nnsearch/search/cli.py" in names
    # the bundled studies travel with the package (nnsearch init --example)
    assert {"nnsearch/studies/digits.toml", "nnsearch/studies/article.toml"} <= set(names)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (the symlinked folders included)."""
    out = {}
    files = [Path(d, f) for d, _, fs in os.walk(PACKAGE, followlinks=True) for f in fs]
    for path in sorted(p for p in files if p.suffix == ".py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in it (functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from pkg import mod" imports the module pkg.mod when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known}
    return found - {name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_hidden_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circle():
    mods = modules()
    assert "nnsearch.search.objective" in mods and "nnsearch.model._train" in mods
    graph = {name: imports_of(name, path, set(mods)) for name, path in mods.items()}
    assert "nnsearch.search.training" in graph["nnsearch.search.objective"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_module_of_search_or_model_is_over_400_lines():
    # a newcomer finds one concept per module: split a module that grows past this
    long = {path.relative_to(PACKAGE).as_posix(): n for path in [
        *(PACKAGE / "search").rglob("*.py"), *(PACKAGE / "model").glob("*.py")]
        if (n := len(path.read_text().splitlines())) > 400}
    assert not long, long


def test_the_model_never_imports_optuna():
    for path in (PACKAGE / "model").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("optuna", "search") for n in names), path
    code = ("import sys, nnsearch.model; "
            "sys.exit(any(m.split('.')[0] in ('optuna', 'sqlalchemy') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_version_and_log_flags_after_the_command(tmp_path):
    import nnsearch

    res = subprocess.run([*NNSEARCH, "--version"], capture_output=True, text=True,
                         env=cli_env())
    assert res.stdout.strip() == f"nnsearch {nnsearch.__version__}" == "nnsearch 0.2.0"
    study = write_study(tmp_path / "s.toml")
    quiet = subprocess.run([*NNSEARCH, "create", str(study), "-q"], capture_output=True,
                           text=True, env=cli_env(), cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = subprocess.run([*NNSEARCH, "create", str(study), "-v"], capture_output=True,
                          text=True, env=cli_env(), cwd=tmp_path)
    assert loud.returncode == 0 and "INFO nnsearch.search" in loud.stderr


@pytest.mark.slow
def test_run_from_a_folder_whose_modules_would_shadow_ours(tmp_path):
    # Half of all ML projects have a model.py; nothing in the user's folder may shadow us.
    for name in ("model", "search", "nnsearch", "optuna_dashboard"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s {name}.py')\n")
    write_study(tmp_path / "s.toml", trials=3, epochs=5)
    script = Path(sys.executable).with_name("nnsearch")
    assert script.is_file(), "install the package: pip install -e '.[test]'"
    res = subprocess.run([str(script), "run", "s.toml", "--workers", "2"], cwd=tmp_path,
                         capture_output=True, text=True, env=cli_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "ImportError" not in res.stderr and (tmp_path / "small-best.json").is_file()



def test_a_ctrl_c_while_the_command_line_loads_is_no_traceback(tmp_path):
    # The command line's imports take a few tenths of a second; a Ctrl-C in them
    # printed a KeyboardInterrupt traceback. The signal is sent from inside, as the
    # command line's first module starts to load (a timer, or a signal from outside,
    # may land before the package is loaded or after the imports are done).
    import subprocess
    import sys

    from tests.helpers import cli_env

    code = ("import os, signal, sys\n"
            "from nnsearch._command import main\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal\n"
            "def hook(event, args):\n"
            "    if event == 'import' and args[0] == 'nnsearch.search.cli':\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.addaudithook(hook)\n"
            "sys.argv = ['nnsearch', 'status', '--storage', 'sqlite:///x.db']\n"
            "sys.exit(main())\n")
    res = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, env=cli_env(),
                         capture_output=True, text=True, timeout=60)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 130, (res.returncode, res.stderr)
    assert res.stderr.strip().splitlines()[-1] == "nnsearch status: interrupted"
