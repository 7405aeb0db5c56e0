"""aiosig: POSIX signals for asyncio and uvloop.

Every name here is re-exported from a private module; ``__all__`` is kept honest by
``tests/test_public_api.py``.

Importing aiosig loads none of those modules: each is loaded when one of its names is first
used (PEP 562's module ``__getattr__``), so that a program pays only for the parts it uses:
``import aiosig`` after ``import asyncio`` costs under 1 ms, against 15-18 ms when every
module loaded at once (docs/benchmarks.md). The ``TYPE_CHECKING`` imports name the same
objects for type checkers, IDEs and the documentation; ``tests/test_import.py`` checks that
they and ``_LAZY`` agree. Only ``_process_hooks`` loads at once: aiosig's atexit and fork
hooks must take their places when aiosig is imported (its header says why).
"""

import typing as _typing
from importlib import import_module as _import_module
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

from . import _process_hooks as _process_hooks

if _typing.TYPE_CHECKING:
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

# Where each name lives: the module is imported when one of its names is first looked up.
_LAZY: dict[str, tuple[str, ...]] = {
    "_handlers": ("HandlerHandle", "Policy", "add_handler", "on"),
    "_hooks": ("on_shutdown",),
    "_hub": ("Reservation", "reserve"),
    "_platform": ("ThreadMask", "sigqueue", "thread_mask_audit", "threads_not_blocking"),
    "_receiver": ("SignalReceiver", "open_signal_receiver"),
    "_run": ("add_child", "notify_ready", "run"),
    "_shutdown": ("Shutdown", "ShutdownReason", "current_shutdown", "request_shutdown", "shield"),
    "_siginfo": ("SigInfo",),
    "_spawn": ("Blocked", "block", "create_subprocess_exec", "create_subprocess_shell", "popen"),
    "_timers": ("IntervalTimer", "Tick", "alarm", "setitimer"),
    "_waits": ("sigtimedwait", "sigwait", "sigwaitinfo"),
    "_watchdog": ("BlockedLoop", "Watchdog", "watchdog"),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}

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


if not _typing.TYPE_CHECKING:  # type checkers see the imports above, and no catch-all attribute

    def __getattr__(name: str) -> object:
        module = _HOME.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # later lookups do not come back here
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_HOME))
