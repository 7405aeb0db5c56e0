"""Subscriptions: what the hub delivers to (entry points validate with `check_signal`)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._convert import check_signal  # its home before ``_convert``; kept for importers
from ._siginfo import SigInfo

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = (
    "Deliver",
    "DeliverMany",
    "FrameHook",
    "Handler",
    "Members",
    "Reservation",
    "Subscription",
    "check_signal",
    "signal_name",
)

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
Deliver = Callable[[SigInfo], object]
DeliverMany = Callable[[SigInfo, int], object]
FrameHook = Callable[[int, FrameType | None], object]


class Subscription:
    """Deliveries of some signals to one callback on one loop; ``close()`` is idempotent."""

    def __init__(
        self,
        hub: Hub,
        signals: frozenset[int],
        deliver: Deliver,
        loop: asyncio.AbstractEventLoop,
        chain: bool = True,
        in_handler: FrameHook | None = None,
        on_end: Callable[[], object] | None = None,
        deliver_many: DeliverMany | None = None,
    ) -> None:
        self.signals = signals
        self.loop = loop
        self.chain = chain
        self.in_handler = in_handler
        self._on_end = on_end
        self.callback = deliver  # the reader calls it directly (see `_reader.run_batch`)
        self._deliver_many = deliver_many
        self.undelivered = 0  # of a `deliver_many` that an escaping exception cut short
        self._hub = hub
        self.closed = False
        self.attached = True  # counted in its loop's reader (the hub's business)

    def deliver(self, info: SigInfo) -> None:
        """Call the callback; an exception goes to the loop's exception handler."""
        if self.closed:
            return
        try:
            self.callback(info)
        except Exception as exc:
            self.report(exc)

    def report(self, exc: Exception) -> None:
        """Hand an exception the callback raised to the loop's exception handler."""
        self.loop.call_exception_handler(
            {"message": "aiosig subscription callback failed", "exception": exc}
        )

    def deliver_many(self, info: SigInfo, count: int) -> None:
        """`count` deliveries of `info` in a row (a burst of one real-time signal).

        One call if the owner takes a run at once (a receiver's buffer), else `deliver`
        `count` times; if SystemExit or Ctrl-C escapes, ``undelivered`` says how many of
        them are owed still (the reader hands them over later).
        """
        self.undelivered = 0
        if self.closed:
            return
        if self._deliver_many is not None:
            try:
                self._deliver_many(info, count)
            except Exception as exc:
                self.report(exc)
            return
        for done in range(count):
            try:
                self.deliver(info)
            except BaseException:
                self.undelivered = count - done - 1
                raise

    def close(self, unconsumed: Iterable[SigInfo] = ()) -> None:
        """Stop deliveries; the last subscription of a signal restores its disposition.

        Args:
            unconsumed: Deliveries this subscription took but nobody acted on (a receiver's
                buffer). With no other live subscription of their signal, they count as
                deliveries nobody took: the signal is raised again if its restored
                disposition is the default action.
        """
        if not self.closed:
            self._hub.unsubscribe(self, unconsumed)  # sets `closed`, in the same change

    def end(self) -> None:
        """The hub ends the subscription (its loop shut down): the owner closes, or it does."""
        try:
            if self._on_end is not None:
                self._on_end()
        finally:
            self.close()  # whatever the owner did (or failed to do)

    def __repr__(self) -> str:
        names = ",".join(sorted(signal_name(s) for s in self.signals))
        return f"<Subscription {names}{' closed' if self.closed else ''}>"


class Members:
    """The live subscriptions of one signal, in the order they came: O(1) to add and remove.

    A tuple per signal, replaced whole at every change, made creating the n-th subscription
    of a signal cost O(n) (10,000 subscriptions: 363 us each to create, against 17 us at
    100). Now the order is a dict, and what others read is derived from it:

    - `snapshot` (the reader, under the hub's lock): a tuple rebuilt on the first read after
      a change, so a burst of changes costs one rebuild, at the next delivery;
    - `loops`, `hooks` and `nochain` (the trampoline, between bytecodes, maybe while another
      thread changes the table under the lock): tuples replaced whole and an int, which only
      change when the set of loops or of subscriptions with an ``in_handler`` changes.
    """

    __slots__ = ("_by_loop", "_loop_counts", "_order", "_snapshot", "hooks", "loops", "nochain")

    def __init__(self) -> None:
        self._order: dict[Subscription, None] = {}
        self._snapshot: tuple[Subscription, ...] | None = ()
        self._by_loop: dict[asyncio.AbstractEventLoop, tuple[Subscription, ...]] | None = {}
        self._loop_counts: dict[asyncio.AbstractEventLoop, int] = {}
        self.loops: tuple[asyncio.AbstractEventLoop, ...] = ()  # the distinct loops
        self.hooks: tuple[Subscription, ...] = ()  # those with an in_handler
        self.nochain = 0  # how many took over the signal's meaning (chain=False)

    def add(self, sub: Subscription) -> None:
        """Append `sub` (the hub's lock held)."""
        self._order[sub] = None
        self._snapshot = self._by_loop = None
        count = self._loop_counts.get(sub.loop, 0)
        self._loop_counts[sub.loop] = count + 1
        if not count:
            self.loops = (*self.loops, sub.loop)
        if not sub.chain:
            self.nochain += 1
        if sub.in_handler is not None:
            self.hooks = (*self.hooks, sub)

    def discard(self, sub: Subscription) -> None:
        """Remove `sub` if it is here (the hub's lock held)."""
        if sub not in self._order:
            return
        del self._order[sub]
        self._snapshot = self._by_loop = None
        count = self._loop_counts[sub.loop] - 1
        if count:
            self._loop_counts[sub.loop] = count
        else:
            del self._loop_counts[sub.loop]
            self.loops = tuple(loop for loop in self.loops if loop is not sub.loop)
        if not sub.chain:
            self.nochain -= 1
        if sub.in_handler is not None:
            self.hooks = tuple(x for x in self.hooks if x is not sub)

    def snapshot(self) -> tuple[Subscription, ...]:
        """The subscriptions, in order (the hub's lock held)."""
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self._snapshot = tuple(self._order)
        return snapshot

    def by_loop(self) -> dict[asyncio.AbstractEventLoop, tuple[Subscription, ...]]:
        """The subscriptions of each loop, in order (the hub's lock held): the reader hands
        each loop one entry per delivery, whatever the number of subscribers (fan-out)."""
        by_loop = self._by_loop
        if by_loop is None:
            if len(self._loop_counts) == 1:
                by_loop = {self.loops[0]: self.snapshot()}
            else:
                lists: dict[asyncio.AbstractEventLoop, list[Subscription]] = {}
                for sub in self._order:
                    lists.setdefault(sub.loop, []).append(sub)
                by_loop = {loop: tuple(subs) for loop, subs in lists.items()}
            self._by_loop = by_loop
        return by_loop

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(self.snapshot())


_NAMES = frozenset(int(s) for s in signal.Signals)


def signal_name(signum: int) -> str:
    """``SIGUSR1`` for 10, ``35`` for a real-time signal without a name."""
    return signal.Signals(signum).name if signum in _NAMES else str(signum)


class Reservation:
    """Signals installed from the main thread without a loop (made by `aiosig.reserve`).

    ``close()`` (or leaving ``with``) releases them.
    """

    def __init__(self, hub: Hub, signals: frozenset[int]) -> None:
        self.signals = signals
        self._hub = hub
        self.closed = False

    def close(self) -> None:
        """Release the signals; idempotent."""
        if not self.closed:
            self._hub.release(self.signals, self)  # sets `closed`, in the same change

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
