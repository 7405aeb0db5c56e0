"""Scenario 1: delivery latency, as a ping-pong round trip between two processes.

The worker sends SIGUSR1 to a responder peer (``_peer.py respond``), which waits for it in
``sigtimedwait`` and answers with SIGUSR2; the mechanism under test delivers SIGUSR2 to a
handler or consumer on the worker's loop, which takes the second timestamp and sends the next
ping. One sample is one round trip: the responder's share (a blocked wait in C) and the
kernel's are the same for every mechanism, so differences between rows are differences
between mechanisms. ``floor`` replaces the loop by a blocked ``sigtimedwait`` in the worker:
the round trip with no event loop at all.

Callback mechanisms send the next ping from the callback; awaiting ones from the consumer
coroutine once it resumes. Either way the sample ends where user code first runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from _common import TIMEOUT, Peer, drain_pending, median, percentile, run_on

PING, PONG = signal.SIGUSR1, signal.SIGUSR2

# mechanism -> loops it runs on (the order is the table's)
MECHANISMS: dict[str, tuple[str, ...]] = {
    "floor: blocking sigtimedwait, no loop": ("none",),
    "loop.add_signal_handler (baseline)": ("asyncio", "uvloop"),
    "signal.signal + call_soon_threadsafe": ("asyncio", "uvloop"),
    "aiosig.add_handler (sync fn)": ("asyncio", "uvloop"),
    "aiosig.add_handler (sync fn), 9 more signals held": ("asyncio", "uvloop"),
    "aiosig.add_handler (async fn)": ("asyncio", "uvloop"),
    "loop.add_signal_handler + create_task (async fn)": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver (blocked: precise)": ("asyncio", "uvloop"),
    "aiosig.sigwaitinfo (blocked: precise)": ("asyncio", "uvloop"),
    "run_in_executor(None, signal.sigwaitinfo) (blocked)": ("asyncio", "uvloop"),
    "anyio.open_signal_receiver": ("asyncio", "uvloop"),
    "trio.open_signal_receiver": ("trio",),
}
NEEDS = {"anyio.open_signal_receiver": "anyio", "trio.open_signal_receiver": "trio"}


class Rally:
    """Times round trips: `ping` starts one, `pong` ends it and says whether to go on."""

    def __init__(self, pid: int, total: int) -> None:
        self.pid = pid
        self.total = total
        self.samples: list[int] = []
        self.precise = 0
        self._t = 0

    def ping(self) -> None:
        self._t = time.perf_counter_ns()
        os.kill(self.pid, PING)

    def pong(self) -> bool:
        self.samples.append(time.perf_counter_ns() - self._t)
        return len(self.samples) < self.total


# ---- callback mechanisms -------------------------------------------------------------------


async def _by_callback(rally: Rally, install: Callable[[Callable[..., None]], Callable[[], None]]):
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def on_reply(*_: object) -> None:
        if rally.pong():
            rally.ping()
        elif not done.done():
            done.set_result(None)

    uninstall = install(on_reply)
    try:
        rally.ping()
        await asyncio.wait_for(done, TIMEOUT)
    finally:
        uninstall()


def _add_signal_handler(on_reply: Callable[..., None]) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(PONG, on_reply)
    return lambda: loop.remove_signal_handler(PONG)


def _raw_signal(on_reply: Callable[..., None]) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    previous = signal.signal(PONG, lambda signum, frame: loop.call_soon_threadsafe(on_reply))
    return lambda: signal.signal(PONG, previous)


def _aiosig_handler(on_reply: Callable[..., None]) -> Callable[[], None]:
    import aiosig

    return aiosig.add_handler(PONG, on_reply).remove


def _aiosig_handler_many(on_reply: Callable[..., None]) -> Callable[[], None]:
    import aiosig

    # Idle handlers on other signals: the hub's per-wakeup work may grow with them.
    others = [aiosig.add_handler(signal.SIGRTMIN + i, _noop) for i in range(1, 10)]
    handle = aiosig.add_handler(PONG, on_reply)

    def remove() -> None:
        handle.remove()
        for other in others:
            other.remove()

    return remove


def _noop(*_: object) -> None:
    pass


def _aiosig_async_handler(on_reply: Callable[..., None]) -> Callable[[], None]:
    import aiosig

    async def handler(info: Any) -> None:
        on_reply()

    return aiosig.add_handler(PONG, handler).remove


def _add_signal_handler_task(on_reply: Callable[..., None]) -> Callable[[], None]:
    # What asyncio's docs say to write for a coroutine per signal: keep a reference to each
    # task until it is done.
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def handler() -> None:
        on_reply()

    def spawn() -> None:
        task = loop.create_task(handler())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(PONG, spawn)
    return lambda: loop.remove_signal_handler(PONG)


# ---- awaiting mechanisms -------------------------------------------------------------------


async def _receiver(rally: Rally) -> None:
    import aiosig

    async with asyncio.timeout(TIMEOUT), aiosig.open_signal_receiver(PONG) as receiver:
        go_on = True
        while go_on:
            rally.ping()
            info = await anext(receiver)
            go_on = rally.pong()
            rally.precise += info.precise


async def _sigwaitinfo(rally: Rally) -> None:
    import aiosig

    async with asyncio.timeout(TIMEOUT):
        go_on = True
        while go_on:
            rally.ping()
            info = await aiosig.sigwaitinfo({PONG})
            go_on = rally.pong()
            rally.precise += info.precise


async def _executor_sigwaitinfo(rally: Rally) -> None:
    # The default thread pool's thread starts after the worker blocked PONG, so it inherits
    # the mask: the signal stays pending until the thread's sigwaitinfo takes it.
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(TIMEOUT):
        go_on = True
        while go_on:
            rally.ping()
            await loop.run_in_executor(None, signal.sigwaitinfo, {PONG})
            go_on = rally.pong()


async def _anyio_receiver(rally: Rally) -> None:
    import anyio

    async with asyncio.timeout(TIMEOUT):
        with anyio.open_signal_receiver(PONG) as receiver:
            go_on = True
            while go_on:
                rally.ping()
                await anext(receiver)
                go_on = rally.pong()


async def _trio_receiver(rally: Rally) -> None:
    import trio

    with trio.fail_after(TIMEOUT), trio.open_signal_receiver(PONG) as receiver:
        go_on = True
        while go_on:
            rally.ping()
            await receiver.__anext__()
            go_on = rally.pong()


def _floor(rally: Rally) -> None:
    go_on = True
    while go_on:
        rally.ping()
        if signal.sigtimedwait({PONG}, TIMEOUT) is None:
            raise TimeoutError("no reply from the responder")
        go_on = rally.pong()


def _play(mech: str, loop: str, rally: Rally) -> None:
    callbacks = {
        "loop.add_signal_handler (baseline)": _add_signal_handler,
        "signal.signal + call_soon_threadsafe": _raw_signal,
        "aiosig.add_handler (sync fn)": _aiosig_handler,
        "aiosig.add_handler (sync fn), 9 more signals held": _aiosig_handler_many,
        "aiosig.add_handler (async fn)": _aiosig_async_handler,
        "loop.add_signal_handler + create_task (async fn)": _add_signal_handler_task,
    }
    waits = {
        "aiosig.open_signal_receiver": _receiver,
        "aiosig.open_signal_receiver (blocked: precise)": _receiver,
        "aiosig.sigwaitinfo (blocked: precise)": _sigwaitinfo,
        "run_in_executor(None, signal.sigwaitinfo) (blocked)": _executor_sigwaitinfo,
        "anyio.open_signal_receiver": _anyio_receiver,
        "trio.open_signal_receiver": _trio_receiver,
    }
    if mech in callbacks:
        run_on(loop, lambda: _by_callback(rally, callbacks[mech]))
    elif mech in waits:
        run_on(loop, lambda: waits[mech](rally))
    else:
        _floor(rally)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one latency case in this (fresh) worker; return per-round-trip statistics."""
    mech, loop, n, warmup = spec["mech"], spec["loop"], spec["n"], spec["warmup"]
    blocked = "blocked" in mech or mech.startswith("floor")
    rally_total = n + warmup
    with Peer("respond", PING, PONG, TIMEOUT) as peer:  # spawned before any mask change
        rally = Rally(peer.pid, rally_total)
        if blocked:
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, {PONG})
        try:
            _play(mech, loop, rally)
        finally:
            if blocked:
                drain_pending({PONG})  # a reply left over after a failure must not kill us
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    us = [s / 1000 for s in rally.samples[warmup:]]
    return {
        "median_us": median(us),
        "p99_us": percentile(us, 99),
        "min_us": min(us),
        "samples": len(us),
        "precise_fraction": rally.precise / max(len(rally.samples), 1),
    }
