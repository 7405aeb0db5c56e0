"""``aiosig.run``: ``asyncio.run`` that starts the handlers ``@aiosig.on`` recorded.

Graceful shutdown (deadlines, escalation, exit status) will build on this entry point; for
now it is ``asyncio.Runner`` plus the module-level handlers, removed again when `main` ends.
Every run starts every recorded handler; if one fails to start, those already started are
removed, `main` is closed unrun, and the error propagates.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._handlers import HandlerHandle, start_recorded_handlers
from ._hub import get_hub

__all__ = ("run",)

T = TypeVar("T")


async def _with_recorded_handlers(main: Coroutine[Any, Any, T]) -> T:
    # uvloop takes the wakeup fd at the start of every run: take it back before anything
    # else, so that a burst arriving before the first delivery is counted (see _hub, Rule 3).
    get_hub().take_back()
    handles: list[HandlerHandle] = []
    try:
        for handle in start_recorded_handlers():
            handles.append(handle)
        return await main
    finally:
        if inspect.getcoroutinestate(main) == inspect.CORO_CREATED:
            main.close()  # never started: no "coroutine was never awaited" warning
        for handle in handles:
            handle.remove()
        for handle in handles:
            await handle.aclose()  # the runs that remove() cancelled have finished


def run(
    main: Coroutine[Any, Any, T],
    *,
    debug: bool | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run `main` like ``asyncio.run``, with the handlers ``@aiosig.on`` recorded at import.

    Args:
        main: The coroutine to run.
        debug: As for ``asyncio.run``.
        loop_factory: Makes the loop, as ``asyncio.Runner`` takes it (``uvloop.new_event_loop``).

    Returns:
        What `main` returns.

    Raises:
        RuntimeError: A recorded handler could not start (the hub refused its signal); the
            handlers started before it are removed again and `main` does not run.
    """
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
        return runner.run(_with_recorded_handlers(main))
