"""The watchdog: report when the event loop is blocked, with the stack of the code blocking it.

Theory of operation
-------------------
Rule 1 (only a thread can see a blocked loop): a loop callback cannot run while the loop is
blocked, so the loop only bumps a heartbeat (``call_later`` every threshold/4) and a daemon
thread watches it. When the heartbeat is older than the threshold, the thread sends one
signal to the main thread (``pthread_kill``) per blocked episode.

Rule 2 (the stack comes from the signal handler's frame): CPython runs Python-level signal
handlers in the main thread between bytecodes, with the interrupted frame as argument, even
in the middle of ``time.sleep`` (PEP 475 retries the sleep after the handler). The
``in_handler`` hook of the watchdog's consumer (``_precise.open_consumer``, the door every
subscriber uses) receives that frame and extracts the stack without reading any source
(``lookup_lines=False``): that costs one small object per frame, and the lines are read when
the report is formatted. The report itself is handed to the callback by the subscription's
ordinary delivery, which runs on the loop once the loop is free: nothing is scheduled from
inside the handler. Rejected: ``sys._current_frames()`` from the watchdog thread (a private
API, and the frame it returns may already have moved on while the thread formats it);
``faulthandler.dump_traceback_later`` (it writes to a file descriptor, cannot be fed to a
callback, and owns one process-wide timer).

Rule 3 (SIGURG by default): its default action is to ignore it, so a poke that arrives after
the watchdog closed, or in a process that never installed a handler, does nothing. Go's
runtime preempts goroutines with SIGURG for the same reason. The subscription chains to the
user's own handler (``chain=True``): a program that handles SIGURG for out-of-band data keeps
working, and sees the watchdog's pokes too, as Go programs see the runtime's; choose another
``signum`` if that matters.

Rule 4 (main thread only, signal unblocked): the handler runs in the main thread, so it can
only show what a loop in the main thread is doing; a watchdog for a loop elsewhere is
refused. So is a signal the main thread blocks: a blocked poke runs no handler (it waits in
the kernel until the loop is free to read it), so there would be no stack to report.

Rule 5 (all or nothing): `watchdog` checks everything before it starts anything (the
threshold, the callback, the signal as the hub checks it, the mask), then subscribes, starts
the thread and the heartbeat, undoing what was started if a later step fails: a refused
watchdog leaves no subscription, thread or heartbeat behind.

  Known limit: code blocked in C without returning to the interpreter (a C extension that
  retries EINTR itself) is caught only when it returns, so the stack shows where it went
  next; the report's ``captured_after`` says how late the stack was taken.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from ._closing import AsyncClosing
from ._hub import check_signal
from ._platform import start_with_signals_blocked
from ._precise import always_room, blocked_signals, open_consumer
from ._siginfo import SigInfo
from ._subscription import signal_name

__all__ = ("BlockedLoop", "Watchdog", "watchdog")

_logger = logging.getLogger("aiosig.watchdog")
_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class BlockedLoop:
    """A report of one episode in which the event loop did not run for too long.

    Attributes:
        duration: Seconds the loop went without running callbacks, from its last heartbeat
            to the moment it was free again.
        stack: The main thread's stack when it was interrupted, outermost frame first.
        captured_after: Seconds the loop had been blocked when the stack was taken.
        threshold: The watchdog's threshold, in seconds.
    """

    duration: float
    stack: traceback.StackSummary
    captured_after: float
    threshold: float

    def format(self) -> str:
        """Return the report as readable text: a summary line, then the stack."""
        head = (
            f"event loop blocked for {self.duration:.3f} s (threshold {self.threshold:g} s); "
            f"main thread stack {self.captured_after:.3f} s into the block "
            "(most recent call last):\n"
        )
        return head + "".join(self.stack.format())


def _log_report(report: BlockedLoop) -> None:
    _logger.warning("%s", report.format())


class Watchdog(AsyncClosing):
    """Watches the running loop for blocks longer than a threshold; made by `watchdog`.

    Close it with ``aclose()`` (or ``close()``, or by leaving ``async with``).
    """

    def __init__(
        self,
        threshold: float,
        callback: Callable[[BlockedLoop], object],
        signum: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.threshold = threshold
        self._callback = callback
        self._loop = loop
        self._main_ident = threading.main_thread().ident
        self._beat = time.monotonic()  # written by the loop, read by the thread
        self._poked_beat = -1.0  # the heartbeat of the episode already reported
        self._armed = False  # set by the thread just before a poke; cleared by the handler
        self._captured: tuple[traceback.StackSummary, float, float] | None = None
        self._stop = threading.Event()
        self._beat_handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self.signum = signum  # checked by `watchdog`
        self._consumer = open_consumer(
            frozenset({signum}), self._deliver, always_room, loop, in_handler=self._in_handler
        )
        try:
            self._thread = threading.Thread(
                target=self._watch, name=f"aiosig watchdog ({threshold:g} s)", daemon=True
            )
            start_with_signals_blocked(self._thread)
            self._beat_handle = loop.call_later(threshold / 4, self._heartbeat)
        except BaseException:
            self.close()  # Rule 5: undo what was started
            raise

    # ---- the loop side ---------------------------------------------------------------------

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        self._beat_handle = self._loop.call_later(self.threshold / 4, self._heartbeat)

    def _deliver(self, info: SigInfo) -> None:
        captured, self._captured = self._captured, None
        if captured is None:
            return  # someone else's SIGURG, or a poke that found the loop already free
        stack, beat, captured_after = captured
        report = BlockedLoop(time.monotonic() - beat, stack, captured_after, self.threshold)
        self._callback(report)  # an exception goes to the loop's exception handler

    # ---- the watching thread (every signal blocked) ---------------------------------------

    def _watch(self) -> None:
        # A threshold of centuries is valid, but a lock's wait stops at TIMEOUT_MAX.
        period = min(self.threshold / 4, threading.TIMEOUT_MAX)
        while not self._stop.wait(period):
            beat = self._beat
            if time.monotonic() - beat > self.threshold and beat != self._poked_beat:
                self._poked_beat = beat
                self._armed = True
                assert self._main_ident is not None
                signal.pthread_kill(self._main_ident, self.signum)

    # ---- the main thread, inside the hub's trampoline -------------------------------------

    def _in_handler(self, signum: int, frame: FrameType | None) -> None:
        # Between two bytecodes of whatever the main thread runs: a few attribute writes and
        # one object per frame; no source lines are read and nothing is scheduled here.
        if not self._armed or frame is None:
            return
        self._armed = False
        beat = self._beat
        if beat != self._poked_beat:
            return  # the loop got free between the poke and now: nothing to show
        stack = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
        stack.reverse()
        self._captured = (stack, beat, time.monotonic() - beat)

    # ---- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching (idempotent): the thread ends and the signal's disposition returns."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._beat_handle is not None:
            self._beat_handle.cancel()
        # The thread first: a poke sent after the subscription closed would meet the
        # signal's own disposition (harmless for SIGURG, fatal for a SIG_DFL `signum`).
        thread = self._thread
        if (
            thread is not None
            and thread.ident is not None
            and thread is not threading.current_thread()
        ):
            thread.join(_JOIN_TIMEOUT)
        self._consumer.close()

    def __repr__(self) -> str:
        state = " closed" if self._stop.is_set() else ""
        return f"<Watchdog threshold={self.threshold:g}s{state}>"


def watchdog(
    threshold: float,
    *,
    callback: Callable[[BlockedLoop], object] | None = None,
    signum: int = signal.SIGURG,
) -> Watchdog:
    """Start watching the running loop; report every block longer than `threshold`.

    Each blocked episode is reported once, when the loop is free again, with the stack of the
    code that blocked it (taken by a signal handler while it was blocked). Use it as
    ``async with aiosig.watchdog(0.5): ...`` or close it with ``aclose()``.

    Args:
        threshold: Seconds without a loop iteration that count as blocked.
        callback: Called on the loop with a `BlockedLoop` report. By default the report is
            logged as a warning on the ``aiosig.watchdog`` logger.
        signum: The signal that interrupts the main thread; SIGURG is ignored by default,
            so a stray delivery is harmless (see the module header).

    Returns:
        The running `Watchdog`.

    Raises:
        RuntimeError: No running loop, the loop does not run in the main thread, the main
            thread blocks `signum`, or aiosig cannot take `signum` (SIGCHLD on uvloop, a
            handler installed outside Python).
        TypeError: `threshold` is not a number, or `callback` is not callable.
        ValueError: `threshold` is not positive and finite, or `signum` is a fault signal.
        OSError, ValueError, TypeError, OverflowError: `signum` is one ``signal.signal``
            refuses, with its error (SIGKILL: ``OSError(22, 'Invalid argument')``).
    """
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "the watchdog reads the blocked code's stack from a signal handler, which runs in "
            "the main thread: start it from a loop that runs in the main thread."
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TypeError(f"threshold must be a number, not {type(threshold).__name__}")
    if not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a positive number of seconds, not {threshold!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    signum = check_signal(signum)
    if signum in blocked_signals():
        raise RuntimeError(
            f"{signal_name(signum)} is blocked in the main thread, so the watchdog's poke could "
            "not interrupt the code that blocks the loop: unblock it, or pass another signum."
        )
    return Watchdog(float(threshold), callback or _log_report, signum, loop)
