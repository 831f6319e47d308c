"""The ``nnsearch`` command line: the parser over the command table (``commands``), and main.

The commands only parse, call and print. Results go to stdout; diagnostics
(progress, warnings, where files went) go to stderr through ``logging``. A bad
input ends with a one-line error and exit 2.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import textwrap
from typing import Any, NoReturn

import optuna

import nnsearch

from .commands import COMMANDS
from .errors import STORAGE_UNREACHABLE, UsageError
from .retry import error_reason, is_transient

logger = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _log_args(p: argparse.ArgumentParser, suffix: str = "") -> None:
    """-v/-q, accepted before the command and after it (counted together)."""
    p.add_argument("-v", "--verbose", dest=f"verbose{suffix}", action="count", default=0,
                   help="more diagnostics on stderr (-vv: Optuna's too)")
    p.add_argument("-q", "--quiet", dest=f"quiet{suffix}", action="store_true",
                   help="only warnings and errors")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nnsearch",
        description="Hyperparameter search for from-scratch NumPy networks, on Optuna.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("nnsearch run studies/digits.toml --workers 2",
                         "nnsearch status studies/digits.toml",
                         "nnsearch export studies/digits.toml -o best.json",
                         "nnsearch train best.json"))
    parser.add_argument("--version", action="version", version=f"nnsearch {nnsearch.__version__}")
    _log_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cls in COMMANDS.items():
        command = cls()
        p = sub.add_parser(name, help=command.help, description=command.help,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=_examples(*command.examples))
        command.add_arguments(p)
        _log_args(p, "_after")
        p.set_defaults(action=command.take_action)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("nnsearch")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    optuna.logging.set_verbosity(logging.INFO if verbose >= 2 else logging.WARNING)


class _SafeStream:
    """A text stream whose reader may be gone (``| head``, a dead ssh, a closed tee):
    writes after that are dropped, so that the process still cleans up (stops its
    workers, records their trials) instead of dying on the first message."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False
        self.lost: OSError | None = None  # output that had a reader but no room: an error

    def _failed(self, exc: OSError) -> None:
        self.broken = True
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            self.lost = exc

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return int(self._stream.write(text))
            except OSError as exc:  # BrokenPipeError, EIO from a dead terminal, ENOSPC, ...
                self._failed(exc)
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except OSError as exc:
                self._failed(exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.verbose += args.verbose_after
    args.quiet = args.quiet or args.quiet_after
    for name in ("stdout", "stderr"):
        if not isinstance(getattr(sys, name), _SafeStream):
            setattr(sys, name, _SafeStream(getattr(sys, name)))
    _configure_logging(args.verbose, args.quiet)
    try:
        code = int(args.action(args))
        sys.stdout.flush()
        lost = getattr(sys.stdout, "lost", None)
        if lost is not None and code == 0:  # a full disk took the results: not a success
            print(f"nnsearch {args.command}: error: the output could not be written "
                  f"({lost.strerror}).", file=sys.stderr)
            return 1
        return code
    except UsageError as exc:
        print(f"nnsearch {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"nnsearch {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an environment problem: one line, no traceback
        if is_transient(exc):
            if args.verbose:
                logger.exception("the storage stayed unreachable")
            print(f"nnsearch {args.command}: error: storage unreachable: "
                  f"{error_reason(exc)}", file=sys.stderr)
            return STORAGE_UNREACHABLE
        if args.verbose:
            raise
        text = textwrap.shorten(str(exc), 300)
        print(f"nnsearch {args.command}: error: {type(exc).__name__}: {text} (rerun with -v "
              "for the traceback)", file=sys.stderr)
        return 1

