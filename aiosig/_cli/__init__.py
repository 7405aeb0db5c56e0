"""The ``aiosig`` command line (``aiosig`` or ``python -m aiosig``): demo, watch, status, send, run.

Theory of operation
-------------------
The top of the server layer: every subcommand is built on the library itself (``watch`` is a
precise receiver, ``send`` is `sigqueue`, ``run`` is ``aiosig.run`` with its children
registry, ``demo`` is a tour of the public API), so it may import any private module below it
and nothing imports it: ``import aiosig`` never loads this package.

Rule 1 (an operator's tool never shows a traceback for a mistake): bad input (an unknown
signal, a pid that does not exist, no permission, a missing command) is one line on stderr,
``aiosig <command>: <what went wrong>``, and a non-zero status: 2 for what argparse refuses,
1 for the rest (126 and 127 for a command ``run`` cannot start, as a shell does). A bug is
still a traceback.

Rule 2 (80 columns, or one JSON object per line): human output fits the terminal (80 columns
when it is not one); ``--json`` where offered prints one object per line, with nothing
shortened, for scripts.

Standard library only (argparse): the package has no runtime dependency.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import _demo, _send, _status, _supervise, _watch
from ._common import CliError, Parser

__all__ = ("main",)

_COMMANDS = (_demo, _watch, _status, _send, _supervise)


def _parser() -> Parser:
    parser = Parser(
        prog="aiosig",
        description="POSIX signals, seen and sent: a tour, a watcher, a decoder, a sender,\n"
        "and a supervisor for containers.",
        epilog="example:\n  aiosig demo\n\n'aiosig COMMAND --help' shows each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for module in _COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the ``aiosig`` command line with `argv` (default: ``sys.argv[1:]``) and exit."""
    args = _parser().parse_args(argv)
    try:
        status = args.handler(args)
    except CliError as error:
        print(f"aiosig {args.subcommand}: {error}", file=sys.stderr)
        status = error.status
    except KeyboardInterrupt:
        status = 130  # Ctrl-C ends watch (and anything else) quietly, as a shell reports it
    sys.exit(status)
