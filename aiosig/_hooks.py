"""Shutdown hooks: run last-registered-first, each within its own timeout and the budget.

Theory of operation
-------------------
Rule 1 (LIFO, like ``atexit`` and ``contextlib.ExitStack``): what was set up last depends on
what was set up first, so it is torn down first. Hooks recorded at import (``@on_shutdown`` at
module level, kept for every ``aiosig.run``) come before those registered while the run runs.

Rule 2 (isolated). A hook that raises or times out is reported (the exception with its
traceback on the ``aiosig`` logger) and the next hook runs: one broken hook must not keep a
database connection from being closed. At the end one line lists every hook's outcome.

Rule 3 (bounded twice). A hook gets its own ``timeout`` but never more than what is left of
the budget (minus what the end of the shutdown keeps for child processes). A coroutine is
cancelled when its time is up. A plain function runs in the loop's thread, where it ran
everything else (no surprise about thread safety), so it cannot be interrupted: only the
deadline bounds it.

Rule 4 (the fast path): after a second stop signal only hooks marked ``critical`` run; a
non-critical hook running at that moment is cancelled.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from ._shutdown import Shutdown, active

__all__ = ("HookOutcome", "ShutdownHook", "on_shutdown", "recorded_hooks", "run_hooks")

F = TypeVar("F", bound=Callable[..., object])
logger = logging.getLogger("aiosig")
DEFAULT_HOOK_TIMEOUT = 5.0


@dataclass(frozen=True)
class ShutdownHook:
    """A function or coroutine function run at shutdown, with no arguments."""

    fn: Callable[[], object]
    timeout: float
    critical: bool

    @property
    def name(self) -> str:
        return str(getattr(self.fn, "__qualname__", None) or repr(self.fn))


@dataclass(frozen=True)
class HookOutcome:
    """What a hook did: "ok", "raised", "timed out" or "skipped" (the fast path)."""

    hook: ShutdownHook
    result: Literal["ok", "raised", "timed out", "skipped"]
    seconds: float
    error: BaseException | None = None

    def describe(self) -> str:
        if self.result == "raised":
            return f"{self.hook.name} raised {self.error!r}"
        if self.result == "timed out":
            return f"{self.hook.name} timed out after {self.seconds:.3f} s"
        if self.result == "skipped":
            return f"{self.hook.name} skipped (fast shutdown, not critical)"
        return f"{self.hook.name} ok in {self.seconds:.3f} s"


_recorded: list[ShutdownHook] = []


def recorded_hooks() -> list[ShutdownHook]:
    """The hooks recorded at module level, oldest first (every ``aiosig.run`` runs them)."""
    return list(_recorded)


@overload
def on_shutdown(fn: F, /, *, timeout: float = ..., critical: bool = ...) -> F: ...
@overload
def on_shutdown(
    fn: None = None, /, *, timeout: float = ..., critical: bool = ...
) -> Callable[[F], F]: ...
def on_shutdown(
    fn: F | None = None,
    /,
    *,
    timeout: float = DEFAULT_HOOK_TIMEOUT,
    critical: bool = False,
) -> F | Callable[[F], F]:
    """Run `fn()` when ``aiosig.run`` shuts down, after ``main`` and the other tasks ended.

    Use it as ``@aiosig.on_shutdown``, ``@aiosig.on_shutdown(timeout=2, critical=True)`` or
    ``aiosig.on_shutdown(pool.close)``. During a run it registers for that run; outside one
    (at module level) it records the hook for every later ``aiosig.run``. Hooks run
    last-registered-first; a hook's exception or timeout is reported and the others still run.

    Args:
        fn: A function or coroutine function taking no arguments.
        timeout: Seconds the hook may take (a coroutine is cancelled after that); never more
            than what is left of the shutdown's budget.
        critical: Run it on the fast path too (after a second stop signal).

    Returns:
        `fn`, unchanged (or a decorator, without `fn`).

    Raises:
        TypeError: `fn` is not callable, or `timeout` is not a number.
        ValueError: `timeout` is not positive.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not timeout > 0:  # NaN too
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")

    def register(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"a shutdown hook must be callable, not {type(fn).__name__}")
        hook = ShutdownHook(fn, float(timeout), bool(critical))
        shutdown = active()
        if shutdown is None:
            _recorded.append(hook)
        else:
            shutdown.hooks.append(hook)
        return fn

    return register if fn is None else register(fn)


async def run_hooks(hooks: list[ShutdownHook], shutdown: Shutdown, reserve: float) -> None:
    """Run `hooks` last-first (Rules 1-4), keeping `reserve` seconds of the budget back."""
    if not hooks:
        return
    outcomes = []
    for hook in reversed(hooks):
        if shutdown.fast and not hook.critical:
            outcomes.append(HookOutcome(hook, "skipped", 0.0))
            continue
        budget = min(hook.timeout, shutdown.remaining() - reserve)
        outcomes.append(await _run_one(hook, shutdown, max(budget, 0.0), reserve))
    failed = [o for o in outcomes if o.result in ("raised", "timed out")]
    log = logger.warning if failed else logger.info
    log("shutdown hooks: %s", "; ".join(o.describe() for o in outcomes))


async def _run_one(
    hook: ShutdownHook, shutdown: Shutdown, budget: float, reserve: float
) -> HookOutcome:
    start = time.monotonic()
    try:
        # CancelledError too: a hook that awaits something cancelled in the step before
        # (a task it shared with them) fails like any other hook (Rule 2).
        try:
            result = hook.fn()
        except asyncio.CancelledError as exc:
            return _raised(hook, start, exc)
        if not inspect.isawaitable(result):
            return HookOutcome(hook, "ok", time.monotonic() - start)
        task: asyncio.Future[Any] = asyncio.ensure_future(result)
        if not await _wait(task, hook, shutdown, start + budget, reserve):
            task.cancel()
            await asyncio.wait({task}, timeout=max(0.0, min(1.0, shutdown.remaining())))
            if shutdown.fast and not hook.critical and time.monotonic() < start + budget:
                return HookOutcome(hook, "skipped", time.monotonic() - start)
            return HookOutcome(hook, "timed out", time.monotonic() - start)
        if task.cancelled():
            return _raised(hook, start, asyncio.CancelledError())
        task.result()
    except Exception as exc:
        return _raised(hook, start, exc)
    return HookOutcome(hook, "ok", time.monotonic() - start)


def _raised(hook: ShutdownHook, start: float, exc: BaseException) -> HookOutcome:
    logger.error("shutdown hook %s raised", hook.name, exc_info=exc)
    return HookOutcome(hook, "raised", time.monotonic() - start, exc)


async def _wait(
    task: asyncio.Future[Any], hook: ShutdownHook, shutdown: Shutdown, until: float, reserve: float
) -> bool:
    """Wait for the hook until `until`; on the fast path, a critical one until the new end."""
    while not await shutdown.until({task}, until):
        if time.monotonic() >= until or not hook.critical:
            return False
        # The fast path began (Rule 4): the deadline moved forward, and with it the end.
        until = min(until, time.monotonic() + max(0.0, shutdown.remaining() - reserve))
    return True
