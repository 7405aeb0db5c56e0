"""Awaitable ``sigwait``, ``sigwaitinfo`` and ``sigtimedwait``.

Theory of operation
-------------------
Same arguments, validation, errors and results as the stdlib functions, but the loop keeps
running while a coroutine waits.

Rule 1 (what is caught): a signal the calling thread blocks is read from the kernel's queue
(precise, with the sender's siginfo, through the loop's signalfd); one already pending
returns at once, as the stdlib's does. A signal that is not blocked is caught by a hub
subscription that lives for the duration of the wait only: between waits the previous
disposition applies, as with the stdlib. To consume a stream, use a receiver.

Rule 2 (cancel-safe): a wait that is cancelled after its delivery arrived but before the
coroutine resumed hands the delivery to the loop's backlog; the next wait on that signal
takes it from there first. Nothing is lost to a cancellation.

Waits are subscriptions, so concurrent waits for one signal all see a delivery (broadcast).
"""

from __future__ import annotations

import asyncio
import math
import operator
import os
import signal
import warnings
import weakref
from collections import deque
from collections.abc import Iterable

from . import _platform
from ._hub import get_hub
from ._precise import blocked_signals, precise_source
from ._siginfo import SigInfo

__all__ = ("sigtimedwait", "sigwait", "sigwaitinfo")

_backlogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, deque[SigInfo]] = (
    weakref.WeakKeyDictionary()
)


def _sigset_arg(sigset: object) -> frozenset[int]:
    """Convert `sigset` exactly as the stdlib's ``_Py_Sigset_Converter`` does."""
    try:
        items = iter(sigset)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"'{type(sigset).__name__}' object is not iterable") from None
    valid = signal.valid_signals()
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
    """One pending wait: a precise consumer and a plain subscription, for one result."""

    def __init__(self, signums: frozenset[int], loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[SigInfo] = loop.create_future()
        self.precise_signals = signums & blocked_signals()
        self._source = precise_source(loop) if self.precise_signals else None
        if self._source is None:
            self.precise_signals = frozenset()
        self._sub = get_hub().subscribe(signums, self.offer, loop=loop)
        if self._source is not None:
            self._source.add(self)

    def room(self) -> int:
        return 0 if self.future.done() else 1

    def offer(self, info: SigInfo) -> None:
        if not self.future.done():
            self.future.set_result(info)

    def close(self) -> None:
        if self._source is not None:
            self._source.remove(self)
        self._sub.close()


def _take_backlog(loop: asyncio.AbstractEventLoop, signums: frozenset[int]) -> SigInfo | None:
    backlog = _backlogs.get(loop)
    if backlog:
        for info in backlog:
            if info.si_signo in signums:
                backlog.remove(info)
                return info
    return None


def _take_pending(signums: frozenset[int]) -> SigInfo | None:
    """A blocked signal that is already pending, read at once with its full siginfo."""
    blocked = signums & blocked_signals()
    if not blocked or not blocked & signal.sigpending():
        return None
    if _platform.HAVE_SIGNALFD:
        fd = _platform.signalfd(-1, blocked, _platform.SFD_NONBLOCK | _platform.SFD_CLOEXEC)
        try:
            infos = _platform.read_signalfd(fd, 1)
        finally:
            os.close(fd)
        return infos[0] if infos else None
    got = signal.sigtimedwait(blocked, 0)
    return _platform.from_struct_siginfo(got) if got is not None else None


async def _wait(signums: frozenset[int], timeout: float | None) -> SigInfo | None:
    loop = asyncio.get_running_loop()
    early = _take_backlog(loop, signums) or _take_pending(signums)
    if early is not None:
        return early
    wait = _Wait(signums, loop)
    try:
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
