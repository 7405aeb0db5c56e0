"""Precise delivery: blocked signals read from a signalfd registered with the loop (Linux).

Theory of operation
-------------------
A signal that every thread blocks stays pending in the kernel with its full siginfo (sender
pid and uid, si_code, the sigqueue value) and, for real-time signals, one queue entry per
send. A signalfd reads exactly that, in order, from the loop. Consumers (receivers, waits,
handlers) say which signals they want and how much room they have; the source reads a signal
only while every consumer of it has room, so a full receiver leaves signals in the kernel's
queue (back-pressure that the kernel's RLIMIT_SIGPENDING bounds) instead of dropping them.

Why this is safe although trio rejected signalfd: its objection is that signalfd only sees
signals that are blocked, and a blocked mask is inherited by every thread started afterwards
and by every child through fork and exec, where it silently breaks programs that expect
SIGTERM or SIGINT to work. aiosig answers each part instead of avoiding the tool:

- it never blocks anything on its own: precise delivery is opt-in, for signals the user
  blocked (with `aiosig.block` or ``pthread_sigmask``), the stdlib contract for sigwaitinfo;
- a thread that does not block the signal may still get it: the hub's trampoline stays
  installed for every signal a precise consumer wants, so such a stray delivery arrives
  through the plain path (marked ``precise=False``) rather than being lost or killing the
  process, and `threads_not_blocking` names the threads that do not block;
- children: `aiosig.popen` and `aiosig.create_subprocess_exec`/`_shell` start children with an
  empty mask, and the docs say loudly that plain ``subprocess`` and ``multiprocessing`` do not.
  (uvloop's children get an empty mask from libuv anyway.)

Rule 1 (one door for every subscriber): `open_consumer` is how receivers, waits, handlers,
the timers' schedulers and the watchdog subscribe. It makes the hub subscription (plain
deliveries, and stray ones from threads that do not block) and registers the blocked subset
with the loop's source, so that every subscriber sees every delivery whichever path it took.
The blocked subset is decided when the consumer opens: a signal blocked later is read by
nobody (block first, then subscribe). The loop's signalfd is opened before the hub
subscription is made, so that running out of file descriptors fails before the hub took
anything (the hub's pipe, once it was the wakeup fd, is never closed again); if anything
fails after the hub subscription was made, it is closed again before the error propagates.

Rule 2 (one source per loop, and only while it has consumers): the source holds its loop
weakly and exists only while some consumer of that loop wants a blocked signal. It has one
signalfd for its whole life (with an empty mask while every consumer is full), closed when
the last consumer goes, when the loop shuts down its async generators (``asyncio.run``,
``Runner.close``), and, for a loop closed without that, at the next use of this module.
Precise delivery is per loop: two loops wanting the same blocked signal each have a
signalfd, and each delivery is read by one of them (a documented limit).

Rule 3 (what was read is delivered): a read takes deliveries out of the kernel's queue for
good. A handler that raises KeyboardInterrupt or SystemExit stops the read's loop of offers;
what it had not offered yet (to the other consumers of that delivery, and the deliveries
after it) is carried and offered first at the next read, in order, as the hub's reader
carries a batch (``_reader.run_batch``).

Rule 4 (constant cost per consumer): opening or closing one consumer recomputes the mask
for its own signals only, from a count of the consumers that want each signal and the set
of consumers found full (recomputing over every consumer made the n-th receiver of a loop
cost O(n): 1.6 ms each at 10,000). Which consumers are full is exact after each read (a
read checks every room before it reads) and after a consumer says its room grew
(`Consumer.refresh`); in between the mask may include a signal whose consumer just filled
up, which the next readable event then finds (no room: nothing is read, and the mask is
recomputed).

This module sits above the hub (it subscribes through it); the hub never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import weakref
from collections.abc import Callable, Iterable

from . import _platform
from ._hub import Subscription, get_hub
from ._loops import LoopWatch, start_sentinel
from ._siginfo import SigInfo
from ._subscription import FrameHook

__all__ = (
    "Consumer",
    "PreciseSource",
    "always_room",
    "blocked_signals",
    "open_consumer",
    "precise_source",
)

_READ_BATCH = 256
_ABSENT = object()

Offer = Callable[[SigInfo], object]
Room = Callable[[], int]


def always_room() -> int:
    """The `room` of a consumer that takes every delivery at once (a handler, a timer
    scheduler, the watchdog): it never holds the precise source back."""
    return sys.maxsize


def blocked_signals() -> frozenset[int]:
    """The signals the calling thread blocks."""
    return frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ()))


class Consumer:
    """One subscriber fed by both sources: the hub (plain) and the loop's signalfd (precise).

    Made by `open_consumer`. ``offer(info)`` takes one delivery; the precise source calls it
    only while ``room() > 0``, the hub on every plain delivery.

    Attributes:
        signals: The signals it wants.
        precise_signals: The subset read from the loop's signalfd (blocked when it opened).
        subscription: The hub subscription.
    """

    def __init__(
        self,
        signals: frozenset[int],
        precise_signals: frozenset[int],
        offer: Offer,
        room: Room,
        subscription: Subscription,
    ) -> None:
        self.signals = signals
        self.precise_signals = precise_signals
        self.subscription = subscription
        self._offer = offer
        self._room = room
        self._source: PreciseSource | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once closed (by `close`, or by the hub when the loop shut down)."""
        return self._closed or self.subscription.closed

    def room(self) -> int:
        """How many more precise deliveries it can take now."""
        return 0 if self.closed else self._room()

    def offer(self, info: SigInfo) -> None:
        """Take one delivery."""
        self._offer(info)

    def refresh(self) -> None:
        """Tell the precise source that `room` grew (a full receiver was read from)."""
        if self._source is not None and not self._closed:
            self._source.update(self)

    def read_pending(self) -> None:
        """Read what the loop's signalfd has now, for every consumer (does not block)."""
        if self._source is not None and not self._closed:
            self._source.read()

    def close(self, unconsumed: Iterable[SigInfo] = ()) -> None:
        """Stop both sources; idempotent.

        Args:
            unconsumed: Deliveries taken but not acted on, for the hub to raise again if
                nobody else saw them (see `Subscription.close`).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._source is not None:
                self._source.remove(self)
        finally:
            self.subscription.close(unconsumed)


def open_consumer(
    signals: frozenset[int],
    offer: Offer,
    room: Room,
    loop: asyncio.AbstractEventLoop,
    *,
    chain: bool = True,
    on_end: Callable[[], object] | None = None,
    in_handler: FrameHook | None = None,
    offer_many: Callable[[SigInfo, int], object] | None = None,
) -> Consumer:
    """Subscribe `offer` to every delivery of `signals` on `loop`, plain and precise (Rule 1).

    Call it in the loop's thread: the signals that thread blocks are read precisely.

    Args:
        signals: Validated signal numbers.
        offer: Takes one delivery; may raise (the loop's exception handler gets it).
        room: How many more precise deliveries `offer` can take now.
        loop: The running loop.
        chain: As for `Hub.subscribe`: False to stop calling the handler that was
            installed before aiosig while this consumer lives.
        on_end: As for `Hub.subscribe`: called when the loop shuts down, so that the owner
            closes (a receiver raises what it buffered again); by default the consumer closes.
        in_handler: As for `Hub.subscribe`: called inside the trampoline, in the main
            thread, with the interrupted frame. Plain deliveries only: a signal read from
            the signalfd runs no handler.
        offer_many: Takes `count` plain deliveries of one signal in a row at once (see
            `Hub.subscribe`'s ``deliver_many``).

    Returns:
        The consumer; ``close()`` ends both subscriptions.

    Raises:
        Whatever `Hub.subscribe` or ``signalfd`` raises; nothing stays subscribed then.
    """
    precise = signals & blocked_signals() if _platform.HAVE_SIGNALFD else frozenset()
    source = precise_source(loop) if precise else None
    try:
        subscription = get_hub().subscribe(
            signals,
            offer,
            loop=loop,
            chain=chain,
            in_handler=in_handler,
            on_end=on_end,
            deliver_many=offer_many,
        )
    except BaseException:
        if source is not None:
            source.retire_if_unused()
        raise
    try:
        consumer = Consumer(signals, precise, offer, room, subscription)
        if source is not None:
            consumer._source = source
            source.add(consumer)
    except BaseException:
        subscription.close()
        raise
    return consumer


class PreciseSource:
    """A signalfd on one loop, reading the signals its consumers want while they have room."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        # Rule 4: a dict (O(1) to remove), how many want each signal, and who was full.
        self._consumers: dict[Consumer, None] = {}
        self._wanters = [0] * signal.NSIG
        self._full: set[Consumer] = set()
        self._mask: frozenset[int] = frozenset()
        self._retired = False
        # Read but not yet offered to everyone: see `_offer_all`.
        self._carry: tuple[list[SigInfo], tuple[Consumer, ...]] | None = None
        # One signalfd for the source's life (an empty mask while every consumer is full):
        # the finalizer closes it exactly once, at retirement or when the source is collected.
        self._fd = _platform.signalfd(-1, (), _platform.SFD_NONBLOCK | _platform.SFD_CLOEXEC)
        self._close_fd = weakref.finalize(self, os.close, self._fd)
        # Not at exit: finalizers run before aiosig's atexit hook, which may still read it
        # (``_hub.Hub._at_exit``), and the process closes it anyway.
        self._close_fd.atexit = False
        try:
            loop.add_reader(self._fd, self._on_readable)
        except BaseException:
            self._close_fd()
            raise
        # Rule 2: the loop's shutdown_asyncgens retires the source. The sentinel refers to the
        # source weakly, so that it does not keep it (and through the reader, the loop) alive.
        self._watch = LoopWatch()
        self._sentinel = start_sentinel(
            loop, self._watch, functools.partial(_retire, weakref.ref(self))
        )

    def add(self, consumer: Consumer) -> None:
        """Start feeding `consumer`."""
        self._consumers[consumer] = None
        for signum in consumer.precise_signals:
            self._wanters[signum] += 1
        try:
            self.update(consumer)
        except BaseException:
            self.remove(consumer)
            raise

    def retire_if_unused(self) -> None:
        """Retire the source if no consumer uses it (the one it was made for failed)."""
        if not self._consumers:
            self.retire()

    def remove(self, consumer: Consumer) -> None:
        """Stop feeding `consumer`; the last one retires the source."""
        if self._consumers.pop(consumer, _ABSENT) is _ABSENT:
            return
        for signum in consumer.precise_signals:
            self._wanters[signum] -= 1
        self._full.discard(consumer)
        if self._consumers:
            self._apply(consumer.precise_signals)
        else:
            self.retire()

    def update(self, consumer: Consumer) -> None:
        """`consumer`'s room changed: recompute the mask for its signals only (Rule 4)."""
        if consumer.room() > 0:
            if consumer not in self._full and consumer.precise_signals <= self._mask:
                return  # read already, and it blocks nothing: nothing can change
            self._full.discard(consumer)
        else:
            self._full.add(consumer)
        self._apply(consumer.precise_signals)

    def _apply(self, signums: frozenset[int]) -> None:
        """Read each of `signums` if someone wants it and no consumer of it is full."""
        if self._retired:
            return
        loop = self._loop()
        if loop is None or loop.is_closed():
            self.retire()
            return
        held_back: set[int] = set()
        for full in self._full:
            held_back |= full.precise_signals
        mask = set(self._mask)
        for signum in signums:
            if self._wanters[signum] > 0 and signum not in held_back:
                mask.add(signum)
            else:
                mask.discard(signum)
        self._set_mask(frozenset(mask))

    def refresh(self) -> None:
        """Read exactly the signals whose every consumer has room (call when room changes)."""
        if self._retired:
            return
        loop = self._loop()
        if loop is None or loop.is_closed():
            self.retire()
            return
        wanted: set[int] = set()
        full: set[int] = set()
        self._full = {c for c in self._consumers if c.room() <= 0}
        for consumer in self._consumers:
            (full if consumer in self._full else wanted).update(consumer.precise_signals)
        self._set_mask(frozenset(wanted - full))

    def _set_mask(self, mask: frozenset[int]) -> None:
        if mask != self._mask:
            _platform.signalfd(self._fd, mask, 0)
            self._mask = mask

    def read(self) -> None:
        """Read what is pending now and offer it to every consumer that wants it."""
        self._on_readable()

    def retire(self) -> None:
        """Close the signalfd for good and forget the consumers; idempotent."""
        if self._retired:
            return
        self._retired = True
        self._consumers.clear()
        self._full.clear()
        self._mask = frozenset()
        loop = self._loop()
        if loop is not None:
            if _sources.get(loop) is self:
                del _sources[loop]
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.remove_reader(self._fd)
        self._close_fd()
        self._watch.active = False
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:  # finish it now rather than leave it to a loop task
            with contextlib.suppress(StopIteration, RuntimeError):
                sentinel.aclose().send(None)

    def _on_readable(self) -> None:
        if self._retired:
            return
        carried, self._carry = self._carry, None
        if carried is not None:
            self._offer_all(*carried)
        rooms = [c.room() for c in self._consumers if c.precise_signals & self._mask]
        limit = min([_READ_BATCH, *rooms])
        if limit <= 0:
            self.refresh()
            return
        # No refresh after the read: a consumer it filled up (a wait that completed) usually
        # has room again before the next delivery (the next wait), and shrinking the mask now
        # would cost two signalfd calls per wait. If a delivery comes first, it finds no room
        # above, and the mask is recomputed then.
        self._offer_all(_platform.read_signalfd(self._fd, limit), None)

    def _offer_all(self, infos: list[SigInfo], first: tuple[Consumer, ...] | None) -> None:
        """Offer each of `infos` to every consumer that wants it and has room.

        `first`: the consumers still owed ``infos[0]`` (None: all of them). What was read is
        out of the kernel's queue: if an offer raises KeyboardInterrupt or SystemExit (a
        handler's), the rest is carried to the next read, which delivers it before reading
        more (so order holds), and the exception goes on.
        """
        for n, info in enumerate(infos):
            targets = tuple(self._consumers) if first is None or n else first
            for k, consumer in enumerate(targets):
                if info.si_signo in consumer.precise_signals and consumer.room() > 0:
                    try:
                        self._offer(consumer, info)
                    except BaseException:
                        self._carry = (infos[n:], targets[k + 1 :])
                        loop = self._loop()
                        if loop is not None and not loop.is_closed():
                            loop.call_soon(self._on_readable)
                        raise

    def _offer(self, consumer: Consumer, info: SigInfo) -> None:
        try:
            consumer.offer(info)
        except Exception as exc:  # a handler's own error: the others still get the delivery
            loop = self._loop()
            if loop is not None:
                loop.call_exception_handler(
                    {"message": "aiosig precise delivery callback failed", "exception": exc}
                )


def _retire(ref: weakref.ref[PreciseSource]) -> None:
    source = ref()
    if source is not None:
        source.retire()


_sources: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PreciseSource] = (
    weakref.WeakKeyDictionary()
)


def precise_source(loop: asyncio.AbstractEventLoop) -> PreciseSource:
    """The running loop's precise source, made on first use (Linux only).

    Sources of loops that were closed without shutting down their async generators are
    retired here.

    Raises:
        NotImplementedError: signalfd is not available.
        OSError: From ``signalfd`` (EMFILE).
    """
    for other in [other for other in _sources if other.is_closed()]:
        _sources[other].retire()
    source = _sources.get(loop)
    if source is None:
        source = _sources[loop] = PreciseSource(loop)
    return source
