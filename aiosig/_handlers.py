"""Handlers: a function or coroutine function run for each delivery, under a policy.

Theory of operation
-------------------
A handler is a hub subscription whose callback starts the handler (a task for coroutine
functions, a direct call for plain ones) according to its policy:

- ``"serial"``: one run at a time; deliveries during a run coalesce into one more run, with
  the latest `SigInfo` (the kernel merges standard signals the same way);
- ``"concurrent"``: a task per delivery;
- ``"drop"``: deliveries during a run are ignored.

Exceptions go to the loop's exception handler and dispatch goes on. Tasks still running when
the handle is removed are cancelled; the handle keeps them referenced until they finish, and
``await handle.aclose()`` waits for that. Under ``asyncio.run``/``aiosig.run`` the runner
cancels and awaits them at exit, so there is no "Task was destroyed but it is pending".

``@aiosig.on`` at module level (no loop running) only records the handler; the next
`aiosig.run` starts it on its loop. Anywhere else without a running loop, `add_handler`
raises: a handler bound to no loop would be a silent no-op.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from ._hub import check_signal, get_hub
from ._siginfo import SigInfo

__all__ = ("HandlerHandle", "Policy", "add_handler", "on", "start_pending_handlers")

Policy = Literal["serial", "concurrent", "drop"]
HandlerFn = Callable[[SigInfo], object] | Callable[[SigInfo], Awaitable[object]]
F = TypeVar("F", bound=Callable[..., object])

_POLICIES = ("serial", "concurrent", "drop")
_pending: list[tuple[tuple[int, ...], HandlerFn, Policy]] = []


class HandlerHandle:
    """A registered handler; ``remove()`` is idempotent."""

    def __init__(
        self,
        signals: frozenset[int],
        fn: HandlerFn,
        policy: Policy,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.signals = signals
        self.policy = policy
        self._fn = fn
        # An instance whose __call__ is a coroutine function counts too.
        call = None if inspect.isroutine(fn) else type(fn).__call__
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
        self._loop = loop
        self._tasks: set[asyncio.Task[object]] = set()
        self._again: SigInfo | None = None  # serial: the run owed after the current one
        self._sub = get_hub().subscribe(signals, self._on_delivery, loop=loop)

    @property
    def removed(self) -> bool:
        """True once `remove` was called."""
        return self._sub.closed

    def _on_delivery(self, info: SigInfo) -> None:
        if not self._is_async:
            result = self._fn(info)  # an exception reaches the loop's handler through the hub
            if inspect.isawaitable(result):  # a plain function that returned a coroutine
                self._track(result)
            return
        if self._tasks and self.policy != "concurrent":
            if self.policy == "serial":
                self._again = info
            return
        self._start(info)

    def _start(self, info: SigInfo) -> None:
        self._track(self._fn(info))

    def _track(self, awaitable: object) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(awaitable, loop=self._loop)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._loop.call_exception_handler(
                {
                    "message": f"aiosig handler {self._fn!r} failed",
                    "exception": task.exception(),
                    "task": task,
                }
            )
        again, self._again = self._again, None
        if again is not None and not self.removed:
            self._start(again)

    def remove(self) -> None:
        """Stop handling; cancel runs in progress. Idempotent."""
        self._sub.close()
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


def add_handler(signal: int, fn: HandlerFn, *, policy: Policy = "serial") -> HandlerHandle:
    """Run `fn(info)` for each delivery of `signal`, on the running loop.

    Args:
        signal: The signal.
        fn: A function or coroutine function taking a `SigInfo`.
        policy: ``"serial"``, ``"concurrent"`` or ``"drop"`` (see the module docs).

    Returns:
        The handle; ``handle.remove()`` unregisters it.

    Raises:
        RuntimeError: No running loop (from a coroutine, or use ``@aiosig.on`` at module
            level with `aiosig.run`).
    """
    return _add((signal,), fn, _check_policy(policy))


def _add(signals: tuple[int, ...], fn: HandlerFn, policy: Policy) -> HandlerHandle:
    if not callable(fn):
        raise TypeError(f"handler must be callable, not {type(fn).__name__}.")
    signums = frozenset(check_signal(s) for s in signals)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "add_handler() needs a running event loop: call it from a coroutine, or use "
            "@aiosig.on at module level and start the program with aiosig.run()."
        ) from None
    return HandlerHandle(signums, fn, policy, loop)


def on(*signals: int, policy: Policy = "serial") -> Callable[[F], F]:
    """Decorator form of `add_handler` for one or more signals.

    Inside a running loop it registers at once (the handle is ``fn.aiosig_handle``); at
    module level it records the handler for the next `aiosig.run`.
    """
    _check_policy(policy)
    signums = tuple(check_signal(s) for s in signals)
    if not signums:
        raise ValueError("on() needs at least one signal.")

    def decorate(fn: F) -> F:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            _pending.append((signums, fn, policy))
            return fn
        fn.aiosig_handle = _add(signums, fn, policy)  # type: ignore[attr-defined]
        return fn

    return decorate


def start_pending_handlers() -> list[HandlerHandle]:
    """Start the handlers ``@on`` recorded at module level, on the running loop."""
    pending = list(_pending)
    _pending.clear()
    return [_add(signums, fn, policy) for signums, fn, policy in pending]
