"""Awaitable ``sigwait``, ``sigwaitinfo`` and ``sigtimedwait``.

Theory of operation
-------------------
Same arguments, validation, errors and results as the stdlib functions, but the loop keeps
running while a coroutine waits.

Rule 1 (what is caught): a signal the calling thread blocks is read from the kernel's queue
(precise, with the sender's siginfo, through the loop's signalfd); one already pending
returns at once, as the stdlib's does, read through that same signalfd so that the loop's
receivers and handlers see it too. A signal that is not blocked is caught by a hub
subscription that lives for the duration of the wait only: between waits the previous
disposition applies, as with the stdlib. To consume a stream, use a receiver.

Rule 2 (cancel-safe): a delivery that completed a wait whose coroutine was cancelled before
it resumed goes to the loop's backlog, and so does one that reaches a wait it can no longer
complete: its future was cancelled a moment earlier in the same loop turn (by a handler of
the same delivery, say), or the wait was already closed. The next wait on that signal takes
it from the backlog first.

  Known limit: a delivery that another loop's hub reader queued for this loop
  (``call_soon_threadsafe``) and that runs after the wait closed never reaches the wait: the
  hub drops deliveries to a closed subscription. Only a wait on a loop that shares signals
  with a loop in another thread, cancelled in that window, can lose one.

Rule 3 (the stdlib's arguments, checked at the call): ``sigwait`` and friends are plain
functions that convert their arguments (``_convert.sigset``, ``_convert.timeout_ns``) and
only then return the coroutine that waits, so a bad argument raises where the stdlib's would,
at the call, and the stdlib's RuntimeWarning for an invalid number points at the caller's
line. Every valid number is accepted, as in the stdlib, but a wait only subscribes to the
signals a loop can catch: SIGKILL and SIGSTOP (the kernel drops them from any wait set),
the synchronous faults (the hub installs no handler for them) and SIGCHLD on uvloop (libuv
owns it) are left out, and a set of only those waits for the timeout or cancellation.
Rejected: an ``async def`` that computes the warning's stacklevel, because its errors would
still come at the ``await``, and a coroutine never awaited would hide them.

Waits are subscriptions, so concurrent waits for one signal all see a delivery (broadcast).
"""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections import deque
from collections.abc import Coroutine, Iterable
from typing import Any, NoReturn

from . import _convert, _platform
from ._loops import is_uvloop
from ._precise import blocked_signals, open_consumer
from ._siginfo import SigInfo

__all__ = ("sigtimedwait", "sigwait", "sigwaitinfo")

_backlogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, deque[SigInfo]] = (
    weakref.WeakKeyDictionary()
)


