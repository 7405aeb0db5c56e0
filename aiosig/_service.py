"""The service behind ``aiosig.run``: its steps, from the stop signal to the exit status.

Theory of operation
-------------------
Rule 1 (the order of a shutdown). A stop signal (SIGTERM, SIGINT), `request_shutdown`, or
``main`` ending *requests* the shutdown: the `Shutdown` event is set, STOPPING=1 goes to
systemd, registered child processes get the stop signal, the budget starts. Then, in order:
the drain (``drain`` seconds during which ``main`` still runs, so readiness probes fail and
the load balancer stops sending), ``main`` is cancelled, then every other task (the
``@aiosig.on`` handlers, reload runs, the application's tasks; `shield`-ed work is waited
for), then the shutdown hooks (last-registered-first, `_hooks`), then the children are waited
for (SIGKILL for those left at the end). Each wait is bounded by the budget, keeping back what
the steps after it need.

Rule 2 (escalation counts stop signals, not steps). The first starts the shutdown (or, if it
already runs because ``main`` ended or code asked, only says so); the second starts the fast
path: ``fast_grace`` seconds at most, ``main`` and the tasks cancelled at once, only critical
hooks; the third ends the process at once. The first and third are also counted inside the
signal handler (`Shutdown.strike_in_handler`), so that a wedged loop still gets its deadline
and its third-signal exit.

Rule 3 (SIGINT is a stop signal with Ctrl-C's feel): the first press says on stderr (the
``aiosig`` logger at WARNING, which Python's last-resort handler prints) what happens and
what the next press does. ``asyncio.Runner``'s own SIGINT handler is not chained to while
the run owns SIGINT, so no KeyboardInterrupt lands in the middle of a shutdown.

Rule 4 (the outcome, decided once): see `_ending` and `_shutdown`. After a signal the run
raises ``SystemExit(128 + n)`` (or 0 with ``exit_status="zero"``) once the loop is closed,
and the deadline keeps guarding until the process is gone. Otherwise the deadline is
disarmed, and ``main``'s outcome is returned or raised as ``asyncio.run`` would (None if a
requested shutdown cancelled it). ``main`` runs in a task of its own so that it can be
cancelled apart from the run; a ``SystemExit`` or ``KeyboardInterrupt`` it raises would stop
the loop at once (asyncio re-raises them through ``run_forever``), skipping the hooks, so
they are carried out of the task as a value and raised at the end.

Rule 5 (reload and log reopening are opt-in). SIGHUP and SIGUSR1 keep their default action
(the process dies) unless ``reload=`` or ``reopen_logs=True`` asks for them: reload is one
argument away, never a surprise. A reload runs under the "serial" policy: one at a time, a
burst coalescing into at most one more run; a failure is logged and the service goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from . import _ending
from ._children import ZombieReaper
from ._deadline import ExitStatus
from ._ending import ExitStatusMode
from ._handlers import HandlerHandle, add_handler, start_recorded_handlers
from ._hooks import recorded_hooks, run_hooks
from ._hub import get_hub
from ._logfiles import reopen_log_files
from ._precise import Consumer, always_room, open_consumer
from ._sdnotify import NotifySocket
from ._shutdown import Shutdown, ShutdownReason, activate, signal_word, strike
from ._siginfo import SigInfo

__all__ = ("STOP_SIGNALS", "Carried", "Service", "carrying")

T = TypeVar("T")
logger = logging.getLogger("aiosig")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_SLACK = 5.0  # seconds added to EXTEND_TIMEOUT_USEC for the interpreter's own exit
KILL_MARGIN = 0.5  # children still running this long before the deadline get SIGKILL
EXIT_MARGIN = 0.25  # what the steps leave for finally blocks and atexit handlers, at most


class Carried(Exception):
    """A SystemExit or KeyboardInterrupt carried out of a task as a value (Rule 4)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


