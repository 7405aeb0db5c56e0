"""Timers: alarm futures and interval timers, and aiosig.core's alarm/setitimer/getitimer.

The kernel timers are shared by the schedulers of ``_itimers`` (its header explains how:
one scheduler per kernel timer, the user's own timer kept as a virtual entry); this module is
what coroutines and aiosig.core call.
"""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from ._closing import AsyncClosing
from ._convert import UINT_MASK, alarm_seconds, c_int, itimer_error, timeval_seconds, timeval_us
from ._itimers import US, Entry, Scheduler, schedulers
from ._siginfo import SigInfo

__all__ = (
    "IntervalTimer",
    "Tick",
    "alarm",
    "core_alarm",
    "core_getitimer",
    "core_setitimer",
    "setitimer",
)

# ---- alarm futures ------------------------------------------------------------------------


class _AlarmFuture(asyncio.Future[SigInfo]):
    """A future whose ``cancel()`` disarms its deadline at once."""

    _aiosig_entry: Entry | None = None
    _aiosig_scheduler: Scheduler | None = None

    def cancel(self, msg: Any | None = None) -> bool:
        cancelled = super().cancel(msg)
        if cancelled and self._aiosig_entry is not None and self._aiosig_scheduler is not None:
            self._aiosig_scheduler.remove(self._aiosig_entry)
        return cancelled

    def _expire(self, info: SigInfo, expiry: int) -> None:
        if not self.done():
            self.set_result(info)


def alarm(seconds: float) -> asyncio.Future[SigInfo]:
    """Return a future that resolves to the SIGALRM delivery `seconds` from now.

    Unlike ``signal.alarm``, seconds may be a float (microsecond resolution, rounded up as
    ``signal.setitimer`` rounds) and many alarms can be pending at once: they share
    ITIMER_REAL (see `aiosig.core.alarm` for the user's own alarm, which keeps working).
    ``alarm(0)`` is due at once: the future resolves on the next SIGALRM, which the kernel
    timer raises within microseconds (never before the caller awaits). With SIGALRM blocked
    (`aiosig.block`), the delivery is read precisely: its ``si_code`` is the kernel's.

    Args:
        seconds: Delay, an int or a float, as ``signal.setitimer`` takes it.

    Returns:
        A future bound to the running loop; ``cancel()`` disarms the alarm.

    Raises:
        TypeError: `seconds` is not a number (the stdlib's message).
        ValueError: `seconds` is NaN.
        OverflowError: `seconds` is out of range.
        signal.ItimerError: `seconds` is negative, as ``signal.setitimer`` refuses it.
        RuntimeError: No running event loop.
    """
    us = timeval_us(seconds)
    if us < 0:
        raise itimer_error()
    loop = asyncio.get_running_loop()
    scheduler = schedulers()[signal.ITIMER_REAL]
    future = _AlarmFuture(loop=loop)
    entry = Entry(scheduler.clock() + us / US, 0, future._expire, loop)
    future._aiosig_entry, future._aiosig_scheduler = entry, scheduler
    scheduler.add(entry)
    return future


# ---- interval timers ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """One expiry of an interval timer, as the consumer receives it.

    Attributes:
        info: The delivery of the timer's signal that fired it.
        missed: Expiries since the previous tick that the consumer did not take, counted
            on the clock the timer runs on (0 when the consumer keeps up).
    """

    info: SigInfo
    missed: int = 0


class IntervalTimer(AsyncClosing):
    """An aiosig itimer: awaitable (next expiry) and an async iterator of `Tick`.

    Made by `setitimer`. Closing it (``aclose()``, or leaving ``async with``) disarms it; the
    user's own timer of the same kind was never disturbed (it runs as a virtual timer while
    aiosig timers share the kernel timer) and has the kernel timer back once none is left
    and no expiry of theirs is still on its way (a loop turn or three at most).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        loop: asyncio.AbstractEventLoop,
        value_us: int,
        interval_us: int,
    ) -> None:
        self.which = scheduler.which
        self._scheduler = scheduler
        self._loop = loop
        self._periodic = interval_us > 0
        self._fired = -1  # the index of the latest expiry
        self._taken = -1  # the index of the latest expiry handed to the consumer
        self._info: SigInfo | None = None
        self._closed = False
        self._waiters: list[asyncio.Future[None]] = []
        # The scheduler holds the timer weakly: one dropped without aclose() goes at its
        # next expiry instead of ticking forever.
        ref = weakref.ref(self)
        entry = Entry(scheduler.clock() + value_us / US, interval_us, None, loop)
        entry.fire = lambda info, expiry: _expire_timer(ref, scheduler, entry, info, expiry)
        self._entry = entry
        scheduler.add(entry)

    def _expire(self, info: SigInfo, expiry: int) -> None:
        self._fired = max(self._fired, expiry)
        self._info = info
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _exhausted(self) -> bool:
        return self._closed or (not self._periodic and self._taken >= 0)

    async def _next_tick(self) -> Tick | None:
        while self._fired <= self._taken:
            if self._exhausted():
                return None
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
        assert self._info is not None
        missed = self._fired - self._taken - 1
        self._taken = self._fired
        return Tick(self._info, missed)

    def __await__(self) -> Generator[Any, None, Tick]:
        """Wait for the next expiry (the first, for a new timer)."""
        tick = yield from self._next_tick().__await__()
        if tick is None:
            raise RuntimeError("this timer is closed or has expired and its tick was taken.")
        return tick

    def __aiter__(self) -> IntervalTimer:
        return self

    async def __anext__(self) -> Tick:
        """The next expiry; the iteration ends when the timer is closed or a one-shot expired."""
        tick = await self._next_tick()
        if tick is None:
            raise StopAsyncIteration
        return tick

    def close(self) -> None:
        """Disarm the timer (idempotent); waiting consumers stop iterating."""
        if not self._closed:
            self._closed = True
            self._scheduler.remove(self._entry)
            self._wake()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._fired + 1} expiries"
        return f"<IntervalTimer which={self.which} {state}>"


