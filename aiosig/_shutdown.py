"""The shutdown of a running ``aiosig.run``: its reason, its step, its one grace budget.

Theory of operation
-------------------
Rule 1 (requested is not cancelled). A shutdown is *requested* (by a stop signal, by
`request_shutdown`, or because ``main`` ended) before anything is cancelled: `Shutdown.wait`
returns and `Shutdown.requested` turns true at once, so a stream, a websocket or a queue
consumer can say goodbye, and a readiness probe can fail while the load balancer drains.
Cancellation comes later, in the order ``aiosig.run`` documents.

Rule 2 (one budget, one clock, one enforcer). The budget is ``grace`` seconds on the monotonic
clock from the moment of the request. It is enforced by a `Deadline` (a thread made when the
run starts, waiting for a moment that is first infinitely far), so a wedged loop cannot outlive
it; `remaining` reads the same moment. The fast path brings the moment forward; nothing moves
it back.

Rule 3 (the first stop signal arms the deadline inside the handler). A loop stuck in
``time.sleep(3600)`` never reads the delivery, so waiting for the loop to arm the deadline
would mean no deadline at all. `strike_in_handler` runs in the trampoline, in the main
thread, as soon as the thread runs Python again (a ``time.sleep`` is interrupted for it): the
first strike arms the deadline (a ``threading.Condition`` on an RLock: re-entrant, so safe even
if the main thread was interrupted inside the deadline's own lock); the third ends the process
at once, with the decided status, without the loop.

Rule 4 (the status is decided once): by the first reason. A stop signal decides death by it
(see `_ending`); a request from code decides exit code 0, ``main`` ending decides its own
outcome (0, ``sys.exit``'s code, or 1 for an exception). At the deadline a requested or
``main``-ended shutdown that did not finish exits 1: the service failed to stop.

Only one ``aiosig.run`` runs at a time in a process (it owns the process's exit status), so
the shutdown in progress is one module-level variable, set and cleared by ``aiosig.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._children import Children
from ._deadline import Deadline, ExitStatus, end_process
from ._ending import ExitStatusMode, status_after_signal
from ._sdnotify import NotifySocket
from ._siginfo import SigInfo

if TYPE_CHECKING:
    from ._hooks import ShutdownHook

__all__ = (
    "Shutdown",
    "ShutdownReason",
    "Step",
    "activate",
    "active",
    "current_shutdown",
    "request_shutdown",
    "shield",
    "signal_word",
    "strike",
)

T = TypeVar("T")
Step = Literal["running", "draining", "graceful", "fast"]
logger = logging.getLogger("aiosig")

SI_KERNEL = 0x80  # si_code of a signal the kernel sent (a terminal's, among others)
_SI_USER_CODES = frozenset({0, -1, -6})  # SI_USER (kill), SI_QUEUE, SI_TKILL: a sender


@dataclass(frozen=True)
class ShutdownReason:
    """Why the shutdown began.

    Attributes:
        signal: The stop signal, or None (a request from code, or ``main`` ended).
        pid: The sending process, when the kernel says (``kill``, ``sigqueue``), else None.
        uid: The sender's real user id, when known.
        text: The reason in words, as logged: "SIGTERM from pid 4242", "main returned".
        synthetic: The signal was made by ``aiosig.testing.deliver``: it decides no death.
        from_terminal: The kernel sent it (``SI_KERNEL``: a terminal's Ctrl-C goes to the
            whole foreground process group); known only for a signal read precisely.
    """

    signal: int | None
    pid: int | None
    uid: int | None
    text: str
    synthetic: bool = False
    from_terminal: bool = False

    def __str__(self) -> str:
        return self.text

    @classmethod
    def from_signal(cls, info: SigInfo) -> ShutdownReason:
        """The reason a delivery gives: which signal, and from whom when known."""
        name = signal_word(info.si_signo) + (" (synthetic)" if info.synthetic else "")
        if info.si_code in _SI_USER_CODES and info.si_pid:
            text = f"{name} from pid {info.si_pid}"
            return cls(info.si_signo, info.si_pid, info.si_uid, text, info.synthetic)
        return cls(info.si_signo, None, None, name, info.synthetic, info.si_code == SI_KERNEL)

    @classmethod
    def from_code(cls, text: str) -> ShutdownReason:
        """A reason given by the application (`request_shutdown`) or by ``aiosig.run``."""
        return cls(None, None, None, text)


class Shutdown:
    """The shutdown of the running ``aiosig.run``; get it with `current_shutdown`.

    Attributes:
        grace: The budget, in seconds, from the request to the end of the process.
        drain: Seconds ``main`` keeps running after the request.
        escalate: Whether repeated stop signals hurry and then end the process.
        fast_grace: The budget the fast path (the second stop signal) leaves, at most.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        grace: float,
        fast_grace: float,
        mode: ExitStatusMode,
        drain: float = 0.0,
        escalate: bool = True,
    ) -> None:
        self.grace = grace
        self.drain = drain
        self.escalate = escalate
        self.fast_grace = fast_grace
        self._loop = loop
        self._mode = mode
        self._reason: ShutdownReason | None = None
        self._step: Step = "running"
        # Futures, not tasks waiting on events: a waiter must not be one more task for the
        # shutdown to cancel, and the one future serves every waiter.
        self._requested = asyncio.Event()  # what tasks await; woken before the run's own step
        self._requested_future: asyncio.Future[None] = loop.create_future()
        self._fast_future: asyncio.Future[None] = loop.create_future()
        self._armed_at: float | None = None
        self._decided: ExitStatus | None = None
        self._arming = threading.RLock()  # a thread's request against the handler's strike
        self._work_until = math.inf
        self._handler_strikes = 0
        self._signalled: int | None = None  # the stop signal that decided the status
        self.children = Children()  # child processes this shutdown stops (aiosig.add_child)
        self._deadline = Deadline(
            math.inf, ExitStatus(code=1), loop=loop, before_end=self.children.kill_now
        )
        self.shielded: set[asyncio.Future[Any]] = set()
        self.hooks: list[ShutdownHook] = []  # registered during the run (see _hooks)
        self.on_request: Callable[[ShutdownReason], object] | None = None  # set by aiosig.run
        self.notifier: NotifySocket | None = None  # the run's claim on $NOTIFY_SOCKET

    # ---- what the application reads ---------------------------------------------------------

    @property
    def requested(self) -> bool:
        """True once the shutdown was requested (Rule 1)."""
        return self._reason is not None

    @property
    def reason(self) -> ShutdownReason | None:
        """Why the shutdown began; None while it has not."""
        return self._reason

    @property
    def step(self) -> Step:
        """The step: "running", "draining" (``main`` not cancelled yet), "graceful", "fast"."""
        return self._step

    @property
    def status(self) -> ExitStatus | None:
        """How the process ends if the shutdown finishes, once decided (Rule 4)."""
        return self._decided

    def remaining(self) -> float:
        """Seconds of the budget left (0 when spent); ``math.inf`` before a shutdown began."""
        return max(0.0, self._deadline.when - time.monotonic())

    def work_left(self) -> float:
        """Seconds left for cancelled work (`shield`): the budget, less what hooks need."""
        return max(0.0, min(self._work_until, self._deadline.when) - time.monotonic())

    def keep_for_hooks(self, when: float) -> None:
        """From now on, cancelled work ends at `when`, leaving the rest to the hooks."""
        self._work_until = when

    async def wait(self) -> ShutdownReason:
        """Wait until the shutdown is requested; return why."""
        await self._requested.wait()
        assert self._reason is not None
        return self._reason

    def __repr__(self) -> str:
        if self._reason is None:
            return "<Shutdown not requested>"
        return f"<Shutdown {self._step} ({self._reason}), {self.remaining():.3f} s left>"

    # ---- what aiosig.run does -----------------------------------------------------------------

    @property
    def signalled(self) -> int | None:
        """The stop signal that decided the exit status, or None."""
        return self._signalled

    @property
    def requested_at(self) -> float | None:
        """When the budget started (``time.monotonic()``), or None."""
        return self._armed_at

    @property
    def deadline(self) -> float:
        """The deadline in force (``time.monotonic()`` seconds; ``math.inf`` before a request)."""
        return self._deadline.when

    def arm(self, status: ExitStatus, signum: int | None = None) -> None:
        """Start the budget now with `status`, unless it runs already (Rules 2 and 4).

        After a stop signal the deadline ends the process with `status` too; after any other
        request it exits 1 (or `status`'s own non-zero code): the service failed to stop.
        Safe in a signal handler (Rule 3; the lock is re-entrant) and from any thread.
        """
        with self._arming:
            if self._armed_at is not None:
                return
            self._armed_at = time.monotonic()
            self._signalled = signum
            self._decided = status
            forced = status if signum is not None or status.code else ExitStatus(code=1)
            self._deadline.status = forced
            self._deadline.bring_forward(self._armed_at + self.grace)

    def status_for_signal(self, signum: int) -> ExitStatus:
        """The status a shutdown started by `signum` decides (see `_ending`)."""
        return status_after_signal(signum, self._mode)

    def begin(self, reason: ShutdownReason, status: ExitStatus, step: Step) -> bool:
        """Request the shutdown (on the loop): set the reason, the step, the event.

        Returns:
            False if it had been requested already (nothing changes).
        """
        if self._reason is not None:
            return False
        self.arm(status, None if reason.synthetic else reason.signal)
        self._reason = reason
        self._step = step
        self._requested.set()  # first: its waiters run before the run's next step (Rule 1)
        self._requested_future.set_result(None)
        return True

    def enter(self, step: Step) -> None:
        """Move to a later step ("graceful" after the drain)."""
        if self._step != "fast":
            self._step = step

    @property
    def fast(self) -> bool:
        """True once the fast path began."""
        return self._fast_future.done()

    async def requested_or(self, aw: asyncio.Future[Any]) -> None:
        """Wait until the shutdown is requested or `aw` is done."""
        await asyncio.wait({aw, self._requested_future}, return_when=asyncio.FIRST_COMPLETED)

    async def until(self, aws: set[asyncio.Future[Any]], when: float) -> bool:
        """Wait until every one of `aws` is done, until `when`, or until the fast path begins.

        Returns:
            True if all are done.
        """
        fast_before = self.fast
        pending = {aw for aw in aws if not aw.done()}
        while pending and time.monotonic() < when and self.fast == fast_before:
            await asyncio.wait(
                pending | {self._fast_future},
                timeout=when - time.monotonic(),
                return_when=asyncio.FIRST_COMPLETED,
            )
            pending = {aw for aw in pending if not aw.done()}
        return not pending

    def go_fast(self) -> float:
        """Begin the fast path: bring the deadline forward to ``fast_grace`` from now.

        Returns:
            The budget left.
        """
        self._step = "fast"
        if not self._fast_future.done():
            self._fast_future.set_result(None)
        return self._deadline.bring_forward(time.monotonic() + self.fast_grace) - time.monotonic()

    def strike_in_handler(self, signum: int, *, fast: bool = False) -> None:
        """Count a stop signal, inside the trampoline, in the main thread (Rule 3).

        The first arms the deadline; the third ends the process now. A `fast` signal counts
        as the second when it comes first. Nothing here takes a lock the interrupted code may
        hold but the deadline's own re-entrant one.
        """
        self._handler_strikes = strike(self._handler_strikes, fast)
        if self._handler_strikes < 3 or not self.escalate:
            self.arm(self.status_for_signal(signum), signum)  # only the first one arms
        else:
            self.end_now(signum)

    def end_now(self, signum: int) -> None:
        """End the process at once, with the decided status (the third stop signal)."""
        status = self.status or self.status_for_signal(signum)
        note = (
            f"aiosig: third stop signal ({signal_word(signum)}): the process ends now "
            f"({status.describe()}).\n"
        )
        with contextlib.suppress(OSError):  # stderr closed: ending matters more than saying so
            os.write(2, note.encode())
        self.children.kill_now()  # they would outlive us, orphaned, outside a container
        end_process(status)

    def request(self, reason: ShutdownReason) -> None:
        """Request the shutdown from code, from any thread: the budget starts now (Rule 2)."""
        self.arm(ExitStatus(code=0))
        if self.on_request is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self.on_request(reason)
        else:
            self._loop.call_soon_threadsafe(self.on_request, reason)

    def stand_down(self) -> None:
        """The run ended without a signal: cancel the deadline."""
        self._deadline.disarm()


