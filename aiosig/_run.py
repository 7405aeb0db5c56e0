"""``aiosig.run``: ``asyncio.run`` that starts the handlers ``@aiosig.on`` recorded.

Graceful shutdown (deadlines, escalation, exit status) will build on this entry point; for
now it is ``asyncio.Runner`` plus the module-level handlers, removed again when `main` ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._handlers import start_pending_handlers

__all__ = ("run",)

T = TypeVar("T")


async def _with_pending_handlers(main: Coroutine[Any, Any, T]) -> T:
    handles = start_pending_handlers()
    try:
        return await main
    finally:
        for handle in handles:
            await handle.aclose()


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
    """
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
        return runner.run(_with_pending_handlers(main))
