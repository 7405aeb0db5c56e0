"""Receivers: a bounded buffer of deliveries that a coroutine iterates.

Theory of operation
-------------------
A receiver registers with the hub when it is *created* (so nothing sent between creation and
the first ``await`` is missed), buffers every delivery, and hands them out in order.

Rule 1 (bounded, never silent): the buffer holds ``maxsize`` deliveries (64 Ki by default);
a plain delivery beyond that is counted in ``overflowed`` and dropped; a precise one is not
read from the kernel at all until there is room (see ``_precise``).

Rule 2 (independent): every receiver sees every delivery (as do handlers and waits: all of
them subscribe through ``_precise.open_consumer``); receivers of one signal may be nested or
overlap and close in any order: the hub's reference counting restores the disposition that
was there before the first one, whatever the order. One task iterates a receiver at a time: a
second concurrent ``__anext__`` raises instead of silently orphaning the first.

Rule 3 (what is buffered at exit is not lost): a user's own Python handler has seen every
delivery already (the hub's trampoline chains to it). What nobody handled is a delivery still
buffered when the receiver closes, however it closes (``close()``, ``async with``, or the
end of ``asyncio.run``/``uvloop.run``, which ends the loop's subscriptions as one group, or
the interpreter's exit with the loop closed unshut or left open, which does the same): the
receiver hands it to the hub as unconsumed, and once the hub has restored the disposition,
if that is the default action, the signal is raised again so that the action happens (a
buffered SIGTERM still terminates), as trio does. A signal another live aiosig subscription
also received is not raised again: it has seen it. A standard signal is raised once however
many were buffered (the kernel would have merged them); a real-time one once per delivery.
The hub raises it from the main thread, so a receiver on a worker thread's loop gets the
same treatment.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
from collections import deque
from collections.abc import AsyncIterator, Iterable

from ._closing import AsyncClosing
from ._hub import check_signal
from ._precise import Consumer, open_consumer
from ._siginfo import SigInfo

__all__ = ("SignalReceiver", "open_signal_receiver")

DEFAULT_MAXSIZE = 1 << 16


class SignalReceiver(AsyncClosing, AsyncIterator[SigInfo]):
    """An async iterator of `SigInfo`, and an async context manager that closes it.

    Attributes:
        signals: The signals it receives.
        maxsize: How many deliveries it buffers.
        overflowed: How many plain deliveries it dropped because the buffer was full.
        precise_signals: The signals it reads from a signalfd (blocked when it was opened).
    """

    def __init__(
        self, signals: Iterable[int], maxsize: int = DEFAULT_MAXSIZE, *, chain: bool = True
    ) -> None:
        signums = frozenset(check_signal(s) for s in signals)
        if not signums:
            raise ValueError("open_signal_receiver() needs at least one signal.")
        # An int, as the stdlib takes an int parameter (__index__): a float would become the
        # precise source's read size and stop it for every receiver of the loop.
        maxsize = operator.index(maxsize)
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}.")
        self.signals = signums
        self.maxsize = maxsize
        self.overflowed = 0
        self._loop = asyncio.get_running_loop()
        self._buffer: deque[SigInfo] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        # Set before subscribing: the hub may end the receiver (its `close`) at any point after.
        self._consumer: Consumer | None = None
        consumer = self._consumer = open_consumer(
            signums,
            self.offer,
            self.room,
            self._loop,
            chain=chain,
            on_end=self.close,
            offer_many=self.offer_many,
        )
        self.precise_signals = consumer.precise_signals

    # ---- fed by the hub (plain) and the precise source ------------------------------------

    def room(self) -> int:
        """How many more deliveries fit in the buffer."""
        return 0 if self._closed else self.maxsize - len(self._buffer)

    def offer(self, info: SigInfo) -> None:
        """Buffer one delivery and wake the reader; count it in `overflowed` if full.

        The precise source offers only while there is room; a plain delivery can find the
        buffer full.
        """
        if len(self._buffer) >= self.maxsize:
            self.overflowed += 1
            return
        self._buffer.append(info)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def offer_many(self, info: SigInfo, count: int) -> None:
        """Buffer `count` deliveries of `info` at once (a burst); what does not fit overflows."""
        taken = min(count, self.maxsize - len(self._buffer))
        self.overflowed += count - taken
        if taken <= 0:
            return
        self._buffer.extend(itertools.repeat(info, taken))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- the consumer side -----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """How many deliveries are buffered."""
        return len(self._buffer)

    def __aiter__(self) -> SignalReceiver:
        return self

    async def __anext__(self) -> SigInfo:
        """Wait for and return the next delivery; cancelling the wait loses nothing.

        Raises:
            StopAsyncIteration: The receiver is closed and its buffer empty.
            RuntimeError: Another task is already waiting on this receiver.
        """
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._check_loop()
            if self._waiter is not None:
                raise RuntimeError(
                    "another task is already waiting on this receiver; give each task its "
                    "own receiver."
                )
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        info = self._buffer.popleft()
        if len(self._buffer) == self.maxsize - 1 and self._consumer is not None:
            self._consumer.refresh()  # it had no room: the precise source may read again
        return info

    def _check_loop(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            raise RuntimeError(
                "this receiver belongs to another event loop (one that has ended, or runs "
                "elsewhere); open a new receiver in the loop that iterates it."
            )

    def close(self) -> None:
        """Stop receiving; idempotent. Buffered deliveries are raised again (Rule 3)."""
        if self._closed:
            return
        self._closed = True
        leftover, self._buffer = self._buffer, deque()
        waiter = self._waiter
        if waiter is not None and not waiter.done() and not self._loop.is_closed():
            waiter.set_result(None)  # a closed loop cannot schedule the wakeup: it never runs
        if self._consumer is not None:
            self._consumer.close(unconsumed=leftover)  # the hub raises them again (Rule 3)


def open_signal_receiver(
    *signals: int, maxsize: int = DEFAULT_MAXSIZE, chain: bool = True
) -> SignalReceiver:
    """Receive `signals` from now on, as an async iterator of `SigInfo`.

    Use it as ``async with aiosig.open_signal_receiver(SIGHUP) as receiver:
    async for info in receiver: ...``. It registers at once, before the first ``await``.
    One task iterates a receiver at a time; give each task its own receiver.

    Signals the calling thread blocks *when the receiver opens* are read precisely (full
    siginfo) on Linux. Block first, then open: a signal blocked after the receiver opened
    stays pending in the kernel and is never delivered to it.

    Args:
        *signals: The signals to receive.
        maxsize: How many deliveries to buffer before counting overflow: an int, at least 1.
        chain: False to take over the signals' meaning while the receiver is open: the
            handler that was installed before aiosig (``asyncio.Runner``'s Ctrl-C handler for
            SIGINT, a user's own handler) is not called for them then.

    Returns:
        The receiver.

    Raises:
        RuntimeError: No running loop, or the hub refuses a signal (see `Hub.subscribe`).
        ValueError, TypeError, OSError: A bad signal, as ``signal.signal`` raises.
        TypeError, ValueError: `maxsize` is not an int, or is less than 1.
    """
    return SignalReceiver(signals, maxsize, chain=chain)
