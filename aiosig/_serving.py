"""What every server adapter shares: a server's own serve loop as ``aiosig.run``'s ``main``.

Theory of operation
-------------------
Rule 1 (the server stops itself, when ``main`` is cancelled). uvicorn, hypercorn and aiohttp
each know how to stop gracefully: stop accepting, let requests in flight finish within a
timeout, run the application's shutdown (ASGI lifespan, ``on_shutdown``/``on_cleanup``).
Cancelling their serve coroutine would skip all of that. So `serve_until_cancelled` runs it
in a task of its own and awaits it through ``asyncio.shield``: when ``aiosig.run`` cancels
``main`` (at the request, or after the ``drain``), the adapter's ``stop(budget)`` asks the
server to stop by its own means, with the budget left for cancelled work as its timeout, and
``main`` waits for the server to finish before its cancellation goes on.

Rule 2 (the fast path hurries, the deadline ends it). If the second stop signal comes while
the server stops, ``hurry()`` asks it to stop at once (uvicorn's ``force_exit``; the others'
serve task is cancelled). Repeated cancellations of ``main`` meanwhile are absorbed; when the
budget for cancelled work is spent, the serve task is cancelled, and past that only the
deadline remains.

Rule 3 (``sys.exit`` in a server is carried, not thrown through the loop). asyncio re-raises
SystemExit and KeyboardInterrupt from any task straight out of ``run_forever``, which would
skip the shutdown; uvicorn calls ``sys.exit(3)`` when its startup fails. The serve task
carries them out as a value and ``main`` raises them again, where ``aiosig.run`` expects them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ._service import Carried, carrying
from ._shutdown import Shutdown, current_shutdown

__all__ = ("serve_until_cancelled", "server_missing")

STOP_MARGIN = 0.5  # seconds of the budget a server's own timeout leaves for its last steps


async def serve_until_cancelled(
    serving: Coroutine[Any, Any, None],
    *,
    stop: Callable[[float], object],
    hurry: Callable[[asyncio.Task[None]], object],
) -> None:
    """Run a server's serve coroutine until it ends; on cancellation, stop it its own way.

    Args:
        serving: The server's serve coroutine.
        stop: Asks the server to stop gracefully, given the seconds it may take.
        hurry: Asks it to stop now (the fast path), given its task.
    """
    shutdown = current_shutdown()
    task = asyncio.ensure_future(carrying(serving))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            stop(max(0.0, shutdown.work_left() - STOP_MARGIN))
            await _until_stopped(task, shutdown, hurry)
        raise
    except Carried as carried:
        raise carried.exc from None


async def _until_stopped(
    task: asyncio.Task[None],
    shutdown: Shutdown,
    hurry: Callable[[asyncio.Task[None]], object],
) -> None:
    hurried = False
    while not task.done():
        if shutdown.fast and not hurried:
            hurried = True
            hurry(task)
        left = shutdown.work_left()
        if left <= 0:
            task.cancel()
            await asyncio.wait({task}, timeout=max(0.0, shutdown.remaining() - STOP_MARGIN))
            return
        try:
            await shutdown.until({task}, time.monotonic() + left)
        except asyncio.CancelledError:
            continue  # cancelled again (the fast path): look at the step again
    if not task.cancelled() and task.exception() is not None:
        task.exception()  # retrieved: the shutdown's own cancellation is what propagates


def server_missing(module: str, extra: str) -> ImportError:
    """The one-sentence error for an adapter whose server is not installed."""
    return ImportError(
        f"aiosig.{extra} needs {module}, which is not installed: "
        f"pip install 'aiosig[{extra}]' (or pip install {module})."
    )
