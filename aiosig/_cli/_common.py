"""What every subcommand shares: the one-line error, the parser, the width, JSON lines."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import textwrap
from typing import Any, NoReturn

from ._words import SignalNameError, parse_signal

__all__ = (
    "CliError",
    "Parser",
    "add_command",
    "fit",
    "log_aiosig_to",
    "out",
    "print_json",
    "signal_arg",
    "width",
)


class CliError(Exception):
    """A mistake of the caller's, reported as one line (package header, Rule 1)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, naming where to find help."""

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: {message}"
        hint = f" (see {self.prog} --help)"
        self.exit(2, line + (hint if len(line + hint) <= 80 else "") + "\n")


def add_command(
    commands: Any, name: str, *, summary: str, description: str, examples: str
) -> argparse.ArgumentParser:
    """Add subcommand `name`: its description wrapped to 80 columns, its examples as written."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, 79),
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def signal_arg(text: str) -> int:
    """An argparse ``type`` for a signal name or number."""
    try:
        return parse_signal(text)
    except SignalNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def width() -> int:
    """The terminal's width; 80 when stdout is not a terminal."""
    return shutil.get_terminal_size((80, 24)).columns


def fit(line: str, columns: int) -> str:
    """`line`, cut to `columns` characters with "..." where it was cut."""
    return line if len(line) <= columns else line[: columns - 3] + "..."


def print_json(obj: dict[str, Any]) -> None:
    """One JSON object on one line, flushed (a reader may be waiting for it)."""
    out(json.dumps(obj, separators=(", ", ": ")))


def out(line: str) -> None:
    """One line on stdout, flushed; a reader that went away ends the command quietly."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        _stdout_gone()


def _stdout_gone() -> NoReturn:
    # `aiosig watch | head -3`: the reader left. Point stdout at /dev/null so that the
    # interpreter's own flush at exit does not fail again, and stop.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(0)


def log_aiosig_to(stream: Any, prefix: str, level: int) -> None:
    """Show the ``aiosig`` logger's records (what ``aiosig.run`` did) on `stream`, wrapped."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Wrapping(prefix))
    logger = logging.getLogger("aiosig")
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class _Wrapping(logging.Formatter):
    """``prefix`` + the message, wrapped to the terminal with the rest indented."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        first, *rest = text.split("\n")  # a traceback keeps its lines
        wrapped = textwrap.fill(
            first,
            width(),
            initial_indent=self.prefix,
            subsequent_indent=" " * (len(self.prefix) + 2),
            break_on_hyphens=False,
        )
        return "\n".join([wrapped, *rest])
