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

  A second delivery that reaches a wait already completed by the first (two in one read,
  before the waiter resumed) goes to the backlog too, when no other wait on the loop saw it.

  Known limits: with two or more waits on one signal on one loop, every wait sees every
  delivery (broadcast), so the backlog cannot tell which of them consumed one: a second
  delivery in one read is then not kept, and a wait cancelled by a handler of the very
  delivery that completed it puts that delivery back for the next wait although the other
  waits returned it too. Use a receiver for a stream of one signal shared by several tasks.
  And a delivery that another loop's hub reader queued for this loop
  (``call_soon_threadsafe``) and that runs after the wait closed never reaches the wait: the
  hub drops deliveries to a closed subscription. Only a wait on a loop that shares signals
  with a loop in another thread, cancelled in that window, can lose one.

Rule 3 (a timeout never holds the task): `sigtimedwait`'s timeout is a loop timer that
completes the wait's own future with None; the coroutine awaits that future directly, so
only the future (through its done callback) refers to the task, and it goes with the frame's
locals. A delivery that comes after the timer fired, before the coroutine resumed, goes to
the backlog (Rule 2).

  Alternative rejected: ``asyncio.timeout`` around ``shield(future)``. Its context manager
  keeps the task. When a loop is closed with the waiting task still pending, the garbage
  collector closes the abandoned coroutines in an order of its own; if it closes the wait
  (or a coroutine between the wait and the task's own) first, the wait's ``async with`` exit
  drops the last reference to the task, whose coroutine is then finalized and closes the
  wait a second time while the wait is still unwinding. CPython 3.11 (3.10 too, for
  generators; not 3.12) then reads the running wait's unsaved stack as the object it
  delegates to, and crashes in ``gen_close``.
  Without aiosig, this crashes 3.11.7 and 3.11.2 in 10 runs out of 10 (at about the 140th
  loop; with the ``async with`` in ``churn`` itself, 0 out of 10)::

      async def wait():
          async with asyncio.timeout(0):
              await asyncio.sleep(1)


      async def churn():
          while True:
              try:
                  await wait()
              except TimeoutError:
                  pass


      for _ in range(300):
          loop = asyncio.new_event_loop()
          loop.create_task(churn())
          loop.call_later(0.001, loop.stop)
          loop.run_forever()
          loop.close()

Rule 4 (the stdlib's arguments, checked at the call): ``sigwait`` and friends are plain
functions that convert their arguments (``_convert.sigset``, ``_convert.timeout_ns``) and
only then return the coroutine that waits, so a bad argument raises where the stdlib's would,
at the call, and the stdlib's RuntimeWarning for an invalid number points at the caller's
line. Every valid number is accepted, as in the stdlib, but a wait only subscribes to the
signals a loop can catch: SIGKILL and SIGSTOP (the kernel drops them from any wait set),
the synchronous faults (the hub installs no handler for them) and SIGCHLD on uvloop (libuv
owns it) are left out, and a set of only those waits for the timeout or cancellation.
Rejected: an ``async def`` that computes the warning's stacklevel, because its errors would
still come at the ``await``, and a coroutine never awaited would hide them.

Rule 5 (consecutive waits share a consumer): a loop that waits again and again on blocked
signals (``while True: await sigwaitinfo(...)``) would open and close a hub subscription and a
signalfd registration for every call (140-150 us a wait, against 20 us for a receiver's round
trip). When a wait on signals that are all blocked ends, its consumer stays until the loop's
next iteration (``call_soon``), and a wait on exactly the same signals in the meantime (the
next one in the same loop, which starts in the same step) takes it over. While nobody holds
it, it has no room, so the signals stay pending in the kernel for the next wait, as with the
stdlib's blocking calls. A wait on a signal that is not blocked closes its consumer at once:
between those waits the previous disposition applies (Rule 1). The iteration ends before
``run_until_complete`` or ``asyncio.run`` can return (the callback is queued before the
outer future completes), so no consumer outlives the run that made it.

Waits are subscriptions, so concurrent waits for one signal all see a delivery (broadcast).
"""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, NoReturn

from . import _convert, _platform
from ._loops import is_uvloop
from ._precise import blocked_signals, open_consumer
from ._siginfo import SigInfo

# The C function behind signal.sigpending: ints, without the conversion to Signals (0.3 us).
_sigpending: Callable[[], set[int]] = _platform.C_SIGNAL.sigpending

__all__ = ("sigtimedwait", "sigwait", "sigwaitinfo")

_backlogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, deque[SigInfo]] = (
    weakref.WeakKeyDictionary()
)
_active: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[_Wait]] = (
    weakref.WeakKeyDictionary()
)
# Rule 5: per loop, the consumer the last wait on exactly these blocked signals left behind.
_idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[frozenset[int], _Slot]] = (
    weakref.WeakKeyDictionary()
)


class _Wait:
    """One pending wait: a consumer of both sources, for one result (None: timed out)."""

    def __init__(
        self, signums: frozenset[int], loop: asyncio.AbstractEventLoop, timeout: float | None
    ) -> None:
        self.future: asyncio.Future[SigInfo | None] = loop.create_future()
        self.signums = signums
        self._loop = loop
        _waiting(loop).add(self)
        self._closed = False
        self._expired = False
        self._slot = _Slot.take(signums, loop, self)
        # Rule 3: the timer refers to this wait, never to the task.
        self._timer = None if timeout is None else loop.call_later(timeout, self._expire)

    def room(self) -> int:
        return 0 if self._closed or self.future.done() else 1

    def offer(self, info: SigInfo) -> None:
        if self._closed or self._expired or self.future.cancelled():
            # Rule 2: it arrived during the wait, but the waiter is gone or gave up.
            _backlogs.setdefault(self._loop, deque()).append(info)
        elif not self.future.done():
            self.future.set_result(info)
        elif not any(info.si_signo in other.signums for other in _waiting(self._loop) - {self}):
            # Rule 2: a second delivery before the waiter resumed (two in one read), and no
            # other wait on this loop saw it: the next wait takes it.
            _backlogs.setdefault(self._loop, deque()).append(info)

    def _expire(self) -> None:
        if not self.future.done():
            self._expired = True
            self.future.set_result(None)

    def take_pending(self) -> None:
        """Read a blocked signal that is already pending, through the loop's signalfd.

        Through the loop's source, not a private signalfd, so that the loop's receivers and
        handlers of that signal see the delivery too.
        """
        consumer = self._slot.consumer
        if consumer.precise_signals and not consumer.precise_signals.isdisjoint(_sigpending()):
            consumer.read_pending()

    def close(self) -> None:
        self._closed = True
        _waiting(self._loop).discard(self)
        if self._timer is not None:
            self._timer.cancel()
        self._slot.release(self)


class _Slot:
    """The consumer a wait uses, kept until the loop's next iteration for the next wait (Rule 5).

    It passes deliveries and room on to the wait that holds it; while no wait does, it has no
    room (a blocked signal stays in the kernel's queue) and a plain delivery (a stray one,
    from a thread that does not block the signal) goes to the backlog, as Rule 2's do.
    """

    def __init__(self, signums: frozenset[int], loop: asyncio.AbstractEventLoop) -> None:
        self.wait: _Wait | None = None
        self._signums = signums
        self._loop = loop
        self.consumer = open_consumer(signums, self.offer, self.room, loop)

    @classmethod
    def take(cls, signums: frozenset[int], loop: asyncio.AbstractEventLoop, wait: _Wait) -> _Slot:
        """The idle slot for exactly these signals on `loop`, or a new one, held by `wait`."""
        idle = _idle.get(loop)
        slot = idle.pop(signums, None) if idle else None
        if slot is None or slot.consumer.closed:
            slot = cls(signums, loop)
        slot.wait = wait
        slot.consumer.refresh()  # it has room again: the source reads for it
        return slot

    def room(self) -> int:
        return 0 if self.wait is None else self.wait.room()

    def offer(self, info: SigInfo) -> None:
        if self.wait is not None:
            self.wait.offer(info)
        else:
            _backlogs.setdefault(self._loop, deque()).append(info)

    def release(self, wait: _Wait) -> None:
        """`wait` is done with it: keep it for the next wait, or close it (Rule 5)."""
        if self.wait is not wait:
            return
        self.wait = None
        consumer = self.consumer
        if consumer.closed or consumer.precise_signals != self._signums:
            consumer.close()  # an unblocked signal: the previous disposition applies now
            return
        idle = _idle.setdefault(self._loop, {})
        if idle.get(self._signums) is not None:
            consumer.close()  # another idle slot for these signals is kept already
            return
        try:
            self._loop.call_soon(self._expire)
        except RuntimeError:  # the loop is closed
            consumer.close()
            return
        idle[self._signums] = self

    def _expire(self) -> None:
        if self.wait is None:
            idle = _idle.get(self._loop)
            if idle is not None and idle.get(self._signums) is self:
                del idle[self._signums]
            self.consumer.close()


def _waiting(loop: asyncio.AbstractEventLoop) -> set[_Wait]:
    """The waits not closed yet on `loop`."""
    waits = _active.get(loop)
    if waits is None:
        waits = _active[loop] = set()
    return waits


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
    """The signals of a valid set that a wait on `loop` can catch (Rule 4)."""
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
    wait = _Wait(signums, loop, timeout)
    try:
        wait.take_pending()
        return await wait.future  # Rule 3: no context manager here keeps the task
    except asyncio.CancelledError:
        if wait.future.done() and not wait.future.cancelled():
            got = wait.future.result()
            if got is not None:  # Rule 2: completed, but the coroutine was cancelled
                _backlogs.setdefault(loop, deque()).append(got)
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


# The public waits are plain functions that validate, then return the coroutine (Rule 4).


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