def strike(count: int, fast: bool) -> int:
    """The count of stop signals after one more: a fast signal is at least the second."""
    return max(count + 1, 2) if fast else count + 1


def signal_word(signum: int) -> str:
    """``SIGTERM``, or ``signal 35`` for a number without a name (for log lines)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# ---- the shutdown in progress -----------------------------------------------------------------

_active: Shutdown | None = None
_active_lock = threading.Lock()


_guarding: Shutdown | None = None  # the last run's: its deadline guards the process's exit


def activate(shutdown: Shutdown | None) -> None:
    """Set (or clear, with None) the shutdown of the running ``aiosig.run``.

    A new run stands the previous run's deadline down: its caller caught the ``SystemExit``
    and went on, and the new run decides the process's end afresh.
    """
    global _active, _guarding
    with _active_lock:
        if shutdown is not None and _active is not None:
            raise RuntimeError(
                "aiosig.run() is already running in this process: it owns the process's "
                "shutdown and exit status, so run one at a time."
            )
        if shutdown is not None:
            if _guarding is not None:
                _guarding.stand_down()
            _guarding = shutdown
        _active = shutdown


def active() -> Shutdown | None:
    """The shutdown of the running ``aiosig.run``, or None."""
    return _active


def current_shutdown() -> Shutdown:
    """The shutdown of the running ``aiosig.run``: its reason, its step, `remaining` budget.

    Raises:
        RuntimeError: No ``aiosig.run`` is running.
    """
    shutdown = _active
    if shutdown is None:
        raise RuntimeError(
            "no shutdown to wait for: start the program with aiosig.run(main()) to have one."
        )
    return shutdown


def request_shutdown(reason: str = "requested by the application") -> None:
    """Start the shutdown of the running ``aiosig.run``, as a first stop signal does.

    Callable from any thread; the budget starts at once. The exit status is 0 if the shutdown
    finishes within its budget (1 if the deadline has to end it). A shutdown already in
    progress is not changed.

    Args:
        reason: Why, in words: logged, and given to the tasks waiting for the shutdown.

    Raises:
        TypeError: `reason` is not a str.
        RuntimeError: No ``aiosig.run`` is running.
    """
    if not isinstance(reason, str):
        raise TypeError(f"reason must be a str, not {type(reason).__name__}")
    shutdown = _active
    if shutdown is None:
        raise RuntimeError(
            "request_shutdown() needs a running aiosig.run(): start the program with "
            "aiosig.run(main()), or cancel your main task yourself."
        )
    shutdown.request(ShutdownReason.from_code(reason))


async def shield(aw: Awaitable[T], /) -> T:
    """Finish `aw` even when the awaiting task is cancelled, but never past the deadline.

    If the task awaiting this is cancelled, the work goes on until it is done or the
    shutdown's budget is spent (then it is cancelled), and the task's cancellation is raised
    afterwards. Outside a shutdown there is no deadline: the work is simply finished first.

    Returns:
        What `aw` returns, if the awaiting task was not cancelled.
    """
    inner: asyncio.Future[T] = asyncio.ensure_future(aw)
    shutdown = _active
    if shutdown is not None:
        shutdown.shielded.add(inner)
        inner.add_done_callback(shutdown.shielded.discard)
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        await _finish_within_budget(inner, shutdown)
        raise


async def _finish_within_budget(inner: asyncio.Future[Any], shutdown: Shutdown | None) -> None:
    while not inner.done():
        left = math.inf if shutdown is None else shutdown.work_left()
        if left <= 0:
            inner.cancel()
            break
        try:
            if shutdown is None:
                await asyncio.wait({inner})
            else:  # the fast path moves the deadline: look again when it does
                await shutdown.until({inner}, time.monotonic() + left)
        except asyncio.CancelledError:
            continue  # cancelled again while shielding: the work still finishes first
    if inner.done() and not inner.cancelled() and inner.exception() is not None:
        inner.exception()  # retrieved: the caller's cancellation is what propagates
