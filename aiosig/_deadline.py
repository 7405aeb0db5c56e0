"""The hard deadline: at a fixed moment, report what is stuck and end the process, from a thread.

Theory of operation
-------------------
Rule 1 (a thread, because the main thread may never come back): a shutdown's grace budget must
hold even when the code it waits for does not cooperate: a coroutine in ``time.sleep(3600)``,
a task that swallows CancelledError in a loop, a C call that does not return. Nothing that
runs on the loop or in the main thread can enforce it, so a `Deadline` runs a daemon thread
that sleeps until the deadline (monotonic clock) and then does everything itself: it reports,
and it ends the process. It only needs the GIL, which ``time.sleep``, blocking I/O and most
C calls release, and which a busy pure-Python loop hands over every switch interval (5 ms).

  Known limit: a C call that holds the GIL and never returns stops every Python thread, this
  one included. Only a C-level timer survives that (``faulthandler.dump_traceback_later(t,
  exit=True)``, which exits with status 1); it is left to the application, see Rule 2.

Rule 2 (not ``signal.alarm``, not ``faulthandler.dump_traceback_later``): each is one
process-wide timer that aiosig's own timers, the application or a test runner (pytest's
``faulthandler_timeout``) may already own; an alarm is handled by a Python handler that runs
in the main thread, which is exactly the thread that may be stuck; and faulthandler runs no
Python, so it can neither list asyncio tasks by name nor end the process with the status the
shutdown decided (it calls ``_exit(1)``).

Rule 3 (every signal blocked in the thread): the kernel then never picks it for a
process-directed signal, which would take a delivery from a precise receiver, or wake a thread
that runs no handler. (The same helper as the watchdog's; repeated here rather than imported,
because the watchdog module pulls in the hub and this one must not.)

Rule 4 (report first, within a budget): at the deadline the thread writes every thread's stack
(``sys._current_frames``, with thread names) and every unfinished task of the watched loop,
by name, with its chain of awaits (``cr_await``), to stderr's file descriptor with
``os.write``: no ``sys.stderr`` lock and no logging handler lock, either of which the stuck
main thread may hold. The report and the flushing of ``sys.stdout``/``sys.stderr`` run in a
helper thread that gets `REPORT_BUDGET` seconds: a wedged pipe (a reader that stopped reading)
costs the report, never the exit. ``asyncio.all_tasks`` is not thread-safe: its copy of the
task registry can meet a concurrent change, which raises RuntimeError; it is tried twice.

Rule 5 (then ``_exit``, never an exception): the main thread is stuck, so nothing may depend
on it: no ``SystemExit``, no ``finally`` blocks, no atexit handlers (they would run code
that may be stuck too). The status is the decided one (`ExitStatus`): an exit code goes
through ``os._exit``; death by a signal is had by setting the signal's C-level disposition
to SIG_DFL (``signal.signal`` only works in the main thread, so libc's ``signal()`` is
called, through ``_platform.set_default_action``), unblocking it in this thread only and
sending it to this thread: the kernel acts on it before ``pthread_kill`` returns, whatever
the other threads block. If the process is still alive `SIGNAL_GRACE` seconds later,
``os._exit(128 + n)`` ends it.

Rule 6 (PID 1): the init process of a pid namespace (a container without an init) is immune
to signals whose action is the default, even its own. As PID 1, death by signal n becomes
``os._exit(128 + n)``, the status a shell reports for it; a supervisor cannot tell the two
apart from the exit status alone, and nothing better can be had.

A `Deadline` does not survive ``fork``: the child has no deadline thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn, TextIO

from ._platform import set_default_action, start_with_signals_blocked

__all__ = ("REPORT_BUDGET", "SIGNAL_GRACE", "Deadline", "ExitStatus", "end_process")

REPORT_BUDGET = 0.3
"""Seconds the report and the flushing of stdout/stderr may take before the process ends."""

SIGNAL_GRACE = 0.2
"""Seconds to wait for a signal to end the process before falling back to ``os._exit``."""

# Signals whose default action is to ignore or to stop: "death by" them cannot be had.
_IGNORED = ("SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH", "SIGINFO")
_STOPPING = ("SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU")
_NOT_FATAL = frozenset(getattr(signal, n) for n in _IGNORED + _STOPPING if hasattr(signal, n))
_AWAIT_DEPTH = 200  # an await chain longer than this is a cycle or a pathology


@dataclass(frozen=True)
class ExitStatus:
    """How the process ends: death by a signal (``signum``) or an exit code (``code``).

    Attributes:
        signum: The signal to die of; its default action must terminate the process.
        code: The exit code, 0-255.
    """

    signum: int | None = None
    code: int | None = None

    def __post_init__(self) -> None:
        if (self.signum is None) == (self.code is None):
            raise TypeError("give exactly one of signum (death by a signal) and code")
        if self.signum is not None:
            signum = _integer("signum", self.signum)
            if signum not in signal.valid_signals() or signum in _NOT_FATAL:
                raise ValueError(
                    f"signum must be a signal whose default action ends the process, "
                    f"not {self.signum!r}"
                )
        else:
            code = _integer("code", self.code)
            if not 0 <= code <= 255:
                raise ValueError(f"code must be an exit code from 0 to 255, not {code}")

    @property
    def shell_status(self) -> int:
        """The status a shell shows for this ending (``$?``): ``code``, or 128 + ``signum``."""
        return self.code if self.signum is None else 128 + self.signum  # type: ignore[return-value]

    def describe(self) -> str:
        """Say how the process ends, for a report: "death by SIGTERM" or "exit code 3"."""
        if self.signum is None:
            return f"exit code {self.code}"
        try:
            return f"death by {signal.Signals(self.signum).name}"
        except ValueError:
            return f"death by signal {self.signum}"  # a real-time signal: SIGRTMIN + k


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


class Deadline:
    """A moment after which the process ends, reported and with a decided status, whatever runs.

    Arming starts a daemon thread (every signal blocked) that sleeps until `when` on the
    monotonic clock, then writes what is stuck to stderr (or `file`) and ends the process
    with `status`, without help from the main thread. `bring_forward` moves the deadline
    earlier; `disarm` cancels it.

    Args:
        when: The deadline, in ``time.monotonic()`` seconds (a moment already past fires at
            once; ``math.inf`` waits for `bring_forward`).
        status: How the process ends at the deadline.
        loop: The loop whose tasks the report lists, by name with their stacks; None lists
            threads only.
        file: Where the report goes; None writes to file descriptor 2 directly (Rule 4).
        before_end: Called first when the deadline fires, from the deadline thread: for what
            must happen even with the main thread stuck (killing child processes). It must
            be quick; an exception is reported with the stacks and does not stop the end.

    Raises:
        TypeError: `when` is not a number.
        ValueError: `when` is NaN.
    """

    def __init__(
        self,
        when: float,
        status: ExitStatus,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        file: TextIO | None = None,
        before_end: Callable[[], object] | None = None,
    ) -> None:
        self._when = _moment(when)
        self._before_end = before_end
        self.status = status
        self._loop = loop
        self._file = file
        self._changed = threading.Condition()
        self._disarmed = False
        self._fired = False
        self._thread = threading.Thread(target=self._wait, name="aiosig deadline", daemon=True)
        start_with_signals_blocked(self._thread)

    @property
    def when(self) -> float:
        """The deadline in force, in ``time.monotonic()`` seconds."""
        return self._when

    def bring_forward(self, when: float) -> float:
        """Move the deadline to `when` if that is earlier; a later moment changes nothing.

        Returns:
            The deadline in force afterwards.
        """
        when = _moment(when)
        with self._changed:
            if when < self._when:
                self._when = when
                self._changed.notify_all()
            return self._when

    def disarm(self) -> bool:
        """Cancel the deadline; the thread ends and is joined (idempotent).

        Returns:
            True if the deadline is cancelled; False if it had already fired (the process is
            ending and nothing can stop that).
        """
        with self._changed:
            if self._fired:
                return False
            self._disarmed = True
            self._changed.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()
        return True

    def __repr__(self) -> str:
        state = "disarmed" if self._disarmed else f"in {self._when - time.monotonic():.3f} s"
        return f"<Deadline {state}, then {self.status.describe()}>"

    # ---- the deadline thread (every signal blocked) -----------------------------------------

    def _wait(self) -> None:
        with self._changed:
            while not self._disarmed and (left := self._when - time.monotonic()) > 0:
                self._changed.wait(min(left, threading.TIMEOUT_MAX))
            if self._disarmed:
                return
            self._fired = True
            late = time.monotonic() - self._when
        trouble = self._run_before_end()
        reporter = threading.Thread(
            target=self._report, args=(late, trouble), name="aiosig deadline report", daemon=True
        )
        reporter.start()  # inherits this thread's mask: every signal blocked
        reporter.join(REPORT_BUDGET)
        end_process(self.status)

    def _run_before_end(self) -> str:
        if self._before_end is None:
            return ""
        try:
            self._before_end()
        except Exception:
            return "aiosig: at the deadline, this failed:\n" + traceback.format_exc()
        return ""

    def _report(self, late: float, trouble: str = "") -> None:
        skip = {threading.get_ident(), self._thread.ident}
        head = (
            f"{trouble}aiosig: deadline passed {late:.3f} s ago; the process ends now "
            f"({self.status.describe()}). Still running:\n"
        )
        text = head + "".join(_thread_stacks(skip)) + "".join(_task_stacks(self._loop))
        try:
            if self._file is None:
                _write_fd(2, text)
            else:
                self._file.write(text)
                self._file.flush()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.flush()


def _moment(when: float) -> float:
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TypeError(f"when must be a number of seconds, not {type(when).__name__}")
    if math.isnan(when):
        raise ValueError("when must be a moment on the monotonic clock, not nan")
    return float(when)


# ---- the report ------------------------------------------------------------------------------


def _format_frames(frames: list[FrameType]) -> str:
    summary = traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
    return "".join(summary.format())


def _thread_stacks(skip: set[int | None]) -> Iterator[str]:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident in skip:
            continue
        frames = [f for f, _ in traceback.walk_stack(frame)]
        frames.reverse()
        name = names.get(ident, "(not started by threading)")
        yield f"\nThread {name!r} (ident {ident}), most recent call last:\n"
        yield _format_frames(frames)


def _task_stacks(loop: asyncio.AbstractEventLoop | None) -> Iterator[str]:
    if loop is None:
        return
    try:
        tasks = _all_tasks(loop)
    except RuntimeError as exc:
        yield f"\nThe loop's tasks could not be listed: {exc}\n"
        return
    for task in sorted(tasks, key=lambda t: t.get_name()):
        cancels = task.cancelling()
        note = f", cancellation requested {cancels} time(s)" if cancels else ""
        yield f"\nTask {task.get_name()!r}{note}, outermost await first:\n"
        yield _format_frames(list(_await_chain(task.get_coro())))


def _all_tasks(loop: asyncio.AbstractEventLoop) -> set[asyncio.Task[object]]:
    # The registry is a WeakSet that the loop's thread changes as tasks come and go: a copy
    # taken from here can meet a change and raise RuntimeError (Rule 4). Once more, then give up.
    try:
        return asyncio.all_tasks(loop)
    except RuntimeError:
        return asyncio.all_tasks(loop)


def _await_chain(awaitable: object) -> Iterator[FrameType]:
    """The frames of a coroutine and of what it awaits, down to the innermost (a Future)."""
    for _ in range(_AWAIT_DEPTH):
        if awaitable is None:
            return
        for frame_attr, await_attr in (
            ("cr_frame", "cr_await"),
            ("ag_frame", "ag_await"),
            ("gi_frame", "gi_yieldfrom"),
        ):
            if hasattr(awaitable, frame_attr):
                frame = getattr(awaitable, frame_attr)
                if frame is not None:
                    yield frame
                awaitable = getattr(awaitable, await_attr, None)
                break
        else:
            return  # a Future or another object without frames: the end of the chain


def _write_fd(fd: int, text: str) -> None:
    data = memoryview(text.encode(errors="backslashreplace"))
    while data:
        data = data[os.write(fd, data) :]


# ---- ending the process ----------------------------------------------------------------------


def end_process(status: ExitStatus) -> NoReturn:
    """End the process now, from any thread, with `status` (Rules 5 and 6).

    Nothing else runs: no ``finally`` block, no atexit handler, no buffer is flushed.
    """
    signum = status.signum
    if signum is not None and os.getpid() != 1 and set_default_action(signum):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        signal.pthread_kill(threading.get_ident(), signum)
        time.sleep(SIGNAL_GRACE)  # reached only if the kernel did not act on the signal
    os._exit(status.shell_status)
