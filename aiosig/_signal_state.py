"""The process-wide signal state a test must leave as it found it (``aiosig.testing``).

Theory of operation
-------------------
Four things are process-wide and outlive a test: the disposition of every signal, the wakeup
fd, the main thread's signal mask and the interval timers. `SignalState.capture` records
them, `SignalState.changes` names what differs, one line each, and `SignalState.restore` puts
a capture back so that one leaking test does not poison the rest of a session.

Rule 1 (read without a getter): the wakeup fd has none: ``set_wakeup_fd(-1)`` returns it and a
second call puts it back. That resets ``warn_on_full_buffer`` to its default (it cannot be
read back), which is acceptable in tests, and it must only ever run in the main thread,
between loop runs: a delivery in between would write its byte nowhere.

Rule 2 (timers compare by what they mean): a timer's remaining time shrinks while the test
runs, so timers are compared by whether they are armed and by their interval. A restored
timer that was armed gets the value it had at the capture.

Rule 3 (restore in an order that kills nobody): timers first, so that no SIGALRM of the
test's arrives once SIG_DFL is back; then the mask, then the dispositions, then the fd.

Everything here only reads and writes the OS through the stdlib ``signal`` module, so it sees
what the kernel sees (aiosig's trampoline, not the handler ``aiosig.core.getsignal`` reports).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = ("SignalState", "WakeupFd", "read_wakeup_fd", "signal_name")

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
_ITIMERS = {
    signal.ITIMER_REAL: "ITIMER_REAL",
    signal.ITIMER_VIRTUAL: "ITIMER_VIRTUAL",
    signal.ITIMER_PROF: "ITIMER_PROF",
}


@dataclass(frozen=True)
class WakeupFd:
    """The wakeup fd's number and the file it names ((st_dev, st_ino); None if closed)."""

    fd: int
    file: tuple[int, int] | None

    def __str__(self) -> str:
        if self.fd == -1:
            return "-1 (none)"
        if self.file is None:
            return f"{self.fd} (closed)"
        return f"{self.fd} (file {self.file[0]}:{self.file[1]})"


@dataclass(frozen=True, eq=False)
class SignalState:
    """The process-wide signal state: what a test must leave as it found it.

    Attributes:
        dispositions: ``signal.getsignal`` of every signal that can have one, by number.
        wakeup_fd: The wakeup fd and the file it names.
        mask: The signals the capturing thread (the main thread, normally) blocks.
        itimers: ``signal.getitimer`` of each interval timer: (value, interval) in seconds.

    Two states are equal when `changes` finds no difference between them (Rule 2).
    """

    dispositions: dict[int, Handler]
    wakeup_fd: WakeupFd
    mask: frozenset[int]
    itimers: dict[int, tuple[float, float]]

    @classmethod
    def capture(cls) -> SignalState:
        """Record the current state. Main thread only, between loop runs (Rule 1)."""
        return cls(
            dispositions=read_dispositions(),
            wakeup_fd=read_wakeup_fd(),
            mask=frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
            itimers={which: signal.getitimer(which) for which in _ITIMERS},
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SignalState):
            return NotImplemented
        return not self.changes(other)

    __hash__ = None  # type: ignore[assignment]  # mutable fields: as the dataclass would

    def changes(self, later: SignalState) -> list[str]:
        """Describe every difference from this state to `later`, one line each; [] if none."""
        lines = []
        for signum in sorted(self.dispositions.keys() | later.dispositions.keys()):
            old = self.dispositions.get(signum)
            new = later.dispositions.get(signum)
            if old != new:
                lines.append(
                    f"{signal_name(signum)} disposition: before={_describe(old)}, "
                    f"after={_describe(new)}"
                )
        if self.wakeup_fd != later.wakeup_fd:
            lines.append(f"wakeup fd: before={self.wakeup_fd}, after={later.wakeup_fd}")
        if self.mask != later.mask:
            added = ", ".join(signal_name(s) for s in sorted(later.mask - self.mask))
            removed = ", ".join(signal_name(s) for s in sorted(self.mask - later.mask))
            lines.append(
                f"signal mask: blocked since: [{added}], unblocked since: [{removed}] "
                f"(before={_mask_names(self.mask)}, after={_mask_names(later.mask)})"
            )
        for which, name in _ITIMERS.items():
            old_timer, new_timer = self.itimers.get(which), later.itimers.get(which)
            if _meaning(old_timer) != _meaning(new_timer):
                lines.append(
                    f"{name}: before={_describe_timer(old_timer)}, "
                    f"after={_describe_timer(new_timer)}"
                )
        return lines

    def restore(self) -> list[str]:
        """Put this state back (Rule 3); return what could not be restored, one line each."""
        problems = []
        current = {which: signal.getitimer(which) for which in _ITIMERS}
        for which, timer in self.itimers.items():
            if _meaning(current.get(which)) != _meaning(timer):
                signal.setitimer(which, *timer)
        # A signal the test left pending would be delivered by the unblocking below, with
        # whatever disposition is there now (the default action may end the session):
        # setting SIG_IGN discards it; the disposition is put back with the others below.
        unblocking = set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) - set(self.mask)
        for signum in sorted(unblocking & set(signal.sigpending())):
            with contextlib.suppress(OSError, ValueError, TypeError):
                previous = signal.signal(signum, signal.SIG_IGN)
                signal.signal(signum, previous)
                problems.append(f"{signal_name(signum)}: left pending; discarded")
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        dispositions = read_dispositions()
        for signum, handler in self.dispositions.items():
            if dispositions.get(signum) == handler:
                continue
            if handler is None:
                problems.append(
                    f"{signal_name(signum)}: the handler installed outside Python is lost"
                )
                continue
            try:
                signal.signal(signum, handler)
            except (OSError, ValueError, TypeError) as exc:
                problems.append(f"{signal_name(signum)}: {exc}")
        problems.extend(_restore_wakeup_fd(self.wakeup_fd))
        return problems


