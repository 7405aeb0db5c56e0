"""``aiosig watch [SIG ...]``: print every delivery with what it means and who sent it.

Theory of operation
-------------------
Rule 1 (precise, so the sender is known): the signals are blocked in the main thread before
the loop (or any thread) starts, then one receiver opens for all of them: blocked signals are
read from a signalfd with their full siginfo (si_code, sender pid and uid, the sigqueue
value, a child's status). The defaults are every signal a process can catch but SIGINT,
which stops the watch; aiosig refuses the synchronous faults (SIGSEGV, SIGBUS, SIGFPE,
SIGILL) and glibc keeps 32 and 33 for itself.

Rule 2 (read /proc at once): the sender's command line is read as soon as the delivery is
taken from the receiver, before anything is printed: a ``kill`` command has usually exited
by then anyway, but a long-lived sender (the one "who keeps sending my process SIGTERM")
has not. What is gone is shown as such; the user name comes from the password database and
needs no process.

Rule 3 (the mask is never restored): a watch ends by exiting. Unblocking first would let a
signal still pending (a SIGTERM sent after the last one read, or after ``--count``) take its
default action and kill the watch on its way out.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import signal
import sys
from typing import Any

from .._convert import FAULTS, UNCATCHABLE
from .._receiver import open_signal_receiver
from .._siginfo import SigInfo
from .._spawn import block
from ._common import CliError, add_command, fit, out, print_json, signal_arg, width
from ._proc import command_line, short_command, user_name
from ._words import SENDER_CODES, describe_code, signal_name

__all__ = ("Seen", "add_parser", "default_signals", "watch")

EXAMPLES = """\
examples:
  aiosig watch                      every signal but SIGINT, which stops it
  aiosig watch TERM HUP --json      SIGTERM and SIGHUP, one JSON object per line
  aiosig watch --pid-filter 4242    only what process 4242 sends

  In another terminal: aiosig send <pid> RTMIN+1 --value 7

output:
  05:21:03.512 SIGTERM kill from pid 4242 root(0): python3 deploy.py --prod
  05:21:04.100 SIGRTMIN+1 sigqueue, value 7 from pid 4250 ann(1000): aiosig s...
  05:21:05.001 SIGCHLD child exited with status 3 from pid 426 root(0): sleep
"""


def default_signals() -> list[int]:
    """Every signal a process can catch and aiosig can receive, but SIGINT (Rule 1)."""
    refused = UNCATCHABLE | FAULTS | {signal.SIGINT}
    return sorted(
        int(s)
        for s in signal.valid_signals()
        if s not in refused and (s < 32 or s >= signal.SIGRTMIN)
    )


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "watch",
        summary="print each signal this process receives, with its sender",
        description="Receive signals and print one line per delivery: the time, the signal, "
        "what its si_code means, the sender's pid, user and command line. The default is "
        "every signal that can be caught but SIGINT, which stops the watch.",
        examples=EXAMPLES,
    )
    parser.add_argument(
        "signals",
        metavar="SIG",
        nargs="*",
        type=signal_arg,
        help="the signals to watch: TERM, SIGHUP, 10, RTMIN+2... (default: all but SIGINT)",
    )
    parser.add_argument(
        "--pid-filter",
        metavar="PID[,PID...]",
        action="append",
        default=[],
        help="print only what these processes send (repeatable)",
    )
    parser.add_argument("--count", metavar="N", type=int, help="exit after printing N deliveries")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=watch)


def watch(args: argparse.Namespace) -> int:
    """Block, open a receiver, print deliveries until Ctrl-C or ``--count``."""
    signals = sorted(set(args.signals)) or default_signals()
    pids = _pid_filter(args.pid_filter)
    if args.count is not None and args.count < 1:
        raise CliError(f"--count must be 1 or more, not {args.count}")
    for signum in signals:
        if signum in UNCATCHABLE:
            raise CliError(f"{signal_name(signum)} cannot be caught by any process")
        if signum in FAULTS:
            raise CliError(f"{signal_name(signum)} is a fault signal: watch it with a debugger")
    block(*signals)  # before the loop and its threads (Rule 1); never restored (Rule 3)
    return asyncio.run(_watch(signals, pids, args.count, args.json))


def _pid_filter(values: list[str]) -> frozenset[int]:
    pids = set()
    for value in values:
        for part in filter(None, value.split(",")):
            if not part.strip().isdigit():
                raise CliError(f"--pid-filter takes process ids, not {part!r}")
            pids.add(int(part))
    return frozenset(pids)


async def _watch(signals: list[int], pids: frozenset[int], count: int | None, as_json: bool) -> int:
    async with open_signal_receiver(*signals) as receiver:
        stops = "" if signal.SIGINT in signals else " (Ctrl-C stops)"
        precise = "precisely" if receiver.precise_signals else "plainly (no sender)"
        print(
            f"aiosig watch: pid {os.getpid()} watching {len(signals)} signals, {precise}{stops}",
            file=sys.stderr,
            flush=True,
        )
        printed = 0
        async for info in receiver:
            seen = Seen.take(info)
            if pids and info.si_pid not in pids:
                continue
            if as_json:
                print_json(seen.as_json())
            else:
                out(fit(seen.line(), width()))
            printed += 1
            if count is not None and printed >= count:
                return 0
    return 0


class Seen:
    """One delivery, with what /proc said about its sender at once (Rule 2)."""

    def __init__(self, info: SigInfo, when: datetime.datetime, command: list[str] | None):
        self.info = info
        self.when = when
        self.command = command

    @classmethod
    def take(cls, info: SigInfo) -> Seen:
        command = command_line(info.si_pid) if info.si_pid and _names_a_process(info) else None
        return cls(info, datetime.datetime.now(), command)

    def _sender(self) -> bool:
        return bool(self.info.si_pid) and _names_a_process(self.info)

    def line(self, *, with_time: bool = True) -> str:
        info = self.info
        _, what = describe_code(info)
        head = f"{signal_name(info.si_signo)} {what}"
        if with_time:
            head = f"{self.when:%H:%M:%S.%f}"[:-3] + " " + head
        if not self._sender():
            return head
        uid = info.si_uid if info.si_uid is not None else -1
        who = f"{user_name(uid) or '?'}({uid})"
        return f"{head} from pid {info.si_pid} {who}: {short_command(self.command)}"

    def as_json(self) -> dict[str, Any]:
        info = self.info
        code_name, what = describe_code(info)
        sender = self._sender()
        return {
            "time": self.when.isoformat(timespec="microseconds"),
            "signal": signal_name(info.si_signo),
            "signo": int(info.si_signo),
            "code": code_name or None,
            "si_code": info.si_code,
            "what": what,
            "pid": info.si_pid if sender else None,
            "uid": info.si_uid if sender else None,
            "user": user_name(info.si_uid) if sender and info.si_uid is not None else None,
            "cmdline": self.command,
            "value": info.si_value,
            "status": info.si_status,
            "precise": info.precise,
        }


def _names_a_process(info: SigInfo) -> bool:
    """Whether si_pid names a process: a sender (kill, sigqueue, tkill) or SIGCHLD's child."""
    if info.si_signo == signal.SIGCHLD and info.si_code is not None and info.si_code > 0:
        return True
    return info.si_code in SENDER_CODES
