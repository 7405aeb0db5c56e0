"""What the hub needs to know about loops, threads and runners (asyncio, uvloop, Runner).

Everything aiosig knows about the internals of asyncio, uvloop and ``asyncio.Runner`` is
here, so that the hub only asks questions: which loop, which thread, may this loop take this
signal (`refusal`), is this saved SIGINT handler a finished run's (`fresh_handler`).

A subscription lives on a loop, and ends with it: `LoopReaders` (the map of loops that read
the hub's pipe) registers a sentinel async generator on each loop it reads on, which
``shutdown_asyncgens`` (called by ``asyncio.run`` and ``Runner.close``, on asyncio and
uvloop alike) finalizes, telling the hub to close that loop's subscriptions. The loop's
registry of async generators is weak, so the hub keeps the only strong reference, and a
retired sentinel is marked inactive before it is dropped: when the garbage collector
finalizes it later, nothing is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import threading
from collections.abc import AsyncGenerator, Callable

from ._subscription import Handler

__all__ = (
    "LoopReaders",
    "LoopWatch",
    "fresh_handler",
    "in_loop_thread",
    "is_main_thread",
    "is_uvloop",
    "refusal",
    "retire_sentinel",
    "start_sentinel",
)


def is_main_thread() -> bool:
    """True in the thread that may install signal handlers."""
    return threading.current_thread() is threading.main_thread()


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    """True for a uvloop loop (libuv owns SIGCHLD there)."""
    return type(loop).__module__.startswith("uvloop")


def in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """True when called from inside `loop`, running in this thread."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def refusal(signums: frozenset[int], loop: asyncio.AbstractEventLoop) -> str | None:
    """Why `loop` may not subscribe to `signums`, in one sentence; None if it may."""
    if signal.SIGCHLD in signums and is_uvloop(loop):
        return (
            "SIGCHLD is owned by uvloop's child watcher (libuv); wait for child processes "
            "with asyncio's subprocess API (await proc.wait()) instead."
        )
    if signal.SIGINT in signums and not loop.is_running():
        return (
            "subscribe to SIGINT from inside the running loop, so that asyncio.Runner "
            "installs its Ctrl-C handler first and aiosig can chain to it."
        )
    return None


class LoopWatch:
    """Per loop: how many subscriptions read the pipe there, and the shutdown sentinel."""

    def __init__(self) -> None:
        self.count = 0
        self.active = True
        self.sentinel: AsyncGenerator[None, None] | None = None


def fresh_handler(signum: int, handler: Handler) -> Handler:
    """The handler to put back: asyncio.Runner's Ctrl-C handler of a finished run is stale.

    Runner restores ``default_int_handler`` only if its own handler is still installed; when
    aiosig's trampoline was on top at the end of the run, that falls to aiosig.
    """
    if signum == signal.SIGINT and isinstance(handler, functools.partial):
        owner = getattr(handler.func, "__self__", None)
        task = handler.keywords.get("main_task")
        if isinstance(owner, asyncio.Runner) and task is not None and task.done():
            return signal.default_int_handler
    return handler


def start_sentinel(
    loop: asyncio.AbstractEventLoop, watch: LoopWatch, on_shutdown: Callable[[], None]
) -> AsyncGenerator[None, None] | None:
    """An async generator the running loop finalizes in ``shutdown_asyncgens`` (Rule 4).

    Started here so that the loop's first-iteration hook registers it; the hub keeps the
    only strong reference (the loop's registry is weak).
    """
    if not (loop.is_running() and in_loop_thread(loop)):
        return None

    async def sentinel() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if watch.active:
                on_shutdown()

    agen = sentinel()
    step = agen.asend(None)
    with contextlib.suppress(StopIteration):
        step.send(None)
    return agen


def retire_sentinel(watch: LoopWatch) -> None:
    """Close the sentinel now (its ``finally`` sees ``active`` False and does nothing).

    Dropping it suspended would make its loop schedule ``aclose()`` as a task at garbage
    collection, which asyncio reports as destroyed while pending if the loop stops first.
    """
    sentinel, watch.sentinel = watch.sentinel, None
    if sentinel is not None:
        with contextlib.suppress(StopIteration, RuntimeError):
            sentinel.aclose().send(None)


class LoopReaders:
    """The loops that read the hub's pipe: per loop, a count of subscriptions, the reader and
    the shutdown sentinel. The hub holds its lock around every call; this class owns the map.
    """

    def __init__(
        self,
        on_readable: Callable[[asyncio.AbstractEventLoop], None],
        on_shutdown: Callable[[asyncio.AbstractEventLoop], None],
    ) -> None:
        self._on_readable = on_readable
        self._on_shutdown = on_shutdown
        self._watches: dict[asyncio.AbstractEventLoop, LoopWatch] = {}

    def add(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        """One more subscription on `loop`; the first registers the reader and the sentinel."""
        watch = self._watches.get(loop)
        if watch is None:
            watch = self._watches[loop] = LoopWatch()
        watch.count += 1
        if watch.count == 1:
            loop.add_reader(fd, self._on_readable, loop)
            watch.sentinel = start_sentinel(loop, watch, functools.partial(self._on_shutdown, loop))

    def remove(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        """One subscription less on `loop`; the last unregisters the reader."""
        watch = self._watches.get(loop)
        if watch is None:
            return
        watch.count -= 1
        if watch.count > 0:
            return
        del self._watches[loop]
        watch.active = False  # its sentinel, when finalized, must not close anything
        retire_sentinel(watch)
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_reader(fd)

    def forget_closed(self) -> list[asyncio.AbstractEventLoop]:
        """Forget the loops that were closed (their readers went with them); return them."""
        closed = [loop for loop in self._watches if loop.is_closed()]
        for loop in closed:
            watch = self._watches.pop(loop)
            watch.active = False
            watch.sentinel = None
        return closed

    def idle(self) -> list[asyncio.AbstractEventLoop]:
        """The loops that are not running now."""
        return [loop for loop in self._watches if not loop.is_running()]

    def clear(self) -> None:
        """Forget every loop (a forked child)."""
        self._watches.clear()
