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

Waits are subscriptions, so concurrent waits for one signal all see a delivery (broadcast).
"""

from __future__ import annotations

import asyncio
import math
import operator
import signal
import warnings
import weakref
from collections import deque
from collections.abc import Iterable

from . import _platform
from ._precise import blocked_signals, open_consumer
from ._siginfo import SigInfo

__all__ = ("sigtimedwait", "sigwait", "sigwaitinfo")

_backlogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, deque[SigInfo]] = (
    weakref.WeakKeyDictionary()
)


# Computed once: the stdlib's valid_signals() builds a set of enum members (75 µs a call).
_VALID_SIGNALS = frozenset(int(s) for s in signal.valid_signals())


def _sigset_arg(sigset: object) -> frozenset[int]:
    """Convert `sigset` exactly as the stdlib's ``_Py_Sigset_Converter`` does."""
    try:
        items = iter(sigset)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"'{type(sigset).__name__}' object is not iterable") from None
    valid = _VALID_SIGNALS
    out: set[int] = set()
    for item in items:
        signum = operator.index(item)
        if not -(2**63) <= signum < 2**63:
            signum = -1  # PyLong_AsLongAndOverflow reports an overflow as -1
        if not 1 <= signum < signal.NSIG:
            raise ValueError(f"signal number {signum} out of range [1; {signal.NSIG - 1}]")
        if signum not in valid:
            warnings.warn(
                f"invalid signal number {signum}, please use valid_signals()",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        out.add(signum)
    return frozenset(out)


def _timeout_arg(timeout: object) -> float:
    """Convert `timeout` as ``signal.sigtimedwait`` does (``_PyTime_FromSecondsObject``)."""
    if isinstance(timeout, float):
        value = timeout
    else:
        try:
            value = float(operator.index(timeout))  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"'{type(timeout).__name__}' object cannot be interpreted as an integer"
            ) from None
    if math.isnan(value):
        raise ValueError("Invalid value NaN (not a number)")
    if abs(value) * 1e9 >= 2**63:
        if isinstance(timeout, float):
            raise OverflowError("timestamp out of range for platform time_t")
        raise OverflowError("timestamp too large to convert to C _PyTime_t")
    if value < 0:
        raise ValueError("timeout must be non-negative")
    return value


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


async def _wait(signums: frozenset[int], timeout: float | None) -> SigInfo | None:
    loop = asyncio.get_running_loop()
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


def _is_cancelled_task() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def sigwaitinfo(sigset: Iterable[int], /) -> SigInfo:
    """Wait for one of the signals in `sigset`; return its `SigInfo`.

    The awaitable form of ``signal.sigwaitinfo``: same argument and errors. A signal the
    calling thread blocks is read from the kernel with the sender's siginfo; an unblocked one
    is caught during the wait only, as a plain delivery.

    Raises:
        TypeError, ValueError: `sigset` is not an iterable of valid signal numbers.
    """
    got = await _wait(_sigset_arg(sigset), None)
    assert got is not None
    return got


async def sigwait(sigset: Iterable[int], /) -> signal.Signals | int:
    """Wait for one of the signals in `sigset`; return its number, as ``signal.sigwait``."""
    info = await sigwaitinfo(sigset)
    return info.si_signo


async def sigtimedwait(sigset: Iterable[int], timeout: float, /) -> SigInfo | None:
    """Like `sigwaitinfo`, but give up after `timeout` seconds and return None.

    Raises:
        ValueError: `timeout` is negative or NaN, or a signal number is out of range.
        TypeError: `sigset` is not iterable, or `timeout` is not a number.
    """
    signums = _sigset_arg(sigset)
    return await _wait(signums, _timeout_arg(timeout))
