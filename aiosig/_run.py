"""``aiosig.run``: run an asyncio service and shut it down right; the functions a run offers.

The steps of a shutdown, from the stop signal to the exit status, are `_service.Service`'s
(its header has the rules); this module checks ``run``'s arguments (each error one sentence,
raised before anything runs), runs the service in an ``asyncio.Runner``, and holds
`add_child` and `notify_ready`, which act on the running service.
"""

from __future__ import annotations

import asyncio
import math
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from . import _ending
from ._children import Child
from ._ending import EXIT_STATUS_MODES, ExitStatusMode
from ._hub import check_signal
from ._sdnotify import notify
from ._service import STOP_SIGNALS, Service
from ._shutdown import active

__all__ = ("add_child", "notify_ready", "run")

T = TypeVar("T")


def _seconds(name: str, value: object, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        least = "0 or more" if zero else "more than 0"
        raise ValueError(f"{name} must be a finite number of seconds, {least}, not {value!r}")
    return float(value)


def run(
    main: Coroutine[Any, Any, T],
    *,
    grace: float = 25.0,
    drain: float = 0.0,
    fast_grace: float = 3.0,
    reload: Callable[[], object] | Callable[[], Awaitable[object]] | None = None,
    reopen_logs: bool = False,
    exit_status: ExitStatusMode = "signal",
    stop_signals: Iterable[int] = STOP_SIGNALS,
    fast_signals: Iterable[int] = (),
    escalate: bool = True,
    debug: bool | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run `main` like ``asyncio.run``, and shut it down gracefully on SIGTERM or SIGINT.

    The first stop signal (or `request_shutdown`, or `main` ending) starts the shutdown: the
    `Shutdown` event is set at once, then after `drain` seconds `main` is cancelled, then the
    other tasks, then the ``@on_shutdown`` hooks run last-first, then registered child
    processes are waited for; all within `grace` seconds, enforced from a thread. The second
    stop signal hurries (`fast_grace`, critical hooks only); the third ends the process.
    See the "Graceful shutdown" guide for every step and what it logs.

    Args:
        main: The coroutine to run.
        grace: Seconds from the shutdown request to the end of the process, at most.
        drain: Seconds between the request and the cancellation of `main` (readiness drain).
        fast_grace: Seconds the fast path (second stop signal) leaves, at most.
        reload: Called (or awaited) on SIGHUP, one run at a time; None leaves SIGHUP alone.
        reopen_logs: Reopen ``logging.FileHandler`` files on SIGUSR1 (after logrotate).
        exit_status: After a stop signal: "signal" dies of it (128 + n as PID 1), "code"
            exits 128 + n, "zero" exits 0.
        stop_signals: The signals that stop the service (and escalate when repeated).
        fast_signals: Signals that start the fast path at once (gunicorn's SIGQUIT); the
            next stop or fast signal then ends the process.
        escalate: False to make each signal mean only itself however often it comes: a
            repeated stop signal neither hurries nor ends the process (gunicorn's workers,
            which get SIGTERM from the arbiter after the one sent to the whole group).
        debug: As for ``asyncio.run``.
        loop_factory: Makes the loop, as ``asyncio.Runner`` takes it (``uvloop.new_event_loop``).

    Returns:
        What `main` returns (None if a requested shutdown cancelled it).

    Raises:
        SystemExit: After a shutdown started by a stop signal (128 + n, or 0), once every
            task ended and the loop closed; the process then dies of the signal after the
            atexit handlers.
        RuntimeError: Not the main thread, another ``aiosig.run`` is running, or a recorded
            handler could not start.
        BaseException: Whatever `main` raises, once the shutdown is over.
    """
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    try:
        service: Service[T] = Service(
            grace=_seconds("grace", grace, zero=False),
            drain=_seconds("drain", drain, zero=True),
            fast_grace=_seconds("fast_grace", fast_grace, zero=False),
            reload=_callable_or_none("reload", reload),
            reopen_logs=_flag("reopen_logs", reopen_logs),
            exit_status=_mode(exit_status),
            stop_signals=_stop_signals("stop_signals", stop_signals, reload, reopen_logs),
            fast_signals=_stop_signals("fast_signals", fast_signals, reload, reopen_logs),
            escalate=_flag("escalate", escalate),
        )
        if service.stop_signals & service.fast_signals:
            raise ValueError(
                "a signal cannot be in both stop_signals and fast_signals: a stop signal "
                "already starts the fast path when it comes a second time."
            )
        if service.drain >= service.grace:
            raise ValueError(
                f"drain ({drain!r} s) must be shorter than grace ({grace!r} s): the drain is "
                "spent inside the grace budget."
            )
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "aiosig.run() must be called from the main thread: it owns the process's "
                "stop signals and exit status."
            )
        if active() is not None:
            raise RuntimeError("aiosig.run() is already running: run one at a time.")
    except BaseException:
        main.close()
        raise
    _ending.forget()
    try:
        with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
            runner.run(service.supervise(main))
    except BaseException:
        if service.shutdown is not None and service.shutdown.signalled is None:
            service.shutdown.stand_down()
        raise
    return service.outcome()


def _stop_signals(
    name: str, signals: object, reload: object, reopen_logs: object
) -> frozenset[int]:
    if isinstance(signals, int) or not isinstance(signals, Iterable):
        raise TypeError(f"{name} must be an iterable of signals, not {signals!r}")
    found = frozenset(check_signal(s) for s in signals)
    for signum, taken, by in (
        (signal.SIGHUP, reload is not None, "reload"),
        (signal.SIGUSR1, reopen_logs is True, "reopen_logs"),
    ):
        if signum in found and taken:
            raise ValueError(
                f"{signal.Signals(signum).name} cannot both stop the service and serve {by}: "
                f"take it out of {name} or out of that option."
            )
    return found


def _callable_or_none(name: str, value: object) -> Callable[[], object] | None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {type(value).__name__}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def _mode(value: object) -> ExitStatusMode:
    if value not in EXIT_STATUS_MODES:
        choices = ", ".join(map(repr, EXIT_STATUS_MODES))
        raise ValueError(f"exit_status must be one of {choices}, not {value!r}")
    return value


def add_child(child: Child, *, group: bool = False) -> None:
    """Register a child process for the shutdown of the running ``aiosig.run``.

    At the shutdown's request it gets the stop signal (SIGTERM for a request from code); the
    end of the shutdown waits for it, sends SIGKILL if it still runs just before the deadline
    (and the deadline thread does if the loop is wedged), and reaps it through its owner:
    ``Popen.poll()``, an asyncio ``Process``'s ``wait()``, or a wait of its own for a pid.

    Args:
        child: A ``subprocess.Popen``, an ``asyncio.subprocess.Process``, or the pid of a
            child of this process.
        group: Signal the child's whole process group; the child must lead its own group
            (``start_new_session=True`` or ``process_group=0``).

    Raises:
        RuntimeError: No ``aiosig.run`` is running.
        TypeError, ValueError: Not a child, or `group` for a child that leads no group.
    """
    shutdown = active()
    if shutdown is None:
        raise RuntimeError(
            "add_child() needs a running aiosig.run(): start the program with "
            "aiosig.run(main()), and register children from inside it."
        )
    shutdown.children.add(child, group=group)


def notify_ready(status: str | None = None) -> bool:
    """Tell systemd the service is ready (READY=1); call it when it really is.

    aiosig never guesses readiness. Under ``aiosig.run`` this uses the notification socket
    the run claimed; elsewhere ``$NOTIFY_SOCKET``. Without one it does nothing.

    Args:
        status: A line for ``systemctl status`` (STATUS=), or None.

    Returns:
        True if the message was sent.
    """
    shutdown = active()
    assignments = ("READY=1",) + (() if status is None else (f"STATUS={status}",))
    if shutdown is not None and shutdown.notifier is not None:
        return shutdown.notifier.send(*assignments)
    return notify(*assignments)
