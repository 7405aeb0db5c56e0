"""aiosig: POSIX signals for asyncio and uvloop.

Every name here is re-exported from a private module; ``__all__`` is kept honest by
``tests/test_public_api.py``.
"""

from signal import (
    ITIMER_PROF,
    ITIMER_REAL,
    ITIMER_VIRTUAL,
    SIGALRM,
    SIGCHLD,
    SIGHUP,
    SIGINT,
    SIGPROF,
    SIGQUIT,
    SIGRTMAX,
    SIGRTMIN,
    SIGTERM,
    SIGUSR1,
    SIGUSR2,
    SIGVTALRM,
    SIGWINCH,
    Signals,
)

from ._handlers import HandlerHandle, Policy, add_handler, on
from ._hooks import on_shutdown
from ._hub import Reservation, reserve
from ._platform import ThreadMask, sigqueue, thread_mask_audit, threads_not_blocking
from ._receiver import SignalReceiver, open_signal_receiver
from ._run import add_child, notify_ready, run
from ._shutdown import Shutdown, ShutdownReason, current_shutdown, request_shutdown, shield
from ._siginfo import SigInfo
from ._spawn import Blocked, block, create_subprocess_exec, create_subprocess_shell, popen
from ._timers import IntervalTimer, Tick, alarm, setitimer
from ._waits import sigtimedwait, sigwait, sigwaitinfo
from ._watchdog import BlockedLoop, Watchdog, watchdog

__all__ = (
    "ITIMER_PROF",
    "ITIMER_REAL",
    "ITIMER_VIRTUAL",
    "SIGALRM",
    "SIGCHLD",
    "SIGHUP",
    "SIGINT",
    "SIGPROF",
    "SIGQUIT",
    "SIGRTMAX",
    "SIGRTMIN",
    "SIGTERM",
    "SIGUSR1",
    "SIGUSR2",
    "SIGVTALRM",
    "SIGWINCH",
    "Blocked",
    "BlockedLoop",
    "HandlerHandle",
    "IntervalTimer",
    "Policy",
    "Reservation",
    "Shutdown",
    "ShutdownReason",
    "SigInfo",
    "SignalReceiver",
    "Signals",
    "ThreadMask",
    "Tick",
    "Watchdog",
    "add_child",
    "add_handler",
    "alarm",
    "block",
    "create_subprocess_exec",
    "create_subprocess_shell",
    "current_shutdown",
    "notify_ready",
    "on",
    "on_shutdown",
    "open_signal_receiver",
    "popen",
    "request_shutdown",
    "reserve",
    "run",
    "setitimer",
    "shield",
    "sigqueue",
    "sigtimedwait",
    "sigwait",
    "sigwaitinfo",
    "thread_mask_audit",
    "threads_not_blocking",
    "watchdog",
)
