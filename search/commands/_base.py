"""What every command shares: the base class, argument types, shared arguments, consoles."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from ..errors import UsageError
from ..storage_url import ENV_STORAGE, StorageURL

if TYPE_CHECKING:
    from ..study import Target

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


# ----- argument types and shared arguments ---------------------------------------------------
def number(kind: type, minimum: float, strict: bool,
           maximum: float = math.inf) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number above ``minimum`` (or equal, unless strict),
    and at most ``maximum``."""
    noun = "whole number" if kind is int else "number"
    bound = (f"> {minimum}" if strict else f">= {minimum}") + \
        (f" and <= {maximum}" if maximum < math.inf else "")

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {noun}, but got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite {noun} {bound}, but got {text}")
        if value < minimum or (strict and value == minimum) or value > maximum:
            raise argparse.ArgumentTypeError(f"must be {bound}, but got {text}")
        return value

    return parse


positive_int = number(int, 1, strict=False)
nonnegative_int = number(int, 0, strict=False)
positive_float = number(float, 0, strict=True)
port = number(int, 1, strict=False, maximum=65535)
port_or_zero = number(int, 0, strict=False, maximum=65535)  # 0: the system picks one


def study_args(p: argparse.ArgumentParser, file_required: bool = False) -> None:
    if file_required:
        p.add_argument("study_file", metavar="STUDY_FILE", help="the study's TOML file")
    else:
        p.add_argument("study_file", metavar="STUDY_FILE", nargs="?",
                       help="the study's TOML file (or use --study with --storage)")
        p.add_argument("--study", dest="study_name", metavar="NAME",
                       help="the study's name, when addressing it without its file")
    p.add_argument("--storage", metavar="URL",
                   help=f"storage URL; default: ${ENV_STORAGE}, else SQLite beside the "
                        "study file (sqlite:///PATH, postgresql+psycopg://USER@HOST/DB, "
                        "journal:///PATH)")


def budget_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=positive_int, metavar="N",
                   help="finished trials (complete + pruned) for the whole study, shared by "
                        "all its workers; default: budget.trials")
    p.add_argument("--timeout", type=positive_float, metavar="S",
                   help="stop starting trials after S seconds, and stop the trials still "
                        "running at S + budget.grace (default S/10); default: budget.timeout")


def storage_args(p: argparse.ArgumentParser, verb: str) -> None:
    """For commands that need only a storage: the study file's default, or --storage."""
    p.add_argument("study_file", metavar="STUDY_FILE", nargs="?",
                   help=f"{verb} the study file's default storage")
    p.add_argument("--storage", metavar="URL", help=f"the storage to {verb}")


def storage_url(args: argparse.Namespace) -> StorageURL:
    return StorageURL.resolve(args.storage, Path(args.study_file) if args.study_file else None)


def target(args: argparse.Namespace) -> Target:
    from ..study import target_from_args

    return target_from_args(args.study_file, getattr(args, "study_name", None), args.storage)


def check_output(output: str, overwrite: bool = True, export: bool = False) -> Path:
    """Where a command will write, checked before any work: its folder exists, it is
    not a folder, and an existing file is only replaced when ``overwrite`` says so (and,
    for an ``export``, only when it is an earlier nnsearch export, never a study file,
    a table or a database)."""
    path = Path(output)
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: no such folder.")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name.")
    if not os.access(path.parent, os.W_OK):  # (written beside, then moved into place)
        raise UsageError(f"cannot write {path}: its folder is read-only.")
    if path.exists():
        if not overwrite:
            raise UsageError(f"{path} exists; choose another -o FILE, or remove it first.")
        if export and not _is_export(path):
            raise UsageError(f"{path} exists and is not an nnsearch export; choose another "
                             "file, or remove it first.")
    return path


def _is_export(path: Path) -> bool:
    """An earlier ``nnsearch export``: an export (of a trial or an ensemble) as JSON or
    YAML, or ``--format params`` (a JSON object of parameter names)."""
    import yaml

    from ..export import MAX_CONFIG_BYTES
    from ..space import PARAMS, width_layer

    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return False
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, ValueError, yaml.YAMLError):
        return False
    if not isinstance(doc, dict) or not doc:
        return False
    if str(doc.get("format", "")).startswith(("nnsearch.trial/", "nnsearch.ensemble/")):
        return True
    return all(isinstance(k, str) and (k in PARAMS or width_layer(k) is not None)
               for k in doc)


def write_json(data: dict[str, Any], output: str | None) -> None:
    write_text(json.dumps(data, indent=2) + "\n", output)


def write_text(text: str, output: str | None) -> None:
    """To the file ``output``, or stdout (None or "-")."""
    if output and output != "-":
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


# ----- the commands --------------------------------------------------------------------------
class Command:
    """One subcommand: its help, its examples, its arguments and its action."""

    help = ""
    examples: tuple[str, ...] = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def take_action(self, args: argparse.Namespace) -> int:
        raise NotImplementedError