async def carrying(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro`, turning its SystemExit or KeyboardInterrupt into `Carried` (Rule 4)."""
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as exc:
        raise Carried(exc) from None


class Service(Generic[T]):
    """One ``aiosig.run``: its options, its shutdown, and the steps of Rule 1."""

    def __init__(
        self,
        *,
        grace: float,
        drain: float,
        fast_grace: float,
        reload: Callable[[], object] | None,
        reopen_logs: bool,
        exit_status: ExitStatusMode,
        stop_signals: frozenset[int],
        fast_signals: frozenset[int],
        escalate: bool,
    ) -> None:
        self.stop_signals = stop_signals
        self.fast_signals = fast_signals
        self.escalate = escalate
        self.grace = grace
        self.drain = drain
        self.fast_grace = fast_grace
        self.reload = reload
        self.reopen_logs = reopen_logs
        self.exit_status = exit_status
        self.shutdown: Shutdown | None = None
        self.main_task: asyncio.Task[T] | None = None
        self.notifier = NotifySocket(None)
        self._strikes = 0
        self._handles: list[HandlerHandle] = []  # @aiosig.on's: cancelled with the tasks
        self._own: list[HandlerHandle] = []  # reload, reopen_logs: until the run ends
        self._stop: Consumer | None = None
        self._internal: set[asyncio.Future[Any]] = set()
        self._reaper: ZombieReaper | None = None
        self._tasks_end: dict[bool, float] = {}  # see _tasks_until

    # ---- the run ----------------------------------------------------------------------------

    async def supervise(self, main: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        loop = asyncio.get_running_loop()
        # uvloop takes the wakeup fd at the start of every run: take it back before anything
        # else, so that a burst arriving before the first delivery is counted (_hub, Rule 3).
        get_hub().take_back()
        shutdown = self.shutdown = Shutdown(
            loop,
            grace=self.grace,
            fast_grace=self.fast_grace,
            mode=self.exit_status,
            drain=self.drain,
            escalate=self.escalate,
        )
        shutdown.on_request = self._requested_by_code
        activate(shutdown)
        try:
            self.notifier = NotifySocket.claim()
            shutdown.notifier = self.notifier
            self._start(loop)
            self.main_task = loop.create_task(carrying(main), name="main")
            await self._serve(self.main_task)
            return self.main_task
        finally:
            if inspect.getcoroutinestate(main) == inspect.CORO_CREATED:
                main.close()  # never started: no "coroutine was never awaited" warning
            self._close()
            activate(None)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        for handle in start_recorded_handlers():
            self._handles.append(handle)
        if self.stop_signals | self.fast_signals:
            self._stop = open_consumer(
                self.stop_signals | self.fast_signals,
                self._on_stop_signal,
                always_room,
                loop,
                chain=False,
                in_handler=self._in_handler,
            )
        # Kept through the shutdown: a SIGHUP then must not take its default action and end
        # the process before the hooks ran; it is logged and ignored instead (_reload).
        if self.reload is not None:
            self._own.append(add_handler(signal.SIGHUP, self._reload, policy="serial"))
        if self.reopen_logs:
            self._own.append(add_handler(signal.SIGUSR1, self._reopen_logs))
        if os.getpid() == 1:  # orphans of the pid namespace become ours: reap them
            assert self.shutdown is not None
            self._reaper = ZombieReaper(loop, keep=self.shutdown.children.__contains__)
            self._reaper.start()
        interval = self.notifier.watchdog_interval
        if interval is not None:
            self._internal.add(loop.create_task(self._pet(interval / 2), name="aiosig watchdog"))

    def _close(self) -> None:
        if self._stop is not None:
            self._stop.close()
        for handle in self._handles + self._own:
            handle.remove()
        for task in self._internal:
            task.cancel()
        if self._reaper is not None:
            self._reaper.close()

    async def _serve(self, main_task: asyncio.Task[T]) -> None:
        shutdown = self.shutdown
        assert shutdown is not None
        await shutdown.requested_or(main_task)
        if not shutdown.requested:
            reason, status = _main_ended(main_task)
            self._begin(reason, status, "graceful")
        await self._end(main_task)

    # ---- requests ---------------------------------------------------------------------------

    def _begin(self, reason: ShutdownReason, status: ExitStatus, step: str) -> bool:
        shutdown = self.shutdown
        assert shutdown is not None
        if not shutdown.begin(reason, status, "draining" if step == "draining" else "graceful"):
            return False
        what = f"draining for {self.drain:g} s, then " if step == "draining" else ""
        fast = f"{min(self.fast_grace, self.grace):g} s"
        if self.escalate:
            next_step = (
                f"; the next {self._next} shortens that to {fast}, a third ends the process at once"
            )
        elif self.fast_signals:
            names = " or ".join(sorted(signal.Signals(s).name for s in self.fast_signals))
            next_step = f"; {names} shortens that to {fast}"
        else:
            next_step = ""
        log = logger.warning if reason.signal == signal.SIGINT else logger.info
        log(
            "%s: shutting down (%sstopping gracefully within %.3g s)%s",
            reason,
            what,
            shutdown.remaining(),
            next_step,
        )
        self.notifier.stopping(f"stopping: {reason}")
        self.notifier.extend_timeout(shutdown.remaining() + EXIT_SLACK)
        self._forward(reason)
        return True

    def _forward(self, reason: ShutdownReason) -> None:
        """Pass the stop signal on to the registered children (SIGTERM for other reasons)."""
        assert self.shutdown is not None
        children = self.shutdown.children
        if children:
            signum = signal.SIGTERM if reason.signal is None else reason.signal
            count = _count(len(children), "child process", "child processes")
            logger.info("sending %s to %s", signal_word(signum), count)
            children.signal(signum, from_terminal=reason.from_terminal)

    def _requested_by_code(self, reason: ShutdownReason) -> None:
        step = "draining" if self.drain > 0 else "graceful"
        if not self._begin(reason, ExitStatus(code=0), step):
            logger.info("%s: the shutdown is already under way", reason)

    def _in_handler(self, signum: int, frame: object) -> None:
        # Inside the trampoline, main thread (Rule 2): count, arm, or end. Nothing else.
        assert self.shutdown is not None
        self.shutdown.strike_in_handler(signum, fast=signum in self.fast_signals)

    def _on_stop_signal(self, info: SigInfo) -> None:
        shutdown = self.shutdown
        assert shutdown is not None
        fast_signal = info.si_signo in self.fast_signals
        if self.escalate:
            self._strikes = strike(self._strikes, fast_signal)
        else:  # each signal means itself, however often it comes (gunicorn's workers)
            self._strikes = 2 if fast_signal else 1
        reason = ShutdownReason.from_signal(info)
        status = shutdown.status_for_signal(info.si_signo)
        if info.synthetic:  # aiosig.testing.deliver: the test process must not die of it
            status = ExitStatus(code=0)
        if self._strikes >= 3 and info.synthetic:
            logger.warning("%s: a third stop signal (synthetic): not ending the process", reason)
        elif self._strikes >= 3:
            shutdown.end_now(info.si_signo)
        elif self._strikes == 2:
            self._begin(reason, status, "graceful")  # a fast signal may come first
            if not shutdown.fast:
                self._go_fast(reason)
        elif not self._begin(reason, status, "draining" if self.drain > 0 else "graceful"):
            then = f"; the next {self._next} starts the fast path" if self.escalate else ""
            logger.warning(
                "%s: the shutdown is already under way (%s)%s", reason, shutdown.reason, then
            )

    def _go_fast(self, reason: ShutdownReason) -> None:
        shutdown = self.shutdown
        assert shutdown is not None
        left = shutdown.go_fast()
        then = f"; the next {self._next} ends the process at once" if self.escalate else ""
        logger.warning(
            "%s: fast shutdown: everything is cancelled now and only critical hooks run, "
            "%.3g s left%s",
            reason,
            left,
            then,
        )
        self.notifier.status(f"stopping fast: {reason}")
        self.notifier.extend_timeout(left + EXIT_SLACK)
        if self.main_task is not None:
            self.main_task.cancel(f"aiosig: fast shutdown ({reason})")
        self._forward(reason)

    @property
    def _next(self) -> str:
        names = sorted(signal.Signals(s).name for s in self.stop_signals | self.fast_signals)
        return " or ".join(names) if names else "stop signal"

    # ---- the steps (Rule 1) -----------------------------------------------------------------

    def _tasks_until(self) -> float:
        """When waiting for cancelled tasks ends: the deadline, less what the hooks need.

        Decided once per path (graceful, then fast), so that the steps that wait for tasks
        one after the other share one end instead of each taking half of what is left.
        """
        shutdown = self.shutdown
        assert shutdown is not None
        fast = shutdown.fast
        if fast not in self._tasks_end:
            hooks = recorded_hooks() + shutdown.hooks
            if fast:
                hooks = [hook for hook in hooks if hook.critical]
            reserve = sum(hook.timeout for hook in hooks) + self._end_margin()
            end = shutdown.deadline - min(reserve, shutdown.remaining() / 2)
            self._tasks_end[fast] = min([end, *self._tasks_end.values()])
        return self._tasks_end[fast]

    def _kill_margin(self) -> float:
        """What the end keeps for SIGKILL and reaping of children left running."""
        assert self.shutdown is not None
        return min(KILL_MARGIN, self.grace / 10) if self.shutdown.children else 0.0

    def _end_margin(self) -> float:
        """What the hooks leave: the children's margin, then the interpreter's own exit."""
        return self._kill_margin() + min(EXIT_MARGIN, self.fast_grace / 4, self.grace / 10)

    async def _cancelled(
        self,
        tasks: set[asyncio.Future[Any]],
        why: str,
        also: frozenset[asyncio.Future[Any]] | set[asyncio.Future[Any]] = frozenset(),
    ) -> bool:
        """Cancel `tasks` and wait for them and for `also` (shielded work, not cancelled).

        When the fast path begins, the budget shrinks and the tasks are cancelled again; the
        shielded work is bounded by the shield itself (`Shutdown.work_left`).
        """
        shutdown = self.shutdown
        assert shutdown is not None
        for task in tasks:
            task.cancel(why)
        fast = shutdown.fast
        until = self._tasks_until()
        shutdown.keep_for_hooks(until)
        while not await shutdown.until(tasks | also, until):
            if shutdown.fast == fast:
                return False  # time is up
            fast = True  # the fast path began: a shorter budget, and hurry those still running
            until = self._tasks_until()
            shutdown.keep_for_hooks(until)
            for task in tasks:
                if not task.done():
                    task.cancel(why)
        return True

    async def _end(self, main_task: asyncio.Task[T]) -> None:
        shutdown = self.shutdown
        assert shutdown is not None and shutdown.reason is not None
        why = f"aiosig: shutdown ({shutdown.reason})"
        if shutdown.step == "draining" and not shutdown.fast:
            self.notifier.status(f"draining: {shutdown.reason}")
            started = shutdown.requested_at
            assert started is not None
            await shutdown.until({main_task}, started + self.drain)
        shutdown.enter("graceful")
        if not main_task.done():
            logger.info("cancelling main")
            self.notifier.status(f"stopping: cancelling main ({shutdown.reason})")
            await self._cancelled({main_task}, why)
        for handle in self._handles:
            handle.remove()  # their runs are among the tasks cancelled next
        loop = asyncio.get_running_loop()
        shielded = set(shutdown.shielded)  # finished first: cancelled only when time is up
        others = _other_tasks(loop) - self._internal - shielded - {main_task}
        if others:
            logger.info("cancelling %s: %s", _count(len(others), "task", "tasks"), _names(others))
        finished = await self._cancelled(others, why, also=shielded)
        if not finished or not main_task.done():
            stuck = {t for t in others | {main_task} | shutdown.shielded if not t.done()}
            logger.warning(
                "still running after cancellation: %s; the deadline ends the process in "
                "%.3g s if they do not finish",
                _names(stuck),
                shutdown.remaining(),
            )
        self.notifier.status(f"stopping: running shutdown hooks ({shutdown.reason})")
        await run_hooks(recorded_hooks() + shutdown.hooks, shutdown, self._end_margin())
        if shutdown.children:
            self.notifier.status(f"stopping: waiting for child processes ({shutdown.reason})")
            await shutdown.children.stop(shutdown.deadline - self._end_margin())
        logger.info(
            "shutdown finished in %.3f s (%s)",
            time.monotonic() - (shutdown.requested_at or time.monotonic()),
            shutdown.status.describe() if shutdown.status is not None else "exit code 0",
        )

    # ---- reload, logs, watchdog -------------------------------------------------------------

    async def _reload(self, info: SigInfo) -> None:
        assert self.reload is not None and self.shutdown is not None
        reason = ShutdownReason.from_signal(info)
        if self.shutdown.requested:
            logger.info("%s: not reloading: the service is shutting down", reason)
            return
        logger.info("%s: reloading", reason)
        self.notifier.reloading(f"reloading ({reason})")
        status = "reloaded"
        try:
            result = self.reload()
            if inspect.isawaitable(result):
                await result
        except Exception:
            status = "reload failed; running on"
            logger.exception("%s: reload failed; the service goes on as it was", reason)
        finally:
            # After STOPPING=1, a READY=1 would tell systemd the service is up again.
            if not self.shutdown.requested:
                self.notifier.ready(status)

    def _reopen_logs(self, info: SigInfo) -> None:
        reopened = reopen_log_files()
        logger.info(
            "%s: reopened %d log files: %s",
            ShutdownReason.from_signal(info),
            len(reopened),
            ", ".join(reopened) or "none",
        )

    async def _pet(self, every: float) -> None:
        # From the loop, on purpose: a wedged loop stops petting, and systemd restarts it.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(every)

    # ---- the outcome (Rule 4) ---------------------------------------------------------------

    def outcome(self) -> T:
        shutdown = self.shutdown
        main_task = self.main_task
        assert shutdown is not None and main_task is not None
        if shutdown.signalled is not None:
            status = shutdown.status
            assert status is not None
            _report_lost(main_task)
            _ending.decide(status)
            raise SystemExit(status.shell_status)
        shutdown.stand_down()
        if main_task.cancelled():
            return None  # type: ignore[return-value]  # a requested shutdown cancelled it
        exc = main_task.exception()
        if isinstance(exc, Carried):
            raise exc.exc
        if exc is not None:
            raise exc
        return main_task.result()


def _report_lost(main_task: asyncio.Task[Any]) -> None:
    """A signal decided the exit status: an exception `main` raised meanwhile is logged."""
    if main_task.cancelled():
        return
    exc = main_task.exception()
    if exc is not None and not isinstance(exc, Carried):
        logger.error("main raised during the shutdown", exc_info=exc)


def _main_ended(main_task: asyncio.Task[Any]) -> tuple[ShutdownReason, ExitStatus]:
    if main_task.cancelled():
        return ShutdownReason.from_code("main was cancelled"), ExitStatus(code=1)
    exc = main_task.exception()
    if isinstance(exc, Carried):
        exc = exc.exc
        if isinstance(exc, SystemExit):
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            status = ExitStatus(code=code & 0xFF)
            return ShutdownReason.from_code(f"main called sys.exit({exc.code!r})"), status
    if exc is not None:
        return ShutdownReason.from_code(f"main raised {exc!r}"), ExitStatus(code=1)
    return ShutdownReason.from_code("main returned"), ExitStatus(code=0)


def _other_tasks(loop: asyncio.AbstractEventLoop) -> set[asyncio.Future[Any]]:
    current = asyncio.current_task(loop)
    return {task for task in asyncio.all_tasks(loop) if task is not current}


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _names(tasks: set[asyncio.Future[Any]]) -> str:
    return ", ".join(sorted(repr(t.get_name()) for t in tasks if isinstance(t, asyncio.Task)))
