"""Precise delivery: blocked signals read from a signalfd registered with the loop (Linux).

Theory of operation
-------------------
A signal that every thread blocks stays pending in the kernel with its full siginfo (sender
pid and uid, si_code, the sigqueue value) and, for real-time signals, one queue entry per
send. A signalfd reads exactly that, in order, from the loop. Consumers (receivers, waits)
say which signals they want and how much room they have; the source reads a signal only while
every consumer of it has room, so a full receiver leaves signals in the kernel's queue
(back-pressure that the kernel's RLIMIT_SIGPENDING bounds) instead of dropping them.

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

One source per loop; deliveries are broadcast to every consumer that wants the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from typing import Protocol

from . import _platform
from ._siginfo import SigInfo

__all__ = ("Consumer", "PreciseSource", "blocked_signals", "precise_source")

_READ_BATCH = 256


class Consumer(Protocol):
    """What a precise source feeds: a receiver or a wait."""

    precise_signals: frozenset[int]

    def room(self) -> int:
        """How many more deliveries it can take now."""
        ...

    def offer(self, info: SigInfo) -> None:
        """Take one delivery (only called while ``room() > 0``)."""
        ...


def blocked_signals() -> frozenset[int]:
    """The signals the calling thread blocks."""
    import signal

    return frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ()))


class PreciseSource:
    """A signalfd on one loop, reading the signals its consumers want while they have room."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fd = -1
        self._mask: frozenset[int] = frozenset()
        self._consumers: list[Consumer] = []

    def add(self, consumer: Consumer) -> None:
        """Start feeding `consumer`."""
        self._consumers.append(consumer)
        self.refresh()

    def remove(self, consumer: Consumer) -> None:
        """Stop feeding `consumer`; the last one closes the signalfd."""
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)
        self.refresh()

    def refresh(self) -> None:
        """Read exactly the signals whose every consumer has room (call when room changes)."""
        wanted: set[int] = set()
        full: set[int] = set()
        for consumer in self._consumers:
            (wanted if consumer.room() > 0 else full).update(consumer.precise_signals)
        mask = frozenset(wanted - full)
        if mask == self._mask:
            return
        if not mask:
            self._close()
            return
        if self._fd < 0:
            flags = _platform.SFD_NONBLOCK | _platform.SFD_CLOEXEC
            self._fd = _platform.signalfd(-1, mask, flags)
            self._loop.add_reader(self._fd, self._on_readable)
        else:
            _platform.signalfd(self._fd, mask, 0)
        self._mask = mask

    def _close(self) -> None:
        self._mask = frozenset()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            if not self._loop.is_closed():
                self._loop.remove_reader(fd)
            os.close(fd)

    def _on_readable(self) -> None:
        rooms = [c.room() for c in self._consumers if c.precise_signals & self._mask]
        limit = min([_READ_BATCH, *rooms])
        if limit <= 0:
            self.refresh()
            return
        for info in _platform.read_signalfd(self._fd, limit):
            for consumer in tuple(self._consumers):
                if info.si_signo in consumer.precise_signals and consumer.room() > 0:
                    consumer.offer(info)
        self.refresh()


_sources: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PreciseSource] = (
    weakref.WeakKeyDictionary()
)


def precise_source(loop: asyncio.AbstractEventLoop) -> PreciseSource | None:
    """The loop's precise source, or None where signalfd is not available."""
    if not _platform.HAVE_SIGNALFD:
        return None
    source = _sources.get(loop)
    if source is None:
        source = _sources[loop] = PreciseSource(loop)
    return source
