"""``aiosig demo``: a tour of aiosig that runs by itself and ends in a couple of seconds.

It runs under ``aiosig.run`` (``exit_status="zero"``, so that the tour exits 0 where a
service would die of SIGTERM) and shows, with real signals from real processes:

1. deliveries as a receiver sees them: a child sends SIGUSR1 (kill), SIGRTMIN+1 (sigqueue,
   value 42) and SIGHUP; the first two are blocked, so they are read precisely with the
   sender's pid, uid and command line, the last arrives plainly;
2. an ``alarm`` future and an ``ITIMER_REAL`` interval timer;
3. a graceful shutdown started by a real SIGTERM from another child: the drain, ``main``
   cancelled, a background task cancelled, a shutdown hook, each step as ``aiosig.run``
   logs it.

The signals come from ``python -m aiosig._cli._sender``, so that the sender's command line
in ``/proc`` says what it is.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._hooks import on_shutdown
from .._receiver import open_signal_receiver
from .._run import run as aiosig_run
from .._shutdown import current_shutdown
from .._spawn import block, create_subprocess_exec
from .._timers import alarm, setitimer
from ._common import CliError, add_command, fit, log_aiosig_to, out, width
from ._watch import Seen
from ._words import signal_name

__all__ = ("add_parser", "demo")

EXAMPLES = """\
example:
  aiosig demo                       the tour on the asyncio loop
  aiosig demo --uvloop              the same on uvloop (pip install uvloop)
"""

RT = signal.SIGRTMIN + 1
BLOCKED = (signal.SIGUSR1, RT, signal.SIGALRM, signal.SIGTERM)  # read precisely
INDENT = "   "
GRACE, DRAIN = 5.0, 0.3


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "demo",
        summary="a tour: deliveries with their sender, timers, a graceful shutdown",
        description="A tour of aiosig that ends by itself in a couple of seconds: a child "
        "sends this process signals (printed with the sender's pid, uid and command), an "
        "alarm and an interval timer fire, and a real SIGTERM starts a graceful shutdown "
        "whose every step is printed.",
        examples=EXAMPLES,
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    """Run the tour under ``aiosig.run``; return its exit status (0)."""
    factory = _loop_factory(args.uvloop)
    started = time.monotonic()
    # Blocked before the loop starts any thread: threads inherit the mask (aiosig.block).
    blocked = block(*BLOCKED)
    log_aiosig_to(sys.stdout, INDENT + "aiosig.run: ", logging.INFO)
    status = 0
    try:
        aiosig_run(
            _tour(args.uvloop), grace=GRACE, drain=DRAIN, exit_status="zero", loop_factory=factory
        )
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        blocked.restore()
    _say(
        f"The tour took {time.monotonic() - started:.1f} s; aiosig.run ended with exit status "
        f"{status} (exit_status='zero'). By default a service stopped by SIGTERM dies of it "
        "after its finally blocks and atexit handlers, as its parent expects (143 in a shell)."
    )
    return status


def _loop_factory(uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not uvloop:
        return None
    try:
        module = importlib.import_module("uvloop")
    except ImportError:
        raise CliError("uvloop is not installed: pip install uvloop") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = module.new_event_loop
    return factory


def _say(text: str, indent: str = "") -> None:
    for line in textwrap.wrap(text, width(), initial_indent=indent, subsequent_indent=indent):
        out(line)


async def _tour(uvloop: bool) -> None:
    _say(
        f"aiosig demo: process {os.getpid()} on {'uvloop' if uvloop else 'asyncio'}. "
        f"{', '.join(signal_name(s) for s in BLOCKED)} are blocked, so they are read from a "
        "signalfd with their siginfo; other signals arrive plainly, the number only."
    )
    await _deliveries()
    await _timers()
    await _shutdown()


async def _deliveries() -> None:
    out("")
    out("1. Deliveries, with their sender (an async iterator of SigInfo)")
    async with open_signal_receiver(signal.SIGUSR1, RT, signal.SIGHUP) as receiver:
        sender = await _helper("send", stdin=subprocess.PIPE)
        _say(
            f"started pid {sender.pid}: it sends SIGUSR1 with kill, SIGRTMIN+1 with "
            "sigqueue (value 42), and SIGHUP with kill",
            INDENT,
        )
        missing = {signal.SIGUSR1, RT, signal.SIGHUP}
        async with asyncio.timeout(10):
            async for info in receiver:
                out(fit(INDENT + Seen.take(info).line(with_time=False), width()))
                missing.discard(int(info.si_signo))
                if not missing:
                    break
        assert sender.stdin is not None
        sender.stdin.close()  # it waits for this, so that /proc still shows it when read
        await sender.wait()


async def _timers() -> None:
    out("")
    out("2. Timers (ITIMER_REAL, shared by every aiosig timer)")
    start = time.monotonic()
    info = await alarm(0.25)
    out(
        f"{INDENT}await aiosig.alarm(0.25): {signal_name(info.si_signo)} after "
        f"{time.monotonic() - start:.3f} s (si_code {info.si_code}: the kernel)"
    )
    start = time.monotonic()
    async with setitimer(signal.ITIMER_REAL, 0.1, 0.1) as timer:
        count = 0
        async for tick in timer:
            count += 1
            out(
                f"{INDENT}aiosig.setitimer(ITIMER_REAL, 0.1, 0.1): tick {count} at "
                f"{time.monotonic() - start:.3f} s, {tick.missed} missed"
            )
            if count == 3:
                break
    out(f"{INDENT}closing the timer disarmed it")


async def _shutdown() -> None:
    out("")
    out(f"3. Graceful shutdown (aiosig.run, grace={GRACE:g} s, drain={DRAIN:g} s)")
    on_shutdown(_close_connections)
    asyncio.get_running_loop().create_task(_heartbeat(), name="heartbeat")
    out(f"{INDENT}a task 'heartbeat' runs; a hook is registered with aiosig.on_shutdown")
    sender = await _helper("term")
    await sender.wait()
    _say(f"pid {sender.pid} sent SIGTERM to this process and exited", INDENT)
    shutdown = current_shutdown()
    try:
        reason = await shutdown.wait()
        _say(
            f"main: the shutdown was requested ({reason}); it keeps running during the "
            f"drain, {shutdown.remaining():.2f} s of the budget left",
            INDENT,
        )
        await asyncio.sleep(GRACE)
    except asyncio.CancelledError:
        out(f"{INDENT}main: cancelled after the drain; its finally blocks run")
        raise


async def _heartbeat() -> None:
    beats = 0
    try:
        while True:
            await asyncio.sleep(0.02)
            beats += 1
    except asyncio.CancelledError:
        out(f"{INDENT}task 'heartbeat': cancelled after {beats} beats")
        raise


async def _close_connections() -> None:
    left = current_shutdown().remaining()
    out(f"{INDENT}hook _close_connections: runs after the tasks ended, {left:.2f} s left")
    await asyncio.sleep(0.01)


async def _helper(what: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """Start this module as the demo's sender (`what` is "send" or "term"), with a clean mask."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # this aiosig, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    command = (sys.executable, "-m", "aiosig._cli._sender", what, str(os.getpid()))
    return await create_subprocess_exec(*command, env=env, **kwargs)
