"""``aiosig run [options] -- CMD ...``: run CMD as a supervised child, as tini and dumb-init do.

Theory of operation
-------------------
Rule 1 (``aiosig.run`` does the supervising): the child is spawned inside ``aiosig.run`` and
registered with the run's `Children` (what ``aiosig.add_child`` does, plus a rewrite table).
So the run's own machinery forwards the stop signals (SIGTERM, SIGINT) to the child or its
process group at the request, forwards the second one too (the fast path), SIGKILLs the
child just before the grace period ends (or from the deadline thread if the loop is wedged),
reaps it through asyncio's ``Process``, and, as PID 1, reaps orphaned zombies with its
`ZombieReaper`. This module adds only what a supervisor needs beyond a service: a handler
that forwards the control signals, the rewrite table (``--signal-map``), and the exit status.

Rule 2 (the child's status is ours): the supervisor exits with the child's exit code, or
128 + n if a signal n ended it, whatever stopped it. ``aiosig.run`` runs with
``exit_status="code"`` so that after a stop signal it raises ``SystemExit(128 + n)`` and
records nothing to apply at exit; that is replaced by the child's status. If the child could
not be reaped (it survived SIGKILL), the run's own status stands.

Rule 3 (the supervisor reads precisely, the child starts clean): the signals the supervisor
handles are blocked before its loop starts, so they are read from a signalfd and the log
names who sent them; the child gets an empty mask (``aiosig.create_subprocess_exec``), so it
sees signals as if nothing stood in between. With ``--process-group`` it leads a new process
group (``process_group=0``), which every forwarded signal then reaches (``killpg``).

The third stop signal ends the supervisor at once (``aiosig.run``'s immediate exit), after
sending SIGKILL to the child. Known limit: with ``--process-group`` in a terminal, the
child's group is not the terminal's foreground group.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import shlex
import signal
import sys
from typing import Any

from .._convert import FAULTS, UNCATCHABLE
from .._handlers import on
from .._run import run as aiosig_run
from .._shutdown import SI_KERNEL, current_shutdown
from .._siginfo import SigInfo
from .._spawn import block, create_subprocess_exec
from ._common import CliError, add_command, log_aiosig_to, signal_arg
from ._words import SignalNameError, parse_signal, signal_name

__all__ = ("add_parser", "supervise")

EXAMPLES = """\
examples:
  aiosig run -- python server.py
  aiosig run --grace 10 --signal-map TERM:QUIT -- nginx -g 'daemon off;'
  aiosig run --process-group -- sh -c 'worker & worker & wait'

  In a Dockerfile:  ENTRYPOINT ["aiosig", "run", "--"]