class _Wait:
    """One pending wait: a consumer of both sources, for one result."""

    def __init__(self, signums: frozenset[int], loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[SigInfo] = loop.create_future()
        self._loop = loop
        self._closed = False
        self._consumer = open_consumer(signums, self.offer, self.room, loop)

    def room(self) -> int:
        return 0 if self._closed or self.future.done() else 1

    def offer(self, info: SigInfo) -> None:
        if self._closed or self.future.cancelled():
            # Rule 2: it arrived during the wait, but the waiter is gone.
            _backlogs.setdefault(self._loop, deque()).append(info)
        elif not self.future.done():
            self.future.set_result(info)

    def take_pending(self) -> None:
        """Read a blocked signal that is already pending, through the loop's signalfd.

        Through the loop's source, not a private signalfd, so that the loop's receivers and
        handlers of that signal see the delivery too.
        """
        if self._consumer.precise_signals & signal.sigpending():
            self._consumer.read_pending()

    def close(self) -> None:
        self._closed = True
        self._consumer.close()


def _take_backlog(loop: asyncio.AbstractEventLoop, signums: frozenset[int]) -> SigInfo | None:
    backlog = _backlogs.get(loop)
    if backlog:
        for info in backlog:
            if info.si_signo in signums:
                backlog.remove(info)
                return info
    return None


def _take_pending_without_signalfd(signums: frozenset[int]) -> SigInfo | None:
    """A blocked signal that is already pending, where there is no signalfd (not Linux)."""
    if _platform.HAVE_SIGNALFD:
        return None  # the loop's precise source reads it (see `_Wait.take_pending`)
    blocked = signums & blocked_signals()
    if not blocked or not blocked & signal.sigpending():
        return None
    got = signal.sigtimedwait(blocked, 0)
    return _platform.from_struct_siginfo(got) if got is not None else None


def _waitable(signums: frozenset[int], loop: asyncio.AbstractEventLoop) -> frozenset[int]:
    """The signals of a valid set that a wait on `loop` can catch (Rule 3)."""
    never = _convert.UNCATCHABLE | _convert.FAULTS
    if is_uvloop(loop):
        never |= {signal.SIGCHLD}  # libuv's child watcher owns it (see Hub.subscribe)
    return signums - never


async def _wait(signums: frozenset[int], timeout: float | None) -> SigInfo | None:
    loop = asyncio.get_running_loop()
    signums = _waitable(signums, loop)
    if not signums:
        await _wait_for_nothing(loop, timeout)
        return None
    early = _take_backlog(loop, signums) or _take_pending_without_signalfd(signums)
    if early is not None:
        return early
    wait = _Wait(signums, loop)
    try:
        wait.take_pending()
        if wait.future.done():
            return wait.future.result()
        if timeout is None:
            return await wait.future
        async with asyncio.timeout(timeout):
            return await asyncio.shield(wait.future)
    except (asyncio.CancelledError, TimeoutError):
        if wait.future.done() and not wait.future.cancelled():
            got = wait.future.result()
            if timeout is not None and not _is_cancelled_task():
                return got  # the delivery won the race against the timeout
            _backlogs.setdefault(loop, deque()).append(got)
        if timeout is not None and not _is_cancelled_task():
            return None
        raise
    finally:
        wait.close()


async def _wait_for_nothing(loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
    if timeout is None:
        await _forever(loop)
    await asyncio.sleep(timeout)


async def _forever(loop: asyncio.AbstractEventLoop) -> NoReturn:
    await loop.create_future()  # nothing completes it: only cancellation ends the wait
    raise AssertionError("unreachable")


def _is_cancelled_task() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# The public waits are plain functions that validate, then return the coroutine (Rule 3).


def sigwaitinfo(sigset: Iterable[int], /) -> Coroutine[Any, Any, SigInfo]:
    """Wait for one of the signals in `sigset`; return its `SigInfo`.

    The awaitable form of ``signal.sigwaitinfo``: same argument and errors. A signal the
    calling thread blocks is read from the kernel with the sender's siginfo; an unblocked one
    is caught during the wait only, as a plain delivery.

    The argument is checked at the call, before anything is subscribed, so a bad one raises
    there (not at the ``await``), with the stdlib's exception and message; the stdlib's
    RuntimeWarning for an invalid number in the set points at the calling line. This makes
    it a plain function that returns a coroutine: ``inspect.iscoroutinefunction`` is False
    for it, and ``await``, ``asyncio.create_task`` and ``asyncio.wait_for`` take what it
    returns as usual.

    Like the stdlib's, it accepts every valid signal number, but only the signals a loop can
    catch complete the wait: never SIGKILL or SIGSTOP (nobody can wait for them; the stdlib's
    wait ignores them too), never SIGSEGV, SIGBUS, SIGFPE or SIGILL (aiosig installs no
    handler for a synchronous fault, which would make a real fault loop forever; the
    stdlib's wait would return one sent with kill), and not SIGCHLD on uvloop (libuv's child
    watcher owns it). A set of only such signals waits until cancelled.

    Raises:
        TypeError, ValueError, OverflowError: `sigset` is not an iterable of signal numbers
            in range.
    """
    return _sigwaitinfo(_convert.sigset(sigset, stacklevel=2))


async def _sigwaitinfo(signums: frozenset[int]) -> SigInfo:
    got = await _wait(signums, None)
    assert got is not None
    return got


def sigwait(sigset: Iterable[int]) -> Coroutine[Any, Any, signal.Signals | int]:
    """Wait for one of the signals in `sigset`; return its number, as ``signal.sigwait``.

    Checked at the call, and waiting for the same signals, as `sigwaitinfo`. Like the
    stdlib's (a Python function), it also takes `sigset` by keyword.

    Raises:
        TypeError, ValueError, OverflowError: `sigset` is not an iterable of signal numbers
            in range.
    """
    return _sigwait(_convert.sigset(sigset, stacklevel=2))


async def _sigwait(signums: frozenset[int]) -> signal.Signals | int:
    return (await _sigwaitinfo(signums)).si_signo


def sigtimedwait(sigset: Iterable[int], timeout: float, /) -> Coroutine[Any, Any, SigInfo | None]:
    """Like `sigwaitinfo`, but give up after `timeout` seconds and return None.

    Checked at the call, and waiting for the same signals, as `sigwaitinfo`; a set of only
    signals that never complete a wait waits for the timeout. `timeout` is rounded up to
    whole nanoseconds, as the stdlib rounds it (so a tiny negative float means 0).

    Raises:
        ValueError: `timeout` is negative or NaN, or a signal number is out of range.
        TypeError: `sigset` is not iterable, or `timeout` is not a number.
        OverflowError: `timeout` is out of range.
    """
    signums = _convert.sigset(sigset, stacklevel=2)
    return _sigtimedwait(signums, _convert.timeout_ns(timeout) / 1e9)


async def _sigtimedwait(signums: frozenset[int], timeout: float) -> SigInfo | None:
    return await _wait(signums, timeout)
