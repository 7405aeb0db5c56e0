"""Handlers: a function or coroutine function run for each delivery, under a policy.

Theory of operation
-------------------
A handler is a consumer of both sources (``_precise.open_consumer``: plain deliveries from
the hub, blocked signals from the loop's signalfd), whose callback calls the handler according
to its policy; whatever the handler returns that is awaitable (a coroutine function's
coroutine, or a plain function's, a lambda's, a wrapper's) runs as a task under the policy:

- ``"serial"``: one run at a time; deliveries during a run coalesce into one more run, with
  the latest `SigInfo` (the kernel merges standard signals the same way);
- ``"concurrent"``: a task per delivery;
- ``"drop"``: deliveries during a run are ignored.

Exceptions go to the loop's exception handler and dispatch goes on. Tasks still running when
the handle is removed are cancelled; the handle keeps them referenced until they finish, and
``await handle.aclose()`` waits for that. Under ``asyncio.run``/``aiosig.run`` the runner
cancels and awaits them at exit, so there is no "Task was destroyed but it is pending".

``@aiosig.on`` at module level (no loop running) only records the handler; each
`aiosig.run` starts every recorded handler on its loop. Under any other runner they never
start, and at exit a RuntimeWarning says so (once, naming them): nothing can tell earlier,
because no hook sees a loop start. Anywhere else without a running loop,
`add_handler` raises: a handler bound to no loop would be a silent no-op.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Literal, TypeVar

from ._hub import check_signal
from ._precise import always_room, open_consumer
from ._siginfo import SigInfo

__all__ = ("HandlerHandle", "Policy", "add_handler", "on", "start_recorded_handlers")

Policy = Literal["serial", "concurrent", "drop"]
HandlerFn = Callable[[SigInfo], object] | Callable[[SigInfo], Awaitable[object]]
F = TypeVar("F", bound=Callable[..., object])

_POLICIES = ("serial", "concurrent", "drop")
_recorded: list[tuple[tuple[int, ...], HandlerFn, Policy, bool]] = []
_record_started = False  # has any run started the recorded handlers?


class HandlerHandle:
    """A registered handler; ``remove()`` is idempotent."""

    def __init__(
        self,
        signals: frozenset[int],
        fn: HandlerFn,
        policy: Policy,
        loop: asyncio.AbstractEventLoop,
        *,
        chain: bool = True,
    ) -> None:
        self.signals = signals
        self.policy = policy
        self._fn = fn
        self._loop = loop
        self._tasks: set[asyncio.Task[object]] = set()
        self._again: SigInfo | None = None  # serial: the run owed after the current one
        self._consumer = open_consumer(signals, self._on_delivery, always_room, loop, chain=chain)

    @property
    def removed(self) -> bool:
        """True once `remove` was called (or the loop shut down)."""
        return self._consumer.closed

    def _on_delivery(self, info: SigInfo) -> None:
        # The policy is decided before calling fn, whatever fn is: a lambda or a wrapper that
        # returns a coroutine is a run in progress as much as a coroutine function is.
        if self._tasks and self.policy != "concurrent":
            if self.policy == "serial":
                self._again = info
            return
        # `_run`, inlined for the common case: a call less per subscriber (fan-out). An
        # exception reaches the loop's exception handler through the source.
        result = self._fn(info)
        if result is not None:
            self._start(result)

    def _run(self, info: SigInfo) -> None:
        result = self._fn(info)
        if result is not None:  # a plain function's usual result, without isawaitable's checks
            self._start(result)

    def _start(self, result: object) -> None:
        """Run what `fn` returned as a task under the policy, if it is awaitable."""
        if asyncio.iscoroutine(result):
            task: asyncio.Task[object] = self._loop.create_task(result)
        elif inspect.isawaitable(result):
            task = asyncio.ensure_future(result, loop=self._loop)
        else:
            return
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._report(task.exception(), task)
        again, self._again = self._again, None
        if again is not None and not self.removed:
            try:
                self._run(again)
            except Exception as exc:
                self._report(exc, None)

    def _report(self, exc: BaseException | None, task: asyncio.Task[object] | None) -> None:
        context: dict[str, object] = {
            "message": f"aiosig handler {self._fn!r} failed",
            "exception": exc,
        }
        if task is not None:
            context["task"] = task
        self._loop.call_exception_handler(context)

    def remove(self) -> None:
        """Stop handling; cancel runs in progress. Idempotent."""
        self._consumer.close()
        self._again = None
        for task in self._tasks:
            task.cancel()

    async def aclose(self) -> None:
        """`remove`, then wait until the cancelled runs have finished."""
        self.remove()
        if self._tasks:
            await asyncio.wait(set(self._tasks))


def _check_policy(policy: str) -> Policy:
    if policy not in _POLICIES:
        raise ValueError(
            f"policy must be one of {', '.join(map(repr, _POLICIES))}, not {policy!r}."
        )
    return policy  # type: ignore[return-value]


def add_handler(
    signal: int, fn: HandlerFn, *, policy: Policy = "serial", chain: bool = True
) -> HandlerHandle:
    """Run `fn(info)` for each delivery of `signal`, on the running loop.

    If `signal` is blocked in the calling thread when the handler is added, deliveries are
    read precisely (full siginfo) on Linux. Block first, then add the handler: a signal
    blocked afterwards stays pending in the kernel and never reaches it.

    Args:
        signal: The signal.
        fn: A function or coroutine function taking a `SigInfo`; a function that returns an
            awaitable counts as a coroutine function (the policy applies to it).
        policy: ``"serial"``, ``"concurrent"`` or ``"drop"`` (see the module docs).
        chain: False to take over the signal's meaning while the handler is registered: the
            handler that was installed before aiosig (``asyncio.Runner``'s Ctrl-C handler for
            SIGINT, a user's own handler) is not called for it then.

    Returns:
        The handle; ``handle.remove()`` unregisters it.

    Raises:
        RuntimeError: No running loop (from a coroutine, or use ``@aiosig.on`` at module
            level with `aiosig.run`).
    """
    return _add((signal,), fn, _check_policy(policy), chain)


def _check_handler(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"handler must be callable, not {type(fn).__name__}.")


def _add(signals: tuple[int, ...], fn: HandlerFn, policy: Policy, chain: bool) -> HandlerHandle:
    _check_handler(fn)
    signums = frozenset(check_signal(s) for s in signals)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "add_handler() needs a running event loop: call it from a coroutine, or use "
            "@aiosig.on at module level and start the program with aiosig.run()."
        ) from None
    return HandlerHandle(signums, fn, policy, loop, chain=chain)


def on(*signals: int, policy: Policy = "serial", chain: bool = True) -> Callable[[F], F]:
    """Decorator form of `add_handler` for one or more signals.

    Inside a running loop it registers at once (the handle is ``fn.aiosig_handle``); at
    module level it records the handler, and every later `aiosig.run` starts it on its loop.

    Raises:
        ValueError, TypeError, OSError: A bad signal or policy, when ``on(...)`` is called.
        TypeError: The decorated object is not callable (nothing is recorded).
    """
    _check_policy(policy)
    signums = tuple(check_signal(s) for s in signals)
    if not signums:
        raise ValueError("on() needs at least one signal.")

    def decorate(fn: F) -> F:
        _check_handler(fn)  # now: a bad record would make every later aiosig.run fail
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if not _recorded:
                atexit.register(_warn_if_never_started)
            _recorded.append((signums, fn, policy, chain))
            return fn
        fn.aiosig_handle = _add(signums, fn, policy, chain)  # type: ignore[attr-defined]
        return fn

    return decorate


def start_recorded_handlers() -> Iterator[HandlerHandle]:
    """Start the handlers ``@on`` recorded at module level on the running loop, one by one.

    A generator, so that a caller holds each handle as soon as it is started and can remove
    the started ones if a later one fails. The record is kept: every run starts them all.
    """
    global _record_started
    _record_started = True
    for signums, fn, policy, chain in tuple(_recorded):
        yield _add(signums, fn, policy, chain)


def _warn_if_never_started() -> None:
    """At exit: say once that handlers recorded at import never ran (another runner)."""
    if _record_started or not _recorded:
        return
    names = ", ".join(getattr(fn, "__qualname__", repr(fn)) for _, fn, _, _ in _recorded)
    warnings.warn(
        f"aiosig: handlers recorded with @aiosig.on at import ({names}) never ran, because "
        "the program was not started with aiosig.run(); under another runner (asyncio.run, "
        "uvicorn.run...), call aiosig.add_handler() from inside the running loop instead.",
        RuntimeWarning,
        stacklevel=1,
    )