output (with -v, after SIGTERM):
  aiosig run: started pid 7: python server.py
  aiosig run: SIGTERM from pid 4242: shutting down (stopping gracefully ...
  aiosig run: sending SIGTERM to 1 child process
  aiosig run: child 7 exited with status 0; exiting 0
"""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Forwarded as they come, without starting a shutdown: what tini and dumb-init pass on too.
CONTROL_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGHUP",
        "SIGQUIT",
        "SIGUSR1",
        "SIGUSR2",
        "SIGWINCH",
        "SIGCONT",
        "SIGALRM",
        "SIGPWR",
    )
    if hasattr(signal, name)
) + tuple(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
GRACE = 25.0  # aiosig.run's default

logger = logging.getLogger("aiosig")


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "run",
        summary="run a command as a supervised child (an init for containers)",
        description="Run CMD as a supervised child: forward the stop signals (SIGTERM, "
        "SIGINT) and control signals (SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, "
        "SIGALRM, SIGPWR, real-time) to it, SIGKILL it if it is still running when the grace "
        "period after a stop signal ends, reap zombies when running as PID 1, and exit with "
        "its status (its exit code, or 128 + n if signal n ended it).",
        examples=EXAMPLES,
    )
    parser.add_argument(
        "--grace",
        type=_seconds,
        default=GRACE,
        metavar="S",
        help=f"seconds from the stop signal to the end, SIGKILL included (default {GRACE:g})",
    )
    parser.add_argument(
        "--signal-map",
        metavar="FROM:TO",
        action="append",
        type=_mapping,
        default=[],
        help="send TO to the child when FROM arrives (TERM:QUIT); TO 0 drops FROM",
    )
    parser.add_argument(
        "--process-group",
        action="store_true",
        help="start CMD in a new process group and signal the whole group",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="say what happens")
    parser.add_argument("cmd", metavar="-- CMD", nargs="*", help="the command and its arguments")
    parser.set_defaults(handler=supervise)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a number of seconds above 0, not {text!r}")
    return value


def _mapping(text: str) -> tuple[int, int]:
    source, colon, target = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"FROM:TO, as in TERM:QUIT, not {text!r}")
    number = signal_arg(source)
    if number in UNCATCHABLE | FAULTS | {signal.SIGCHLD}:
        raise argparse.ArgumentTypeError(f"{signal_name(number)} cannot be forwarded")
    try:
        return number, parse_signal(target, allow_zero=True)
    except SignalNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def supervise(args: argparse.Namespace) -> int:
    """Run the command under ``aiosig.run``; return the child's status (Rule 2)."""
    if not args.cmd:
        raise CliError("give the command to run after --, as in: aiosig run -- sleep 10")
    rewrite = dict(args.signal_map)
    forwarded = sorted((set(CONTROL_SIGNALS) | set(rewrite)) - set(STOP_SIGNALS))
    log_aiosig_to(sys.stderr, "aiosig run: ", logging.INFO if args.verbose else logging.WARNING)
    started: list[asyncio.subprocess.Process] = []
    # Blocked before the loop starts threads, so that they are read precisely and the log
    # names who sent them (Rule 3: the child starts with an empty mask all the same). Never
    # unblocked: the supervisor only exits after this.
    block(*STOP_SIGNALS, *forwarded)
    main = _supervised(args.cmd, args.process_group, rewrite, forwarded, started)
    try:
        aiosig_run(main, grace=args.grace, exit_status="code")
        run_status = 0
    except SystemExit as exc:  # after a stop signal: 128 + n (Rule 2)
        run_status = exc.code if isinstance(exc.code, int) else 1
    if not started or started[0].returncode is None:
        return run_status
    child = started[0]
    assert child.returncode is not None
    status = child.returncode if child.returncode >= 0 else 128 - child.returncode
    how = (
        f"exited with status {child.returncode}"
        if child.returncode >= 0
        else f"was killed by {signal_name(-child.returncode)}"
    )
    logger.info("child %d %s; exiting %d", child.pid, how, status)
    return status


async def _supervised(
    command: list[str],
    group: bool,
    rewrite: dict[int, int],
    forwarded: list[int],
    started: list[asyncio.subprocess.Process],
) -> int:
    children = current_shutdown().children

    early: list[SigInfo] = []  # control signals that came before the child existed

    def forward(info: SigInfo) -> None:
        if not started:
            early.append(info)  # passed on once the child runs, as tini does
            return
        children.signal(int(info.si_signo), from_terminal=info.si_code == SI_KERNEL)

    # Before the spawn: a control signal arriving from now on is passed on, not fatal.
    on(*forwarded, policy="concurrent")(forward)
    try:
        child = await create_subprocess_exec(*command, process_group=0 if group else None)
    except FileNotFoundError:
        raise CliError(f"cannot run {command[0]!r}: no such file or directory", 127) from None
    except PermissionError:
        raise CliError(f"cannot run {command[0]!r}: permission denied", 126) from None
    except OSError as exc:
        raise CliError(f"cannot run {command[0]!r}: {exc.strerror}", 126) from None
    children.add(child, group=group, rewrite=rewrite)
    started.append(child)
    for info in early:
        forward(info)
    logger.info("started pid %d: %s", child.pid, shlex.join(command).replace("\n", " "))
    shutdown = current_shutdown()
    if shutdown.reason is not None and shutdown.reason.signal is not None:
        # The stop signal came during the spawn, before the child was registered to get it.
        children.signal(shutdown.reason.signal)
    return await child.wait()
