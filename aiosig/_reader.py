"""The reader: turns the bytes of the hub's pipe into deliveries (``_hub``, Rules 2 and 3).

One byte of a signal is one plain delivery for every live subscription of that signal. While
the hub is *suspicious* (the trampoline saw the wakeup fd taken, or the pipe is half full),
the trampoline follows its delivery's byte with a marker (0x80 | signum); a marker with no
byte of its signal since the previous marker means that delivery's byte went elsewhere, and
one delivery is recovered.

Orphans are counted here, and only here: a byte no live subscription takes, and a delivery a
subscription reports unconsumed when it closes with no other live subscription of its signal
left (``orphan``). The hub asks for the count when it releases the signal (``take_orphans``)
and raises the signal again if the disposition it restored is the default action.

The trampoline calls `theft` and `mark` between bytecodes: they only set plain attributes,
list items and ``list.append``. Everything else is the reader's, under the hub's lock; the
hub only calls methods. Deliveries are sorted by loop here and run by the caller outside the
lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

from ._siginfo import PLAIN, SigInfo
from ._subscription import Members, Subscription
from ._wakeup import Chains, SelfPipe

__all__ = (
    "MARKERS",
    "READ_MAX",
    "Batch",
    "Batches",
    "Reader",
    "deliver_batches",
    "run_batch",
    "send_batches",
)

_NSIG = signal.NSIG
MARKERS = [bytes([0x80 | s]) for s in range(_NSIG)]
_NOT_SIGNALS = bytes([0, *range(0x80, 0x100)])  # wakeups and markers: never forwarded
READ_MAX = 65536  # per wakeup: consumers run between reads of a burst (SelfPipe.drain)

# Per loop, in order: (its subscriptions of the signal, delivery, how many times in a row).
Batch = list[tuple[tuple[Subscription, ...], SigInfo, int]]
Batches = dict[asyncio.AbstractEventLoop, Batch]


class Reader:
    """The read side of the hub: the pipe's bytes in, deliveries sorted by loop out."""

    def __init__(
        self,
        subs: list[Members],
        chains: Chains,
        stats: dict[str, int],
        silent: Callable[[], bytes],
    ) -> None:
        self._subs = subs  # the hub's own table, updated in place
        self._chains = chains
        self._silent = silent
        self._unforwarded = (b"", _NOT_SIGNALS)  # (silent, what translate deletes)
        self._stats = stats
        self.carry = b""  # bytes a raising chained handler kept from being dispatched
        # Written by the trampoline too (plain attributes, list items, list.append).
        self.suspect = False
        self.thieves: list[int] = []
        self.unmarked = [0] * _NSIG
        self.unmarked_pending = False
        # The reader's own.
        self._orphans = [0] * _NSIG  # deliveries nobody took since the signal's install
        self.seen = [0] * _NSIG  # bytes of each signal since its last marker
        self._unmarked_done = [0] * _NSIG

    def theft(self, fd: int) -> None:
        """The trampoline found `fd` holding the wakeup fd: chain to it, and mark from now on."""
        self.thieves.append(fd)  # list.append is atomic: safe between any two bytecodes
        self.suspect = True

    def mark(self, pipe: SelfPipe, signum: int) -> None:
        """The trampoline, while suspicious: follow this delivery's byte with a marker."""
        try:
            os.write(pipe.w, MARKERS[signum])
        except OSError:  # full: the byte before it most likely did not fit either
            self.unmarked[signum] += 1
            self.unmarked_pending = True
            pipe.wake()

    def reset(self) -> None:
        """Forget suspicion (the hub let go of the fd)."""
        self.suspect = False
        self.seen = [0] * _NSIG

    def orphan(self, signum: int, count: int = 1) -> None:
        """Count deliveries of `signum` that nobody took (the hub's lock held)."""
        self._orphans[signum] += count

    def take_orphans(self, signum: int) -> int:
        """How many deliveries of `signum` nobody took since the last call; reset it."""
        count, self._orphans[signum] = self._orphans[signum], 0
        return count

    def read(self, pipe: SelfPipe) -> Batches:
        """Read one chunk (the hub's lock held) and sort its deliveries by loop."""
        if self.thieves:
            self.adopt_thieves()
        # Markers written from here on belong to a later read, which judges them (_hub, Rule 3).
        self.suspect = False
        carry = self.carry
        fresh = pipe.drain(READ_MAX)
        if self._chains.listening:
            forwarded = fresh.translate(None, self._not_forwarded())
            if forwarded:
                self._chains.forward(forwarded)
        if carry:
            self.carry = b""
            data = carry + fresh
        else:
            data = fresh
        try:
            batches = self._sort(data)
        except BaseException:
            # A chained handler (Ctrl-C) raised between two bytecodes here: nothing of this
            # read was delivered yet, so all of it waits for the next one.
            self.carry = data + self.carry
            pipe.wake()
            raise
        # Half full: bytes may soon be dropped; markers will tell which. A thief seen since
        # the adoption above keeps the trampolines marking too.
        size = len(fresh)
        if size == READ_MAX:
            size += pipe.backlog()
        if size >= pipe.capacity // 2 or self.thieves:
            self.suspect = True
        if not self.suspect:
            # Markers only compare bytes within a suspicious stretch: a byte read before it
            # must not hide the loss of a later delivery.
            self.seen = [0] * _NSIG
        return batches

    def _not_forwarded(self) -> bytes:
        """Wakeups, markers, and the bytes of signals no previous owner would hear of."""
        silent = self._silent()
        if silent is not self._unforwarded[0]:
            self._unforwarded = (silent, _NOT_SIGNALS + silent)
        return self._unforwarded[1]

    def read_all(self, pipe: SelfPipe) -> None:
        """Read the pipe empty and hand every delivery to its loop (the hub's lock held)."""
        for _ in range(pipe.capacity // READ_MAX + 2):  # bounded even under a flood
            before = pipe.backlog() or len(self.carry)
            send_batches(self.read(pipe))
            if not before:
                break

    def _sort(self, data: bytes) -> Batches:
        """One delivery per signal byte, plus what markers say went elsewhere, by loop."""
        batches: Batches = {}
        seen, orphans = self.seen, self._orphans
        first = data[0] if data else 0
        if 0 < first < 0x80 and data.count(first) == len(data):
            # One signal only (a flood, or a single delivery): one entry per subscription
            # for the whole run, counted in C, instead of a pass per byte (Rule 2 of _hub).
            seen[first] += len(data)
            if not self._add(first, batches, len(data)):
                orphans[first] += len(data)
            data = b""
        for byte in data:
            if byte >= 0x80:
                self._on_marker(byte & 0x7F, batches)
            elif byte:  # 0 is a wakeup
                seen[byte] += 1
                if not self._add(byte, batches):
                    orphans[byte] += 1  # nobody received it: see _hub, Rule 4
        if self.unmarked_pending:
            self.unmarked_pending = False
            for signum in range(1, _NSIG):
                lost = self.unmarked[signum] - self._unmarked_done[signum]
                if lost > 0:
                    self._unmarked_done[signum] += lost
                    self._on_marker(signum, batches)
        return batches

    def _add(self, signum: int, batches: Batches, count: int = 1) -> int:
        """Queue `count` plain deliveries of `signum` for each live subscription; how many
        subscriptions."""
        n = 0
        info = PLAIN[signum]
        for loop, subs in self._subs[signum].by_loop().items():
            if not loop.is_closed():
                batches.setdefault(loop, []).append((subs, info, count))
                n += len(subs)
        self._stats["dispatched"] += n * count
        return n

    def _on_marker(self, signum: int, batches: Batches) -> None:
        """A trampoline ran: if no byte of its signal came since the last marker, recover."""
        if not 0 < signum < _NSIG:
            return
        seen, self.seen[signum] = self.seen[signum], 0
        if not seen:
            self._stats["recovered"] += 1
            if not self._add(signum, batches):
                self._orphans[signum] += 1

    def adopt_thieves(self) -> None:
        """Chain to the owners the trampoline found holding the wakeup fd."""
        thieves, self.thieves = self.thieves, []
        for thief in thieves:
            self._chains.push(thief)


def deliver_batches(batches: Batches, here: asyncio.AbstractEventLoop) -> None:
    """Hand the other loops their deliveries first, then run this loop's.

    In that order because this loop's subscriptions run user code, which may raise
    KeyboardInterrupt or SystemExit out of the batch: the other loops must have theirs by then.
    """
    mine = batches.pop(here, None)
    if batches:
        send_batches(batches)
    if mine:
        run_batch(mine)


def run_batch(batch: Batch) -> None:
    """Deliver in order, on the calling loop; what an escaping exception interrupts follows."""
    for i, (subs, info, count) in enumerate(batch):
        sub = subs[0]
        try:
            # An Exception goes to the loop's handler inside deliver; SystemExit and Ctrl-C
            # pass. One loop per kind, so that a subscriber costs one call (fan-out).
            if count == 1:
                for sub in subs:  # Subscription.deliver, inlined: a call less per subscriber
                    if not sub.closed:
                        try:
                            sub.callback(info)
                        except Exception as exc:
                            sub.report(exc)
            else:
                for sub in subs:
                    sub.deliver_many(info, count)
        except BaseException:
            rest: Batch = []
            left = sub.undelivered if count > 1 else 0
            if left:
                rest.append(((sub,), info, left))
            after = subs[subs.index(sub) + 1 :]
            if after:
                rest.append((after, info, count))
            rest += batch[i + 1 :]
            if rest:  # the rest still reaches its subscriptions, later
                with contextlib.suppress(RuntimeError):
                    sub.loop.call_soon(run_batch, rest)
            raise


def send_batches(batches: Batches) -> None:
    """Hand each loop its deliveries (thread-safe)."""
    for loop, batch in batches.items():
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            loop.call_soon_threadsafe(run_batch, batch)
