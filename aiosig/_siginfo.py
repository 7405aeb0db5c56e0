"""What one signal delivery is: `SigInfo`.

A delivery carries the stdlib's ``struct_siginfo`` field names. A *plain* delivery (read from
the wakeup fd) knows only the signal number, so every other field is ``None``: aiosig never
invents a pid. A *precise* delivery (read from a signalfd) fills every field the kernel gave.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

__all__ = ("PLAIN", "SigInfo", "as_signal")


def as_signal(signo: int) -> signal.Signals | int:
    """Return the `signal.Signals` member for `signo`, or the plain int (e.g. SIGRTMIN+1)."""
    try:
        return signal.Signals(signo)
    except ValueError:
        return int(signo)


@dataclass(frozen=True, slots=True)
class SigInfo:
    """One delivery of a signal.

    Attributes:
        si_signo: The signal, a `signal.Signals` member where one exists, else an int.
        si_code: Why it was sent (``SI_USER``, ``SI_QUEUE``, ``CLD_EXITED``...), or None.
        si_errno: The errno value that goes with the signal, or None.
        si_pid: The sender's process id, or None where the delivery cannot know it.
        si_uid: The sender's real user id, or None.
        si_status: Exit status or signal, for SIGCHLD; None otherwise or when unknown.
        si_band: The band event, for SIGPOLL; None otherwise or when unknown.
        si_value: The sigqueue payload (sival_int) for SI_QUEUE, SI_TIMER and SI_MESGQ.
        precise: True when read from a signalfd (every field the kernel gave is filled).
        synthetic: True when made by ``aiosig.testing.deliver``: no signal was sent, and the
            other fields are what the test gave.
    """

    si_signo: signal.Signals | int
    si_code: int | None = None
    si_errno: int | None = None
    si_pid: int | None = None
    si_uid: int | None = None
    si_status: int | None = None
    si_band: int | None = None
    si_value: int | None = None
    precise: bool = False
    synthetic: bool = False

    @classmethod
    def plain(cls, signo: int) -> SigInfo:
        """A delivery that knows nothing but its signal number."""
        return PLAIN.get(signo) or cls(as_signal(signo))


# Plain deliveries are immutable and carry only the number: share one per signal number so
# the hot path allocates nothing per delivery.
PLAIN: dict[int, SigInfo] = {s: SigInfo(as_signal(s)) for s in range(1, signal.NSIG)}
