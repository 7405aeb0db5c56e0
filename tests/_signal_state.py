"""The process-wide signal state a test must leave as it found it.

Three things are process-wide and outlive a test: the disposition of every signal, the
wakeup fd, and the main thread's signal mask. ``snapshot()`` records them,
``changes(before, after)`` names what differs, and ``restore(state)`` puts a snapshot back so
that one leaking test does not poison the rest of the session. The autouse fixture in
``conftest.py`` glues the three together; they are plain functions so that the comparison can
itself be tested.

Reading the wakeup fd has no getter: ``set_wakeup_fd(-1)`` returns it and the second call puts
it back. That resets ``warn_on_full_buffer`` to its default, which is acceptable in tests, and
it must only ever run in the main thread, between loop runs.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})


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


@dataclass(frozen=True)
class SignalState:
    """Dispositions by signal number, the wakeup fd and the calling thread's signal mask."""

    dispositions: dict[int, Handler]
    wakeup_fd: WakeupFd
    mask: frozenset[int]


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
    """Return the current wakeup fd, leaving it installed (main thread only)."""
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        try:
            signal.set_wakeup_fd(fd)
        except (OSError, ValueError):
            # The fd was closed (or made blocking) behind the owner's back: the OS refuses to
            # take it back, so the state is now -1 and the snapshot says why.
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


def snapshot() -> SignalState:
    """Record dispositions, wakeup fd and signal mask (main thread only)."""
    return SignalState(
        dispositions=read_dispositions(),
        wakeup_fd=read_wakeup_fd(),
        mask=frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    )


def _describe(handler: Handler) -> str:
    if isinstance(handler, signal.Handlers):
        return handler.name
    if handler is None:
        return "None (installed outside Python)"
    return repr(handler)


def changes(before: SignalState, after: SignalState) -> list[str]:
    """Describe every difference between two snapshots, one line each; empty if none."""
    lines = []
    for signum in sorted(before.dispositions.keys() | after.dispositions.keys()):
        old = before.dispositions.get(signum)
        new = after.dispositions.get(signum)
        if old != new:
            lines.append(
                f"{signal_name(signum)} disposition: before={_describe(old)}, "
                f"after={_describe(new)}"
            )
    if before.wakeup_fd != after.wakeup_fd:
        lines.append(f"wakeup fd: before={before.wakeup_fd}, after={after.wakeup_fd}")
    if before.mask != after.mask:
        added = ", ".join(signal_name(s) for s in sorted(after.mask - before.mask))
        removed = ", ".join(signal_name(s) for s in sorted(before.mask - after.mask))
        lines.append(
            f"signal mask: blocked since: [{added}], unblocked since: [{removed}] "
            f"(before={_mask_names(before.mask)}, after={_mask_names(after.mask)})"
        )
    return lines


def _mask_names(mask: frozenset[int]) -> str:
    return "{" + ", ".join(signal_name(s) for s in sorted(mask)) + "}"


def restore(state: SignalState) -> list[str]:
    """Put a snapshot back; return what could not be restored (one line each)."""
    problems = []
    signal.pthread_sigmask(signal.SIG_SETMASK, state.mask)
    current = read_dispositions()
    for signum, handler in state.dispositions.items():
        if current.get(signum) == handler:
            continue
        if handler is None:
            problems.append(f"{signal_name(signum)}: the handler installed outside Python is lost")
            continue
        try:
            signal.signal(signum, handler)
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"{signal_name(signum)}: {exc}")
    wakeup = state.wakeup_fd
    signal.set_wakeup_fd(-1)
    if wakeup.fd != -1:
        if wakeup.file is None or _file_of(wakeup.fd) != wakeup.file:
            problems.append(f"wakeup fd {wakeup} no longer names the same file; left at -1")
        else:
            try:
                signal.set_wakeup_fd(wakeup.fd)
            except (OSError, ValueError) as exc:
                problems.append(f"wakeup fd {wakeup}: {exc}; left at -1")
    return problems