def signal_name(signum: int) -> str:
    """``SIGUSR1`` for a named signal, ``SIGRTMIN+3`` for a real-time one, else the number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        if signal.SIGRTMIN <= signum <= signal.SIGRTMAX:
            return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
        return str(signum)


def _file_of(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def read_wakeup_fd() -> WakeupFd:
    """Return the current wakeup fd, leaving it installed (main thread only; Rule 1)."""
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        try:
            signal.set_wakeup_fd(fd)
        except (OSError, ValueError):
            # The fd was closed (or made blocking) behind the owner's back: the OS refuses to
            # take it back, so the state is now -1 and the capture says why.
            return WakeupFd(fd, None)
    return WakeupFd(fd, _file_of(fd) if fd != -1 else None)


def read_dispositions() -> dict[int, Handler]:
    """Return ``signal.getsignal`` for every valid signal that can have a disposition."""
    dispositions: dict[int, Handler] = {}
    for signum in sorted(signal.valid_signals()):
        if signum in _UNCATCHABLE:
            continue
        try:
            dispositions[int(signum)] = signal.getsignal(signum)
        except (OSError, ValueError):
            continue
    return dispositions


def _restore_wakeup_fd(wakeup: WakeupFd) -> list[str]:
    signal.set_wakeup_fd(-1)
    if wakeup.fd == -1:
        return []
    if wakeup.file is None or _file_of(wakeup.fd) != wakeup.file:
        return [f"wakeup fd {wakeup} no longer names the same file; left at -1"]
    try:
        signal.set_wakeup_fd(wakeup.fd)
    except (OSError, ValueError) as exc:
        return [f"wakeup fd {wakeup}: {exc}; left at -1"]
    return []


def _describe(handler: Handler) -> str:
    if isinstance(handler, signal.Handlers):
        return handler.name
    if handler is None:
        return "None (installed outside Python)"
    return repr(handler)


def _mask_names(mask: frozenset[int]) -> str:
    return "{" + ", ".join(signal_name(s) for s in sorted(mask)) + "}"


def _meaning(timer: tuple[float, float] | None) -> tuple[bool, float]:
    """What a timer's comparison looks at (Rule 2): armed or not, and its interval."""
    if timer is None or timer[0] <= 0:
        return (False, 0.0)
    return (True, timer[1])


def _describe_timer(timer: tuple[float, float] | None) -> str:
    if timer is None or timer[0] <= 0:
        return "disarmed"
    return f"armed ({timer[0]:.3g} s left, interval {timer[1]:g} s)"
