"""The process-wide signal state a test must leave as it found it: aiosig's own.

The logic is the library's (``aiosig.testing.SignalState``, used by the autouse fixture in
``conftest.py``); these are the names the tests were written against.
"""

from __future__ import annotations

from aiosig._signal_state import SignalState, WakeupFd, read_wakeup_fd, signal_name

__all__ = (
    "SignalState",
    "WakeupFd",
    "changes",
    "read_wakeup_fd",
    "restore",
    "signal_name",
    "snapshot",
)


def snapshot() -> SignalState:
    """Record dispositions, wakeup fd, signal mask and interval timers (main thread only)."""
    return SignalState.capture()


def changes(before: SignalState, after: SignalState) -> list[str]:
    """Describe every difference between two snapshots, one line each; empty if none."""
    return before.changes(after)


def restore(state: SignalState) -> list[str]:
    """Put a snapshot back; return what could not be restored (one line each)."""
    return state.restore()
