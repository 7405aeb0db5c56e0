"""Scenario 2: throughput, a flooder peer sending real-time signals as fast as it can.

The flooder (``_peer.py flood``) sends COUNT SIGRTMIN with ``sigqueue`` and retries on EAGAIN,
so every send it reports was queued by the kernel: ``counted / sent`` below 1 is a loss on
the receiving side, never the kernel's RLIMIT_SIGPENDING. The rate is deliveries counted per
second, from the ``go`` to the last delivery counted; the flooder's own rate is reported
beside it, to show when the sender rather than the receiver was the bottleneck.

SIGRTMIN keeps its default disposition (terminate) underneath, on purpose: a SIG_IGN safety
net would change what is measured, because restoring SIG_IGN discards every instance of the
signal still pending, blocked or not (POSIX), and aiosig.sigwaitinfo restores the previous
disposition at the end of every wait. A case only ends once the flooder is done and every
delivery arrived (or nothing arrived for QUIET_S), so no signal comes late; if one did, the
worker would die and the case would be reported as failed, not silently skewed.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

from _common import TIMEOUT, Peer, drain_pending, run_on

SIG = signal.SIGRTMIN
QUIET_S = 0.3  # after the flooder finished, stop counting after this long without a delivery

MECHANISMS: dict[str, tuple[str, ...]] = {
    "loop.add_signal_handler (baseline)": ("asyncio", "uvloop"),
    "signal.signal + call_soon_threadsafe": ("asyncio", "uvloop"),
    "aiosig.add_handler (sync fn)": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver (blocked: precise)": ("asyncio", "uvloop"),
    "aiosig.sigwaitinfo (blocked: precise)": ("asyncio", "uvloop"),
    "anyio.open_signal_receiver": ("asyncio", "uvloop"),
    "trio.open_signal_receiver": ("trio",),
}
NEEDS = {"anyio.open_signal_receiver": "anyio", "trio.open_signal_receiver": "trio"}
# aiosig.sigwaitinfo is one wait per delivery (about 20 µs since issue 10; it re-subscribed
# for every call before, ~100 µs): fewer sends keep the run short.
MAX_N = {"aiosig.sigwaitinfo (blocked: precise)": 10_000}


class Tally:
    """Counts deliveries and remembers when the last one was counted."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0
        self.extra: dict[str, int] = {}

    def hit(self, *_: object) -> None:
        self.count += 1
        self.last = time.perf_counter_ns()


async def _watch(flooder: Peer, tally: Tally, n: int, sleep: Callable[[float], Any]) -> int:
    """Start the flood; return its start time once all arrived or the flow stopped."""
    start = time.perf_counter_ns()
    flooder.go()
    deadline = time.monotonic() + TIMEOUT
    seen, quiet_since = 0, None
    while tally.count < n and time.monotonic() < deadline:
        await sleep(0.01)
        now = time.monotonic()
        if tally.count != seen or not flooder.finished():
            seen, quiet_since = tally.count, None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since > QUIET_S:
            break  # the flooder is done and nothing more arrives
    return start


async def _asyncio_case(mech: str, flooder: Peer, tally: Tally, n: int) -> int:
    import aiosig

    loop = asyncio.get_running_loop()
    if mech.startswith("loop.add_signal_handler"):
        loop.add_signal_handler(SIG, tally.hit)
        try:
            return await _watch(flooder, tally, n, asyncio.sleep)
        finally:
            loop.remove_signal_handler(SIG)
    if mech.startswith("signal.signal"):
        previous = signal.signal(SIG, lambda s, f: loop.call_soon_threadsafe(tally.hit))
        try:
            return await _watch(flooder, tally, n, asyncio.sleep)
        finally:
            signal.signal(SIG, previous)
    if mech.startswith("aiosig.add_handler"):
        handle = aiosig.add_handler(SIG, tally.hit)
        try:
            return await _watch(flooder, tally, n, asyncio.sleep)
        finally:
            handle.remove()
    if mech.startswith("aiosig.open_signal_receiver"):
        async with aiosig.open_signal_receiver(SIG) as receiver:
            return await _consume(receiver, flooder, tally, n, receiver)
    if mech.startswith("aiosig.sigwaitinfo"):
        return await _consume(_waits(aiosig), flooder, tally, n, None)
    import anyio

    with anyio.open_signal_receiver(SIG) as receiver:
        return await _consume(receiver, flooder, tally, n, None)


async def _waits(aiosig: Any) -> Any:
    while True:
        yield await aiosig.sigwaitinfo({SIG})


async def _consume(stream: Any, flooder: Peer, tally: Tally, n: int, receiver: Any) -> int:
    async def consume() -> None:
        async for _ in stream:
            tally.hit()

    task = asyncio.create_task(consume())
    try:
        return await _watch(flooder, tally, n, asyncio.sleep)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if receiver is not None:
            tally.extra["overflowed"] = receiver.overflowed
            tally.extra["left_in_buffer"] = receiver.pending


async def _trio_case(flooder: Peer, tally: Tally, n: int) -> int:
    import trio

    with trio.open_signal_receiver(SIG) as receiver:
        async with trio.open_nursery() as nursery:

            async def consume() -> None:
                async for _ in receiver:
                    tally.hit()

            nursery.start_soon(consume)
            start = await _watch(flooder, tally, n, trio.sleep)
            nursery.cancel_scope.cancel()
    return start


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one throughput case in this (fresh) worker."""
    mech, loop, n = spec["mech"], spec["loop"], spec["n"]
    blocked = "precise" in mech
    tally = Tally()
    with Peer("flood", SIG, n, "sigqueue", 10) as flooder:
        if blocked:
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
        try:
            if loop == "trio":
                start = run_on(loop, lambda: _trio_case(flooder, tally, n))
            else:
                start = run_on(loop, lambda: _asyncio_case(mech, flooder, tally, n))
            flooder.proc.wait(TIMEOUT)
            done = flooder.report().split()
        finally:
            if blocked:
                tally.extra["left_in_kernel"] = drain_pending({SIG})
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    sent, eagain, send_ns = int(done[1]), int(done[2]), int(done[3])
    elapsed = (tally.last - start) / 1e9 if tally.count else float("nan")
    return {
        "sent": sent,
        "counted": tally.count,
        "ratio": tally.count / sent if sent else float("nan"),
        "per_s": tally.count / elapsed if tally.count else 0.0,
        "sender_per_s": sent / (send_ns / 1e9) if send_ns else 0.0,
        "eagain": eagain,
        **tally.extra,
    }
