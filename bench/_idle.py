"""Scenarios 4 and 5: what an idle subscription costs the loop, and what one call costs.

Idle: the time of one loop iteration (``await asyncio.sleep(0)`` in a loop, the cheapest
round through the scheduler) with nothing installed, then with one idle subscription of each
kind, then with 10,000 idle aiosig receivers. An idle subscription is a registered fd that is
never readable, so it should cost nothing per iteration; this checks it.

Per call: the cost of one subscribe-and-unsubscribe pair (what an ``aiosig.sigwaitinfo`` on
a signal that is not blocked pays; consecutive waits on blocked signals share one), and of a
precise ``sigwaitinfo`` on a signal that is already pending, next to the stdlib's blocking
one (both include the ``sigqueue`` to self).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _common import drain_pending, median, run_on

SIG = signal.SIGUSR1
REPEATS = 5

IDLE: dict[str, tuple[str, ...]] = {
    "nothing installed": ("asyncio", "uvloop"),
    "loop.add_signal_handler": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver": ("asyncio", "uvloop"),
    "aiosig.add_handler (sync fn)": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver (blocked: precise)": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver x N": ("asyncio", "uvloop"),
}
CALLS: dict[str, tuple[str, ...]] = {
    "loop.add_signal_handler + remove_signal_handler": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver + close": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver + close (signal already held)": ("asyncio", "uvloop"),
    "aiosig.add_handler + remove": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver + close (blocked: precise)": ("asyncio", "uvloop"),
    "anyio.open_signal_receiver enter + exit": ("asyncio", "uvloop"),
    "sigqueue + aiosig.sigwaitinfo, already pending": ("asyncio", "uvloop"),
    "sigqueue + signal.sigwaitinfo (stdlib, blocking)": ("none",),
}
NEEDS = {"anyio.open_signal_receiver enter + exit": "anyio"}


def _noop(*_: object) -> None:
    pass


def _install_idle(setup: str, stack: contextlib.ExitStack, n_many: int) -> None:
    import aiosig

    loop = asyncio.get_running_loop()
    if setup == "loop.add_signal_handler":
        loop.add_signal_handler(SIG, _noop)
        stack.callback(loop.remove_signal_handler, SIG)
    elif setup.startswith("aiosig.open_signal_receiver x"):
        for _ in range(n_many):
            stack.callback(aiosig.open_signal_receiver(SIG).close)
    elif setup.startswith("aiosig.open_signal_receiver"):
        stack.callback(aiosig.open_signal_receiver(SIG).close)
    elif setup.startswith("aiosig.add_handler"):
        stack.callback(aiosig.add_handler(SIG, _noop).remove)


async def _idle(setup: str, iterations: int, n_many: int) -> dict[str, Any]:
    sleep = asyncio.sleep
    with contextlib.ExitStack() as stack:
        _install_idle(setup, stack, n_many)
        rounds = []
        for _ in range(REPEATS):
            t = time.perf_counter_ns()
            for _ in range(iterations):
                await sleep(0)
            rounds.append((time.perf_counter_ns() - t) / iterations)
    return {"ns_per_iteration": median(rounds), "best": min(rounds)}


def _pair(call: str) -> Callable[[], Awaitable[None]]:
    """One call of the kind measured, as a coroutine function."""
    import aiosig

    loop = asyncio.get_running_loop()
    me = os.getpid()

    async def add_signal_handler() -> None:
        loop.add_signal_handler(SIG, _noop)
        loop.remove_signal_handler(SIG)

    async def receiver() -> None:
        aiosig.open_signal_receiver(SIG).close()

    async def handler() -> None:
        aiosig.add_handler(SIG, _noop).remove()

    async def anyio_receiver() -> None:
        import anyio

        with anyio.open_signal_receiver(SIG):
            pass

    async def sigwaitinfo() -> None:
        aiosig.sigqueue(me, SIG)
        await aiosig.sigwaitinfo({SIG})

    if call.startswith("loop.add_signal_handler"):
        return add_signal_handler
    if call.startswith("aiosig.open_signal_receiver"):
        return receiver
    if call.startswith("aiosig.add_handler"):
        return handler
    if call.startswith("anyio"):
        return anyio_receiver
    return sigwaitinfo


async def _calls(call: str, iterations: int) -> dict[str, Any]:
    import aiosig

    one = _pair(call)
    with contextlib.ExitStack() as stack:
        if "already held" in call:
            stack.callback(aiosig.open_signal_receiver(SIG).close)
        for _ in range(min(100, iterations)):  # warm up
            await one()
        rounds = []
        for _ in range(REPEATS):
            t = time.perf_counter_ns()
            for _ in range(iterations):
                await one()
            rounds.append((time.perf_counter_ns() - t) / iterations / 1000)
    return {"us_per_call": median(rounds), "best": min(rounds)}


def _stdlib_sigwaitinfo(iterations: int) -> dict[str, Any]:
    import aiosig

    me, send, wait = os.getpid(), aiosig.sigqueue, signal.sigwaitinfo
    rounds = []
    for _ in range(REPEATS):
        t = time.perf_counter_ns()
        for _ in range(iterations):
            send(me, SIG)
            wait({SIG})
        rounds.append((time.perf_counter_ns() - t) / iterations / 1000)
    return {"us_per_call": median(rounds), "best": min(rounds)}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one idle-loop or per-call case in this (fresh) worker."""
    mech, loop, iterations = spec["mech"], spec["loop"], spec["n"]
    blocked = "precise" in mech or "sigwaitinfo" in mech
    if blocked:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
    try:
        if spec["kind"] == "idle":
            return run_on(loop, lambda: _idle(mech, iterations, spec["many"]))
        if loop == "none":
            return _stdlib_sigwaitinfo(iterations)
        return run_on(loop, lambda: _calls(mech, iterations))
    finally:
        if blocked:
            drain_pending({SIG})
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
