"""Scenario 3: memory, per subscription and for a full 64 Ki-entry receiver buffer.

Per subscription: N subscriptions to one signal (SIGUSR1) are created in a fresh worker,
after one *primer* subscription that pays the one-time costs (the hub, its pipe and reader,
the trampoline, a signalfd for precise receivers), so that the numbers are the marginal cost
of one more. Two passes: the first, untraced, gives the time to create and to close each one
and the RSS growth; the second gives the bytes they hold, from ``tracemalloc`` (exact for
Python allocations, blind to what C libraries allocate), measured after ``gc.collect()``.
The primer's own cost is reported as ``first_bytes``.

Full buffer: one receiver is filled with exactly its default ``maxsize`` (64 Ki) deliveries
of SIGRTMIN sent by the worker to itself (``os.kill`` for the plain path, where each one is
delivered at once; ``sigqueue`` for the precise one, where they queue in the kernel), then
``EXTRA`` more: a plain receiver must count them as overflowed, a precise one must leave them
in the kernel's queue. The bytes are the tracemalloc growth from the empty receiver to the
full one. Then everything is drained and counted, so none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from _common import TIMEOUT, disposition, drain_pending, rss_bytes, run_on

SIG = signal.SIGUSR1
RT = signal.SIGRTMIN
EXTRA = 100
CHUNK = 64

MECHANISMS: dict[str, tuple[str, ...]] = {
    "aiosig.open_signal_receiver": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver (blocked: precise)": ("asyncio", "uvloop"),
    "aiosig.add_handler (sync fn)": ("asyncio", "uvloop"),
    "anyio.open_signal_receiver": ("asyncio", "uvloop"),
    "asyncio.Queue per consumer + 1 add_signal_handler": ("asyncio", "uvloop"),
    "loop.add_signal_handler (1 only)": ("asyncio", "uvloop"),
}
NEEDS = {"anyio.open_signal_receiver": "anyio"}
FULL: dict[str, tuple[str, ...]] = {
    "aiosig.open_signal_receiver": ("asyncio", "uvloop"),
    "aiosig.open_signal_receiver (blocked: precise)": ("asyncio", "uvloop"),
    "anyio.open_signal_receiver": ("asyncio", "uvloop"),
}


def _noop(*_: object) -> None:
    pass


Make = Callable[[], object]
Close = Callable[[object], None]


def _kind(mech: str) -> tuple[Make, Close]:
    """How to create one subscription of this kind, and how to close one.

    Nothing else is allocated per subscription (no ExitStack entry, no closure), so that
    the bytes measured are the subscription's own.
    """
    import aiosig

    loop = asyncio.get_running_loop()
    if mech.startswith("aiosig.open_signal_receiver"):
        return (lambda: aiosig.open_signal_receiver(SIG)), (lambda r: r.close())
    if mech.startswith("aiosig.add_handler"):
        return (lambda: aiosig.add_handler(SIG, _noop)), (lambda h: h.remove())
    if mech.startswith("anyio"):
        import anyio
        import anyio._backends._asyncio  # imported lazily on first use otherwise

        def enter() -> object:
            receiver = anyio.open_signal_receiver(SIG)
            receiver.__enter__()
            return receiver

        return enter, (lambda r: r.__exit__(None, None, None))
    if mech.startswith("asyncio.Queue"):
        # What one writes without aiosig: one handler that broadcasts to a queue per consumer
        # (installed with the primer, the first queue).
        queues: list[asyncio.Queue[int]] = []

        def subscribe() -> object:
            if not queues:
                loop.add_signal_handler(SIG, lambda: [q.put_nowait(SIG) for q in queues])
            q: asyncio.Queue[int] = asyncio.Queue()
            queues.append(q)
            return q

        def unsubscribe(q: object) -> None:
            queues.remove(q)
            if not queues:
                loop.remove_signal_handler(SIG)

        return subscribe, unsubscribe
    return (lambda: loop.add_signal_handler(SIG, _noop)), (
        lambda _: loop.remove_signal_handler(SIG)
    )


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _create(make: Make, keep: list[object]) -> None:
    for i in range(len(keep)):  # into a list allocated beforehand: it is not counted
        keep[i] = make()


def _close(close: Close, keep: list[object]) -> None:
    for i, obj in enumerate(keep):
        close(obj)
        keep[i] = None


async def _per_subscription(mech: str, n: int, trace: bool) -> dict[str, Any]:
    make, close = _kind(mech)
    out: dict[str, Any] = {}
    if mech.startswith("loop.add_signal_handler"):
        n = 1  # a second one replaces the first: there is nothing more to measure
        primer = None
    else:
        tracemalloc.start()
        before = _traced()
        primer = make()
        out["first_bytes"] = _traced() - before
        tracemalloc.stop()
    keep: list[object] = [None] * n
    gc.collect()
    rss0, t0 = rss_bytes(), time.perf_counter_ns()
    _create(make, keep)
    t1 = time.perf_counter_ns()
    out["rss_bytes"] = rss_bytes() - rss0
    _close(close, keep)
    out["create_us"] = (t1 - t0) / n / 1000
    out["close_us"] = (time.perf_counter_ns() - t1) / n / 1000
    if trace:
        tracemalloc.start()
        before = _traced()
        _create(make, keep)
        out["bytes"] = _traced() - before
        tracemalloc.stop()
        _close(close, keep)
        out["per_object_bytes"] = out["bytes"] / n
    if primer is not None:
        close(primer)
    out["n"] = n
    return out


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not predicate():
            await asyncio.sleep(0.005)


async def _kill_self(count: int) -> None:
    # Delivered at once, each one writes a byte to the wakeup fd. Yield every CHUNK sends:
    # asyncio's and uvloop's wakeup socketpairs hold only a few hundred one-byte writes
    # (each is an skb), and bytes that do not fit are dropped; aiosig's pipe would not need it.
    me, kill = os.getpid(), os.kill
    for i in range(count):
        kill(me, RT)
        if i % CHUNK == CHUNK - 1:
            await asyncio.sleep(0)


async def _fill_plain(receiver: Any, maxsize: int) -> None:
    await _kill_self(maxsize)
    await _until(lambda: receiver.pending >= maxsize)


async def _fill_precise(receiver: Any, maxsize: int) -> None:
    import aiosig

    me, send = os.getpid(), aiosig.sigqueue
    for _ in range(maxsize):
        while True:
            try:
                send(me, RT)
                break
            except BlockingIOError:  # RLIMIT_SIGPENDING: let the loop read some
                await asyncio.sleep(0)
    await _until(lambda: receiver.pending >= maxsize)


async def _full_aiosig(precise: bool, size: int) -> dict[str, Any]:
    import aiosig

    out: dict[str, Any] = {}
    # The default maxsize is what is measured; a smaller one only for the quick smoke run.
    kwargs = (
        {} if size == aiosig.open_signal_receiver.__kwdefaults__["maxsize"] else {"maxsize": size}
    )
    async with aiosig.open_signal_receiver(RT, **kwargs) as receiver:
        maxsize = receiver.maxsize
        tracemalloc.start()
        before = _traced()
        await (_fill_precise if precise else _fill_plain)(receiver, maxsize)
        out["bytes"] = _traced() - before
        tracemalloc.stop()
        out["entries"] = receiver.pending
        await _extra(receiver, precise)
        out["overflowed"] = receiver.overflowed
        out["pending_in_kernel"] = RT in signal.sigpending()
        got = 0
        while receiver.pending:
            await anext(receiver)
            got += 1
        if precise:  # the kernel's queue is read again once there is room
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    while got < maxsize + EXTRA:
                        await anext(receiver)
                        got += 1
        out["received"] = got
        out["precise"] = bool(receiver.precise_signals)
    out["sent"] = maxsize + EXTRA
    return out


async def _extra(receiver: Any, precise: bool) -> None:
    import aiosig

    if precise:
        for _ in range(EXTRA):
            aiosig.sigqueue(os.getpid(), RT)
    else:
        await _kill_self(EXTRA)
    await asyncio.sleep(0.05)  # let the loop see them (and count or leave them)


async def _full_anyio(maxsize: int) -> dict[str, Any]:
    import anyio

    out: dict[str, Any] = {}
    with anyio.open_signal_receiver(RT) as receiver:
        tracemalloc.start()
        before = _traced()
        await _kill_self(maxsize)
        queue = receiver._signal_queue  # type: ignore[attr-defined]  # unbounded deque
        await _until(lambda: len(queue) >= maxsize)
        out["bytes"] = _traced() - before
        tracemalloc.stop()
        out["entries"] = len(queue)
        queue.clear()
    out["sent"] = out["received"] = maxsize
    return out


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one memory case in this (fresh) worker."""
    mech, loop = spec["mech"], spec["loop"]
    blocked = "precise" in mech
    signum = RT if spec["kind"] == "full" else SIG
    # SIG_IGN underneath: a late or leftover signal must not terminate the worker.
    with disposition(signum, signal.SIG_IGN):
        if blocked:
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
        try:
            if spec["kind"] == "full" and mech.startswith("anyio"):
                return run_on(loop, lambda: _full_anyio(spec["n"]))
            if spec["kind"] == "full":
                return run_on(loop, lambda: _full_aiosig(blocked, spec["n"]))
            trace = spec.get("trace", True)
            return run_on(loop, lambda: _per_subscription(mech, spec["n"], trace))
        finally:
            if blocked:
                drain_pending({signum})
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
