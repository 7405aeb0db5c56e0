"""``aiosig send PID SIG [--value N]``: send a signal by name or number, with a payload if asked.

Without ``--value`` it is ``kill(2)`` (the receiver sees SI_USER); with it, `sigqueue`
(SI_QUEUE and the value as ``si_value``, which only a precise receiver can read). The target's
command line is read before sending: the signal may end it.
"""

from __future__ import annotations

import argparse
import errno
import os
from typing import Any

from .._platform import sigqueue
from ._common import CliError, add_command, fit, out, signal_arg, width
from ._proc import command_line, short_command
from ._words import signal_name

__all__ = ("add_parser", "send")

EXAMPLES = """\
examples:
  aiosig send 4242 TERM             kill(2): SIGTERM, the receiver sees SI_USER
  aiosig send 4242 RTMIN+2 --value 7
                                    sigqueue(3): SIGRTMIN+2 carrying the value 7
  aiosig send 4242 0                check that 4242 exists and may be signalled

output:
  sent SIGTERM to 4242 (python3 server.py)
"""


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "send",
        summary="send a signal by name or number, with a sigqueue value if asked",
        description="Send signal SIG to process PID: kill(2), or sigqueue(3) with --value.",
        examples=EXAMPLES,
    )
    parser.add_argument("pid", metavar="PID", type=_pid, help="the process to signal")
    parser.add_argument(
        "signal",
        metavar="SIG",
        type=_signal_or_zero,
        help="SIGTERM, TERM, 15, RTMIN+2...; 0 only checks",
    )
    parser.add_argument(
        "--value",
        type=int,
        metavar="N",
        help="send with sigqueue, carrying N (a C int) as si_value",
    )
    parser.set_defaults(handler=send)


def _pid(text: str) -> int:
    try:
        pid = int(text)
    except ValueError:
        pid = 0
    if pid <= 0:
        raise argparse.ArgumentTypeError(f"a PID is a positive number, not {text!r}")
    return pid


def _signal_or_zero(text: str) -> int:
    return 0 if text.strip() == "0" else signal_arg(text)


def send(args: argparse.Namespace) -> int:
    """Send, and say what was sent to whom."""
    pid, signum, value = args.pid, args.signal, args.value
    command = command_line(pid)
    try:
        if value is None:
            os.kill(pid, signum)
        else:
            sigqueue(pid, signum, value)
    except ProcessLookupError:
        raise CliError(f"no process {pid}") from None
    except PermissionError:
        raise CliError(f"not permitted to signal process {pid}: it is another user's") from None
    except OverflowError:
        raise CliError(f"--value {value} does not fit a C int") from None
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            raise CliError(f"{exc.strerror}") from None
        raise CliError(f"could not signal process {pid}: {exc.strerror}") from None
    who = f"{pid} ({short_command(command)})" if command else str(pid)
    if signum == 0:
        said = f"process {who} exists and may be signalled"
    elif value is None:
        said = f"sent {signal_name(signum)} to {who}"
    else:
        said = f"queued {signal_name(signum)} with value {value} to {who}"
    out(fit(said, width()))
    return 0
