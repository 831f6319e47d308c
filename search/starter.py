"""Study files to start from (``nnsearch init``): the bundled examples, and one written
for a user's own table.

The bundled studies live in the package (``nnsearch/studies``, the repository's
``studies/`` folder), so a pip-installed user has them. ``study_for_table`` reads the
table once, as a study would, and writes what it found as comments: the task (with
the reason), the columns and what becomes of them, identifier columns it put in
``data.drop``, the metric; then the default study's sampler, pruner and search space
(read from the bundled ``digits.toml``), with k-fold cross-validation for a small
table. The text is parsed back by the study-file validator before anyone sees it, so
what ``init`` writes always runs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .data import Dataset, infer_task, load_data, normalise_labels
from .errors import UsageError, require_file
from .numeric import choose
from .readers import csv_header, file_kind, read_csv, resolve_path
from .studyfile import parse_study
from .tabular import MISSING

EXAMPLES = ("digits", "article", "digits_tradeoff")
CV_ROWS = 10_000  # up to this many rows, init writes k-fold cross-validation...
FOLDS = 3
SMALL = 2_000  # ...with more folds up to this many: trials are cheap, scores noisy
SMALL_FOLDS = 5
LARGE = 10_000  # rows from which init writes larger batches and a smaller space
# The time budget init writes: TIMEOUT_STEP seconds per ROWS_PER_STEP rows, within bounds
TIMEOUT_STEP, ROWS_PER_STEP, MAX_TIMEOUT = 60, 5_000, 900


def example_text(name: str) -> str:
    """A bundled study file, as shipped."""
    if name not in EXAMPLES:
        raise UsageError(f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}.")
    return (resources.files("nnsearch") / "studies" / f"{name}.toml").read_text("utf-8")


@dataclass
class Inferred:
    """What ``init`` found in a table, one line each for the terminal."""

    lines: list[str] = field(default_factory=list)
    data: Dataset | None = None  # the table split and preprocessed as run will

    def add(self, line: str) -> None:
        self.lines.append(line)


def study_name(path: Path) -> str:
    """The data file's stem as a safe study name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-._")[:100]
    return name if name and name[0].isalnum() else f"study-{name}"[:100]