def _expire_timer(
    ref: weakref.ref[IntervalTimer],
    scheduler: Scheduler,
    entry: Entry,
    info: SigInfo,
    expiry: int,
) -> None:
    timer = ref()
    if timer is None:
        scheduler.remove(entry)
    else:
        timer._expire(info, expiry)


def setitimer(which: int, seconds: float, interval: float = 0.0, /) -> IntervalTimer:
    """Start an interval timer: await it for its first expiry, or iterate over its `Tick`s.

    The arguments are ``signal.setitimer``'s, converted and checked the same way, with the
    same errors. Any number of aiosig timers of each kind can run at once: they share the
    kernel timer with each other and with the user's own (see the module header). ITIMER_REAL
    runs on monotonic time, ITIMER_VIRTUAL on the process's user CPU time and ITIMER_PROF on
    its user+system CPU time; `Tick.missed` is counted on that clock.

    ``seconds=0`` does not disarm, as it does in the stdlib: the first expiry is due at once.
    ``interval=0`` makes a one-shot timer, whose iteration ends after its one tick.

    Args:
        which: ``ITIMER_REAL``, ``ITIMER_VIRTUAL`` or ``ITIMER_PROF``.
        seconds: Delay to the first expiry.
        interval: Period of the following expiries (0 for none).

    Returns:
        The timer, bound to the running loop. Close it with ``aclose()`` or ``async with``.

    Raises:
        signal.ItimerError: `which` is not a timer, or a time is negative.
        TypeError, ValueError, OverflowError: As ``signal.setitimer`` raises them.
        RuntimeError: No running event loop.
    """
    which_num = c_int(which)
    value_us = timeval_us(seconds)
    interval_us = timeval_us(interval)
    scheduler = schedulers().get(which_num)
    if scheduler is None or value_us < 0 or interval_us < 0:
        raise itimer_error()
    return IntervalTimer(scheduler, asyncio.get_running_loop(), value_us, interval_us)


# ---- aiosig.core's alarm, setitimer and getitimer -----------------------------------------


def core_alarm(seconds: int, /) -> int:
    """Arrange for SIGALRM to arrive after the given number of seconds.

    ``signal.alarm``, coherent with aiosig's timers: while they share ITIMER_REAL, the
    user's alarm is a virtual timer that expires when the kernel's would have, with the
    user's SIGALRM disposition acting on it (see the module header). Same arguments, results
    and errors as the stdlib's; otherwise it is the stdlib's.

    Returns:
        The whole seconds left on the previous alarm (rounded as alarm(2) rounds), or 0.
    """
    number = c_int(seconds) & UINT_MASK  # alarm() takes an unsigned int: -1 is 2**32-1
    scheduler = schedulers()[signal.ITIMER_REAL]
    with scheduler.lock:
        scheduler.prune()
        if not scheduler.active:
            return signal.alarm(seconds)
        old_us, _ = scheduler.set_user_timer_us(number * US, 0)
    return alarm_seconds(old_us)


def core_setitimer(which: int, seconds: float, interval: float = 0.0, /) -> tuple[float, float]:
    """Set an interval timer; return the previous (delay, interval).

    ``signal.setitimer``, coherent with aiosig's timers: while they share the kernel timer
    `which`, the user's timer is a virtual one that fires when the kernel's would have.
    Same arguments, results and errors as the stdlib's; otherwise it is the stdlib's.
    """
    which_num = c_int(which)
    value_us = timeval_us(seconds)
    interval_us = timeval_us(interval)
    scheduler = schedulers().get(which_num)
    if scheduler is not None:
        with scheduler.lock:
            scheduler.prune()
            if scheduler.active:
                if value_us < 0 or interval_us < 0:
                    raise itimer_error()
                old = scheduler.set_user_timer_us(value_us, interval_us)
                return timeval_seconds(old[0]), timeval_seconds(old[1])
    return signal.setitimer(which, seconds, interval)


def core_getitimer(which: int, /) -> tuple[float, float]:
    """Return the current (delay, interval) of the interval timer `which`.

    ``signal.getitimer``, coherent with aiosig's timers: while they share the kernel timer,
    this reports the user's own (virtual) timer. Same results and errors as the stdlib's.
    """
    scheduler = schedulers().get(c_int(which))
    if scheduler is not None:
        with scheduler.lock:
            scheduler.prune()
            if scheduler.active:
                value_us, interval_us = scheduler.user_timer_us()
                return timeval_seconds(value_us), timeval_seconds(interval_us)
    return signal.getitimer(which)
