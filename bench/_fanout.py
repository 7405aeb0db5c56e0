"""Scenario 6: fan-out, the round trip of scenario 1 with N subscribers of the signal.

N sync handlers of SIGUSR2 (``aiosig.add_handler``); the last one to run sends the next ping,
so a sample is the time for every subscriber to have seen the delivery. The alternative is
what one writes without aiosig: one ``loop.add_signal_handler`` whose callback calls N
callbacks in a list. Each subscriber counts its deliveries, and the worker checks that every
one saw every delivery (broadcast).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from _common import TIMEOUT, Peer, median, percentile, run_on
from _latency import PING, PONG, Rally

MECHANISMS: dict[str, tuple[str, ...]] = {
    "aiosig.add_handler (sync fn) x N": ("asyncio", "uvloop"),
    "loop.add_signal_handler calling N callbacks": ("asyncio", "uvloop"),
}
NEEDS: dict[str, str] = {}


class Subscribers:
    """N counting callbacks; the last one ends the sample and sends the next ping."""

    def __init__(self, n: int, rally: Rally, done: asyncio.Future[None]) -> None:
        self.counts = [0] * n
        self.callbacks: list[Callable[..., None]] = [self._counter(i) for i in range(n - 1)]
        self.callbacks.append(self._last(n - 1, rally, done))

    def _counter(self, i: int) -> Callable[..., None]:
        counts = self.counts

        def count(*_: object) -> None:
            counts[i] += 1

        return count

    def _last(self, i: int, rally: Rally, done: asyncio.Future[None]) -> Callable[..., None]:
        counts = self.counts

        def last(*_: object) -> None:
            counts[i] += 1
            if rally.pong():
                rally.ping()
            elif not done.done():
                done.set_result(None)

        return last


async def _play(mech: str, n: int, rally: Rally) -> list[int]:
    import aiosig

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    subs = Subscribers(n, rally, done)
    if mech.startswith("aiosig"):
        handles = [aiosig.add_handler(PONG, fn) for fn in subs.callbacks]
        uninstall: Callable[[], None] = lambda: [h.remove() for h in handles]  # noqa: E731
    else:
        callbacks = subs.callbacks

        def fan_out() -> None:
            for fn in callbacks:
                fn()

        loop.add_signal_handler(PONG, fan_out)
        uninstall = lambda: loop.remove_signal_handler(PONG)  # noqa: E731
    try:
        rally.ping()
        await asyncio.wait_for(done, TIMEOUT)
    finally:
        uninstall()
    return subs.counts


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one fan-out case in this (fresh) worker."""
    mech, loop, n, rounds, warmup = (spec[k] for k in ("mech", "loop", "n", "trips", "warmup"))
    with Peer("respond", PING, PONG, TIMEOUT) as peer:
        rally = Rally(peer.pid, rounds + warmup)
        counts = run_on(loop, lambda: _play(mech, n, rally))
    if set(counts) != {rounds + warmup}:
        raise AssertionError(f"not every subscriber saw every delivery: {sorted(set(counts))}")
    us = [s / 1000 for s in rally.samples[warmup:]]
    return {"median_us": median(us), "p99_us": percentile(us, 99), "samples": len(us)}