def _one_line(text: str) -> str:
    """A comment line: a column name may hold a line break (a quoted CSV header)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a TOML basic string


def study_for_table(data: str, target: str | None, output: Path | None) -> tuple[str, Inferred]:
    """The study file's text for ``data`` (a CSV path) and what was inferred."""
    path = resolve_path(data, Path.cwd())
    require_file(path, "data file")
    if file_kind(path) != ".csv":
        raise UsageError(f"{path}: init reads a .csv table; for an .npz, write the study "
                         "file from an example (nnsearch init --example digits).")
    if not target:
        header = csv_header(path)
        shown = ", ".join(header[:20]) if len(header) >= 2 else ""
        raise UsageError("--target COL is required: the column to predict"
                         + (f" (columns: {shown})." if shown else "."))
    identifiers: list[str] = []
    dropped: list[int] = []
    table, y = read_csv(path, target, identifiers=identifiers, unlabelled="drop",
                        dropped=dropped)
    task, note = infer_task(y)
    info = Inferred()
    unlabelled = dropped[0] if dropped else 0
    info.add(f"{path.name}: {len(table)} rows, {len(table.columns)} feature column(s)"
             + (f"; {unlabelled} more row(s) have no {target!r}: left out "
                "(data.unlabelled)" if unlabelled else ""))
    numeric = [c for c in table.columns if not c.is_text]
    text = [c for c in table.columns if c.is_text]
    missing = sum(int(np.isnan(c.values).sum()) for c in numeric) + sum(
        int((c.values == c.categories.index(MISSING)).sum())
        for c in text if c.categories and MISSING in c.categories)
    info.add(f"{len(numeric)} numeric, {len(text)} text column(s)"
             + (f" ({', '.join(c.name for c in text[:8])}{' ...' if len(text) > 8 else ''})"
                if text else "") + f"; {missing} missing cell(s), imputed in training")
    if identifiers:
        info.add(f"dropped as identifiers (almost every value distinct): "
                 f"{', '.join(identifiers)}")
    _, counts = np.unique(normalise_labels(y), return_counts=True)  # per distinct value
    metric, why = _metric(task, counts)
    distinct = len(counts)
    info.add(f"task: {task} of {target!r} ({distinct} distinct value(s)"
             + (", integers taken as a quantity" if note and task == "regression" else "")
             + f"); metric: {metric}")
    if note and task == "classification":
        info.add(note)
    source = _source(path, output)
    import tomllib

    folder = output.parent if output else Path.cwd()
    # Folds need 3 rows of each class outside the test split; a class too small for that
    # is too small for one validation split too, and is refused either way.
    rows = len(table)
    folds = 0 if rows > CV_ROWS else FOLDS
    if rows <= SMALL and (task == "regression" or counts.min() * 0.8 >= SMALL_FOLDS):
        folds = SMALL_FOLDS  # (a fold needs a row of each class outside the test split)
    args = (study_name(path), source, target, task, metric, why, identifiers, info, rows)
    text_out = _render(*args, folds=folds, unlabelled=unlabelled)
    spec = parse_study(tomllib.loads(text_out), "the generated study file",
                       folder / "study.toml")  # what init writes always validates...
    # ...and splits as run will split it
    info.data = load_data(spec.data, spec.base_dir, raw=(table, y))
    picked = choose(spec, info.data, (table, y))  # (numeric.py: how numbers become inputs)
    if picked is not None:
        choice, info.data = picked
        info.add(choice.line())
        text_out = _render(*args, folds=folds, unlabelled=unlabelled,
                           quantile=choice.quantile)
        parse_study(tomllib.loads(text_out), "the generated study file", folder / "study.toml")
    return text_out, info


def _metric(task: str, counts: np.ndarray) -> tuple[str, str]:
    if task == "regression":
        return "val_rmse", "root mean squared error, in the target's units"
    share = counts.min() / counts.sum()
    return "val_loss", (f"log-loss: smooth where accuracy moves a row at a time (and "
                        f"rewards ignoring a small class); {len(counts)} classes, the "
                        f"smallest {share:.1%} of the rows")


