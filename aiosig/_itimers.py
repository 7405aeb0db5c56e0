"""The process's three kernel interval timers, each shared by a scheduler (``_timers`` is the API).

Theory of operation
-------------------
Rule 1 (one scheduler per kernel timer): a process has one ITIMER_REAL, one ITIMER_VIRTUAL
and one ITIMER_PROF. While any aiosig timer on one of them is pending, a `Scheduler` owns
it: it keeps a heap of deadlines on the clock that kernel timer runs on (monotonic time for
ITIMER_REAL, user CPU time for ITIMER_VIRTUAL, process CPU time for ITIMER_PROF), arms the
kernel timer as a one-shot for the earliest, and on each delivery of the timer's signal
fires every entry that is due, in deadline order, then re-arms. It subscribes on each loop
through ``_precise.open_consumer``, the door every subscriber uses, so a timer signal that
the loop's thread blocks is read from its signalfd (with the kernel's ``si_code``), and with
``chain=False``: the scheduler owns the signal's meaning. Periodic entries go back in the
heap; the kernel timer itself is never periodic, so a blocked loop faces one pending signal,
not a storm. When the last aiosig timer goes and no expiry of the scheduler's own is on its
way (Rule 5), the scheduler gives the kernel timer back.

Rule 2 (the clock decides, the signal only wakes): a delivery can come early or late for the
heap's clock (the kernel samples CPU time at ticks; a SIGALRM sent with kill() is not a
timer at all), so an entry fires only when the clock says it is due (for CPU timers, within
a tolerance of 5 ms; ITIMER_REAL entries never fire before their deadline), and the rest is
re-armed. An interval timer counts its expiries from its clock, so the number of
expiries a slow consumer missed is exact whatever the signals did.

Rule 3 (the user's own timer becomes virtual): when a scheduler takes its kernel timer, the
timer the user had (``setitimer``'s return value) becomes one more entry in the heap, and
``core_alarm``/``core_setitimer``/``core_getitimer`` (aiosig.core's) read and write that entry
instead of the kernel timer. The user's timer thus keeps running, reports the truth, and
expires when it would have; going idle re-arms the kernel timer with what is left of it.
When it expires, the user's disposition acts as it would have: a Python handler is called
(on the loop, with ``frame=None``), SIG_IGN does nothing, and SIG_DFL kills the process with
the signal. The kill is done from the trampoline's ``in_handler`` hook, in the main thread,
so that a process whose loop is wedged still dies on time (the usual reason to arm a
SIG_DFL alarm); the loop path is the fallback.

Rule 4 (loops and threads): entries bind to their loop and fire there (call_soon_threadsafe
across threads). One loop, the lead, processes every delivery once: the main thread's while
its consumer is open, else the first other loop to subscribe whose consumer is. A plain
delivery reaches every loop (the others ignore it); a precise one is read by one loop's
signalfd, which hands it to the lead. Entries of a loop that was closed are dropped at the
next entry point, so a future left pending by a finished ``asyncio.run`` cannot keep the
kernel timer (and the user's virtual timer) hostage. A consumer of another thread's loop is
closed for the hub at once, and for its signalfd source on its own loop (the source's
reader belongs to that loop).

Rule 5 (an expiry of the scheduler's own timer is never the user's): when the last timer
goes, the one-shot may have fired with its delivery still on the way, as a byte in the hub's
pipe or, for a blocked signal, pending in the kernel. Unsubscribed then, the hub would find
a delivery nobody took and, under SIG_DFL, raise it again (``_hub`` Rule 4), or the pending
signal would wait for the user's sigwait. So each ``setitimer`` that replaces the one-shot
(re-arm or disarm: a swap) and finds it fired (the kernel reports 1 µs until it has) counts
one expiry owed. Each plain delivery processed pays one: the kernel signals the main thread,
which takes the signal as its swap returns, so two expiries do not share a byte. A precise
one pays them all: the signalfd read took every pending instance (a standard signal is
pending once), and one fired since is pending again, which ``sigpending`` says. Processing
ends with a swap, so every expiry so far is counted by then: a deficit means deliveries that
were no expiries of ours (kill()), and is dropped. With no timers left and something owed,
the scheduler stays active (the user's timer still virtual) and gives the kernel timer back
once the count is paid, or after three turns of the lead loop, when its readers have read
whatever was in flight: coalesced deliveries can leave the count high (a thread other than
the one the kernel signals re-armed while an expiry was still pending).

  Alternatives rejected: ``loop.call_later`` for alarm futures (no SIGALRM, and no truthful
  ``alarm()`` for the user); POSIX per-process timers (``timer_create``: many timers, but
  ctypes, Linux-flavoured, and ``alarm()``/``getitimer()`` would still be blind to them); a
  periodic kernel timer for periodic entries (it cannot be shared); waiting for the lead's
  turns at every give-back, without the count (the kernel timer would not come back at once
  when the last timer is cancelled or fires, which is the common case).

  Known limits: while a scheduler is active, a signal of its kind sent with kill() only
  wakes it (the user's handler does not see it), and one that arrives while an expiry is
  owed may pay for it, leaving that expiry to the user's disposition; the stdlib's own
  ``signal.setitimer`` (not aiosig.core's) bypasses the scheduler and is overwritten at the
  next re-arm; the user's Python handler runs on the loop, so it cannot interrupt code that
  blocks the loop (that would need the hub to chain single deliveries to the user's
  handler); a user timer that expired just before a scheduler took the kernel timer has its
  signal taken as a wakeup; with the signal blocked, the user's timer still acts as their
  disposition when it expires, rather than staying pending for their sigwait; with the
  signal blocked in some threads only, a precise read can pay for an expiry whose byte a
  thread that does not block it is still writing; an expiry still on its way when its loop
  shuts down cannot be waited for (the hub closes that loop's consumers), so what becomes of
  it is the hub's.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import resource
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from . import _process_hooks
from ._hub import get_hub
from ._loops import in_loop_thread
from ._precise import Consumer, always_room, open_consumer
from ._siginfo import SigInfo

__all__ = ("US", "Entry", "Scheduler", "schedulers")

US = 1_000_000
_MIN_DELAY = 1e-6  # setitimer's resolution; 0 would disarm
_COMPACT_AT = 64  # heap items; below this, dead entries are left for the top to drop

# ---- the clocks the kernel timers run on --------------------------------------------------


def _user_cpu_time() -> float:
    # ITIMER_VIRTUAL counts the process's user CPU time. getrusage has microseconds;
    # os.times() only has clock ticks (10 ms).
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


# ---- the scheduler ------------------------------------------------------------------------

Fire = Callable[[SigInfo, int], object]


class Entry:
    """One pending deadline: an alarm future, an interval timer, or the user's own timer."""

    __slots__ = ("deadline", "expiry", "fire", "interval", "interval_us", "live", "loop", "origin")

    def __init__(
        self,
        deadline: float,
        interval_us: int,
        fire: Fire | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.origin = self.deadline = deadline
        self.interval_us = interval_us
        self.interval = interval_us / US
        self.expiry = 0  # the index of the next expiry: deadline = origin + expiry * interval
        self.fire = fire  # None for the user's timer: its disposition acts instead
        self.loop = loop
        self.live = True

    def advance(self, now: float, tolerance: float) -> int:
        """Account for the expiry that is due (and those overslept); return its index."""
        fired = self.expiry + max(0, int((now + tolerance - self.deadline) // self.interval))
        self.expiry = fired + 1
        self.deadline = self.origin + self.expiry * self.interval
        return fired


class Scheduler:
    """Multiplexes deadlines over one kernel itimer (see the module header)."""

    def __init__(
        self, which: int, signum: int, clock: Callable[[], float], tolerance: float
    ) -> None:
        self.which = which
        self.signum = signum
        self.clock = clock
        self.tolerance = tolerance
        # Reentrant: a user's signal handler may call core_alarm() while the main thread is
        # inside the scheduler (Python handlers run between any two bytecodes).
        self.lock = threading.RLock()
        self.active = False
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = itertools.count()
        self._live = 0  # aiosig entries; the user's timer alone does not keep us active
        self._user: Entry | None = None
        self._subs: dict[asyncio.AbstractEventLoop, Consumer] = {}
        self._main: asyncio.AbstractEventLoop | None = None  # the main thread's loop
        # Rule 5: the expiries of our own one-shot that are on their way to us.
        self._armed = False  # the kernel timer holds a one-shot of ours, not known to have fired
        self._owed = 0  # expiries seen to have fired, less the deliveries processed since
        self._reading: SigInfo | None = None  # the delivery being processed
        self._turns: object | None = None  # the token of the latest wait for the lead's turns

    # ---- entries ---------------------------------------------------------------------------

    def add(self, entry: Entry) -> None:
        """Schedule `entry`, taking the kernel timer if this is the first one."""
        assert entry.loop is not None
        with self.lock:
            self.prune()
            self._subscribe(entry.loop)
            self._push(entry)
            self._live += 1
            if not self.active:
                self._take_kernel_timer()
            self._arm(self.clock())

    def remove(self, entry: Entry) -> None:
        """Unschedule `entry` (idempotent); the last one gives the kernel timer back."""
        with self.lock:
            if entry.live:
                entry.live = False
                self._live -= 1
                if self.active:
                    self._arm(self.clock())

    def prune(self) -> None:
        """Drop the entries of loops that were closed (they can never fire)."""
        with self.lock:
            closed = [loop for loop in self._subs if loop.is_closed()]
            if not closed:
                return
            for _, _, entry in self._heap:
                if entry.live and entry.loop in closed:
                    entry.live = False
                    self._live -= 1
            for loop in closed:
                self._subs.pop(loop).close()
                if loop is self._main:
                    self._main = None
            if self.active:
                self._arm(self.clock())

    def _push(self, entry: Entry) -> None:
        heapq.heappush(self._heap, (entry.deadline, next(self._seq), entry))

    # ---- the kernel timer ------------------------------------------------------------------

    def _subscribe(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop in self._subs:
            return
        # Through the one door: a timer signal the loop's thread blocks is read from its
        # signalfd (with the kernel's si_code), one it does not block from the hub's pipe.
        self._subs[loop] = open_consumer(
            frozenset({self.signum}),
            lambda info: self._on_signal(loop, info),
            always_room,
            loop,
            chain=False,
            in_handler=self._in_handler,
        )
        if threading.current_thread() is threading.main_thread():
            self._main = loop

    def _take_kernel_timer(self) -> None:
        # Swap, never get-then-set: the user's timer cannot expire unseen in between. The
        # subscription is already in place, so an expiry from here on reaches us.
        delay = max(self._heap[0][0] - self.clock(), _MIN_DELAY)
        value, interval = signal.setitimer(self.which, delay)
        self.active = True
        self._armed = True
        if value > 0 or interval > 0:  # (0, interval): a periodic timer expiring right now
            self._set_user(max(round(value * US), 1), round(interval * US))

    def _arm(self, now: float) -> None:
        heap = self._heap
        while heap and not _current(heap[0]):
            heapq.heappop(heap)
        if self._live == 0:
            self._set_kernel_timer(0)
            if not self._expiry_in_flight() or not self._wait_for_turns():
                self._give_back()
                return
            if not heap:
                return  # idle until the expiry arrives (Rule 5)
        if len(heap) > _COMPACT_AT and len(heap) > 2 * (self._live + 1):
            # Cancelled entries wait in the heap until they reach its top: a server that
            # keeps cancelling long alarms would grow it without bound.
            heap[:] = [item for item in heap if _current(item)]
            heapq.heapify(heap)
        self._set_kernel_timer(max(heap[0][0] - now, _MIN_DELAY))

    def _set_kernel_timer(self, delay: float) -> None:
        """Arm our one-shot (0 disarms); count an expiry of the one it replaces (Rule 5)."""
        value, _ = signal.setitimer(self.which, delay)
        if self._armed and value == 0.0:  # until it has fired, the kernel reports 1 µs
            reading = self._reading
            if reading is not None and reading.precise:
                self._owed = self._pending()  # read with the delivery, or pending
            else:
                self._owed += 1  # its delivery is still to come
        self._armed = delay > 0

    def _expiry_in_flight(self) -> bool:
        """True while an expiry of ours may still reach a consumer (Rule 5)."""
        if self._owed > 0 and all(sub.closed for sub in self._subs.values()):
            self._owed = 0  # the hub closed them all (their loops shut down): none can
        return self._owed > 0

    def _wait_for_turns(self) -> bool:
        """Give back after three turns of the lead loop, unless deliveries settle it first.

        A callback queued during a turn runs in the next one, after the loop polled for I/O:
        by the third, the lead's reader has run since the expiry's byte was written (its
        signalfd source too), so a count that coalesced deliveries left high cannot keep
        the scheduler waiting. False if no loop can take the turns.
        """
        lead = self._leader()
        if lead is None:
            return False
        token = self._turns = object()
        try:
            lead.call_soon_threadsafe(self._turn, lead, token, 3)
        except RuntimeError:  # closed meanwhile
            return False
        return True

    def _turn(self, loop: asyncio.AbstractEventLoop, token: object, left: int) -> None:
        if left > 1:
            loop.call_soon(self._turn, loop, token, left - 1)
            return
        with self.lock:
            if self._turns is token and self.active and self._live == 0:
                self._turns, self._owed = None, 0  # what was in flight has been read
                self._arm(self.clock())

    def _give_back(self) -> None:
        # The kernel timer is disarmed and no expiry of ours is in flight (_arm). Inactive
        # first: a delivery that closing a consumer reads is then no wakeup. The user's timer
        # goes back last, so that its expiry cannot reach us.
        self.active = False
        self._owed, self._turns = 0, None
        subs, self._subs, self._main = self._subs, {}, None
        user, self._user = self._user, None
        self._heap.clear()
        for loop, sub in subs.items():
            _close_on(loop, sub)
        if user is not None and user.live:
            value = max(user.deadline - self.clock(), _MIN_DELAY)
            signal.setitimer(self.which, value, user.interval)

    # ---- deliveries ------------------------------------------------------------------------

    def _on_signal(self, loop: asyncio.AbstractEventLoop, info: SigInfo) -> None:
        with self.lock:
            if not self.active or not self._leads(loop, info):
                return
            # Rule 5: a plain delivery is one expiry's byte (or a kill()'s); a precise one
            # took every instance that was pending, and one raised since is pending again.
            self._owed = self._pending() if info.precise else self._owed - 1
            self._reading = info
            try:
                self.prune()
                due = self._pop_due(self.clock())
                user_handler = get_hub().user_handler(self.signum)  # before a release clears it
                if self.active:
                    self._arm(self.clock())
            finally:
                self._reading = None
                # _arm replaced the one-shot, so every expiry so far is counted: a deficit
                # means deliveries that were no expiry of ours (sent with kill()).
                self._owed = max(self._owed, 0)
        _fire_all(due, info, user_handler, self.signum)

    def _leads(self, loop: asyncio.AbstractEventLoop, info: SigInfo) -> bool:
        """Whether `loop` processes `info`: each delivery is processed once, by the lead."""
        lead = self._leader()
        if lead is None or lead is loop:
            return True
        if info.precise:  # this loop's signalfd read it, and no other loop sees it
            try:
                lead.call_soon_threadsafe(self._on_signal, lead, info)
            except RuntimeError:  # closed meanwhile
                return True
        return False  # a plain delivery reaches every loop: the lead processes its own

    def _leader(self) -> asyncio.AbstractEventLoop | None:
        """The main thread's loop while it listens, else the first to subscribe that does."""
        for lead in (self._main, *self._subs):
            if self._listens(lead):
                return lead
        return None

    def _listens(self, loop: asyncio.AbstractEventLoop | None) -> bool:
        sub = self._subs.get(loop) if loop is not None else None
        return sub is not None and not sub.closed

    def _pending(self) -> int:
        return 1 if self.signum in signal.sigpending() else 0

    def _pop_due(self, now: float) -> list[tuple[Entry, int]]:
        due: list[tuple[Entry, int]] = []
        heap = self._heap
        while heap and heap[0][0] <= now + self.tolerance:
            item = heapq.heappop(heap)
            entry = item[2]
            if not _current(item):
                continue
            if entry.interval > 0:
                due.append((entry, entry.advance(now, self.tolerance)))
                self._push(entry)
                continue
            due.append((entry, 0))
            entry.live = False
            if entry is self._user:
                self._user = None
            else:
                self._live -= 1
        return due

    def _in_handler(self, signum: int, frame: FrameType | None) -> None:
        # Main thread, inside the hub's trampoline: reads two attributes and a clock, and
        # acts only when the user's timer is due under SIG_DFL, which ends the process.
        user = self._user
        if user is None or not user.live or self.clock() + self.tolerance < user.deadline:
            return
        if _is_default(get_hub().user_handler(signum)):
            _die_of(signum)

    # ---- the user's virtual timer (lock held, active) -------------------------------------

    def user_timer_us(self) -> tuple[int, int]:
        """The user's timer as the kernel would report it: (value, interval) in µs."""
        user = self._user
        if user is None or not user.live:
            return 0, 0
        # Like the kernel: a timer that is due but not yet delivered reports 1 µs.
        left = math.floor((user.deadline - self.clock()) * US)
        return max(left, 1), user.interval_us

    def set_user_timer_us(self, value_us: int, interval_us: int) -> tuple[int, int]:
        """Replace the user's timer (value 0 disarms it); return the old one."""
        old = self.user_timer_us()
        self._set_user(value_us, interval_us)
        self._arm(self.clock())
        return old

    def _set_user(self, value_us: int, interval_us: int) -> None:
        if self._user is not None:
            self._user.live = False
            self._user = None
        if value_us > 0:
            self._user = Entry(self.clock() + value_us / US, interval_us, None, None)
            self._push(self._user)


def _close_on(loop: asyncio.AbstractEventLoop, consumer: Consumer) -> None:
    """Close `consumer` now for the hub, and for its signalfd source in the loop's thread."""
    if in_loop_thread(loop) or not loop.is_running():
        consumer.close()
        return
    consumer.subscription.close()  # thread-safe: deliveries end now
    try:
        loop.call_soon_threadsafe(consumer.close)  # the source's reader is the loop's own
    except RuntimeError:  # closed meanwhile
        consumer.close()


def _current(item: tuple[float, int, Entry]) -> bool:
    """A heap item is current if its entry is live and has not moved on since (periodic)."""
    return item[2].live and item[2].deadline == item[0]


def _fire_all(
    due: list[tuple[Entry, int]], info: SigInfo, user_handler: object, signum: int
) -> None:
    """Fire in deadline order; one failure does not stop the others (it goes to the loop)."""
    escaped: BaseException | None = None
    for entry, expiry in due:
        try:
            if entry.fire is None:
                _act_as_disposition(user_handler, signum)
            else:
                assert entry.loop is not None
                _call_on(entry.loop, entry.fire, info, expiry)
        except Exception as exc:
            asyncio.get_running_loop().call_exception_handler(
                {"message": "aiosig timer expiry failed", "exception": exc}
            )
        except BaseException as exc:  # SystemExit from a user handler: after the others
            escaped = escaped or exc
    if escaped is not None:
        raise escaped


def _call_on(loop: asyncio.AbstractEventLoop, fn: Fire, info: SigInfo, expiry: int) -> None:
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        fn(info, expiry)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(fn, info, expiry)


def _is_default(handler: object) -> bool:
    return isinstance(handler, int) and handler == signal.SIG_DFL


def _act_as_disposition(handler: object, signum: int) -> None:
    """What the user's disposition would have done with the expiry of their own timer."""
    if callable(handler):
        handler(signum, None)
    elif _is_default(handler):
        _die_of(signum)
    # SIG_IGN does nothing; None (a handler installed outside Python) cannot be called.


def _die_of(signum: int) -> None:
    """Terminate the process by `signum`'s default action (main thread only)."""
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


# ITIMER_REAL runs on CLOCK_MONOTONIC, the clock of time.monotonic(), from a reading taken
# after ours, and setitimer rounds up: its expiry is never early, so nothing fires before its
# deadline. CPU timers are checked at scheduler ticks (1-10 ms) against tick-sampled CPU
# time, which can run ahead of the precise clocks read here: entries due within 5 ms of CPU
# time fire together rather than one extra signal each.
_TOLERANCE_REAL = 0.0
_TOLERANCE_CPU = 5e-3


def _new_schedulers() -> dict[int, Scheduler]:
    return {
        signal.ITIMER_REAL: Scheduler(
            signal.ITIMER_REAL, signal.SIGALRM, time.monotonic, _TOLERANCE_REAL
        ),
        signal.ITIMER_VIRTUAL: Scheduler(
            signal.ITIMER_VIRTUAL, signal.SIGVTALRM, _user_cpu_time, _TOLERANCE_CPU
        ),
        signal.ITIMER_PROF: Scheduler(
            signal.ITIMER_PROF, signal.SIGPROF, time.process_time, _TOLERANCE_CPU
        ),
    }


# Built at import: plain objects, no signal state is touched until a timer is scheduled.
_schedulers = _new_schedulers()


def _after_fork_in_child() -> None:
    # A child does not inherit itimers, and the hub drops the parent's subscriptions.
    global _schedulers
    _schedulers = _new_schedulers()


_process_hooks.after_fork_in_child("itimers", _after_fork_in_child)


def schedulers() -> dict[int, Scheduler]:
    """The schedulers by kernel timer (``ITIMER_*``), this process's own (fork renews them)."""
    return _schedulers