def timeout_for(rows: int) -> int:
    """The search's time budget for a table of ``rows`` rows, in seconds."""
    return min(MAX_TIMEOUT, TIMEOUT_STEP * max(1, -(-rows // ROWS_PER_STEP)))


def fit_space(space: str, rows: int) -> str:
    """The default [space] fitted to a large table: an epoch over its rows costs what
    ``rows / LARGE`` small tables' epochs cost, so narrower networks and larger batches
    keep a trial to seconds (more of them finish in the budget). Epochs and patience
    stay: with 40 epochs and a patience of 5, a 43,000-row table's trials stopped at
    epochs 6-19, under-trained (bench/tables.py, diamonds: RMSE 677 against the MLP
    defaults' 551)."""
    if rows <= LARGE:
        return space
    for key, line in (("width", "width = { low = 16, high = 512, log = true }          "
                                "# per layer (narrower: a large table)"),
                      ("batch_size", "batch_size = [128, 256, 512]")):
        space, n = re.subn(rf"^{key} = [^\n]*$", line, space, flags=re.M)
        assert n == 1, f"studies/digits.toml: {key} must be one line of its [space]"
    return space


def _source(path: Path, output: Path | None) -> str:
    """The data path as the study file gives it: relative to the study file's folder."""
    where = (output.parent if output else Path.cwd()).resolve()
    try:
        return os.path.relpath(path, where)
    except ValueError:  # another drive
        return str(path)


def default_sections() -> dict[str, str]:
    """The bundled default study's sections (``studies/digits.toml``) as text, comments
    kept: ``init`` writes the same sampler, pruner and search space, so there is one
    default to maintain."""
    text = example_text("digits")
    # [[enqueue]] tables come last: "enqueue" is all of them, with the comment before them
    text, _, enqueue = text.partition("\n# Tried first")
    parts = re.split(r"^\[(\w+)\][ \t]*(?:#[^\n]*)?\n", text, flags=re.M)
    sections = {name: body.strip() + "\n" for name, body in zip(parts[1::2], parts[2::2],
                                                                  strict=True)}
    assert enqueue, "studies/digits.toml: its [[enqueue]] tables follow '# Tried first'"
    sections["enqueue"] = "# Tried first" + enqueue
    return sections


def _render(name: str, source: str, target: str, task: str, metric: str, why: str,
            identifiers: list[str], info: Inferred, rows: int, folds: int,
            unlabelled: int = 0, quantile: bool | None = None) -> str:
    found = "\n".join(f"#   {_one_line(line)}" for line in info.lines)
    drop = f"drop = [{', '.join(map(_q, identifiers))}]  # identifiers: no signal, only " \
           "noise\n" if identifiers else ""
    task_line = f"task = {_q(task)}  # inferred; classification | regression"
    if unlabelled:
        task_line += (f'\nunlabelled = "drop"           # {unlabelled} row(s) have no target '
                      'value: left out (without this line they are refused)')
    default = default_sections()
    space = fit_space(default["space"], rows)
    split = (f"folds = {folds}                    # cross-validation over what the test split "
             "leaves (one validation split instead: remove it, add validation = 0.2)"
             if folds else
             f"validation = 0.2             # (cross-validation instead: folds = {FOLDS})")
    timeout = timeout_for(rows)
    numeric = "" if quantile is None else (
        'numeric = "quantile"         # numbers through their quantiles to normal scores: '
        "better\n                             # than standardised here (init's comparison "
        "above)\n" if quantile else
        '# numeric = "quantile"       # numbers through their quantiles to normal scores '
        "(init\n                             # compared: not better than standardised here, "
        "above)\n")
    return f"""\
# A study for {source}, written by `nnsearch init`. What it found:
{found}
# Edit freely; `nnsearch run THIS_FILE --workers 2` checks it before it starts.

[study]
name = {_q(name)}
metric = {_q(metric)}  # {why}
seed = 42

[sampler]
{default["sampler"]}
[pruner]
{default["pruner"]}
[data]
source = {_q(source)}
target = {_q(target)}
{task_line}
{drop}# categorical = ["zip"]  # numeric codes that are categories, one-hot like text
{split}
clip = true                  # numbers beyond the training rows' range are taken at its
                             # edge: a network extrapolates an outlier wildly
{numeric}test = 0.2                   # held out: never seen by the search
seed = 0

[budget]
{f"timeout = {timeout}":<29}# seconds for {rows:,} rows: no trial starts after this,
                             # and one still running at timeout + grace is stopped
{f"# grace = {max(1, timeout // 10)}":<29}# (default: a tenth of the timeout)
# trials = 500               # also stop after this many finished trials
# target = 0.99              # stop once a trial reaches this value of the metric
# stall = 30                 # stop after 30 finished trials without a new best

[space]
{space}
{default["enqueue"]}"""


def write_new(text: str, output: str) -> Path | None:
    """``text`` to ``output`` (``-``: stdout), never over an existing file; atomically,
    so a failed write leaves nothing behind. The path written, or None for stdout."""
    import sys

    if output == "-":
        sys.stdout.write(text)
        return None
    path = Path(output)
    if path.exists():
        raise UsageError(f"{path} exists; choose another -o FILE, or remove it first.")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: no such folder.")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, path)  # fails if another process created path meanwhile
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
    except FileExistsError:
        raise UsageError(f"{path} exists; choose another -o FILE, or remove it first.") \
            from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
