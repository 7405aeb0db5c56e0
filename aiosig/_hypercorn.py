"""hypercorn under ``aiosig.run``: its ``shutdown_trigger`` fed by aiosig's shutdown.

Theory of operation
-------------------
Rule 1 (hypercorn's public hook). ``hypercorn.asyncio.serve`` takes a ``shutdown_trigger``:
an awaitable factory that hypercorn awaits once it listens, and whose return starts its
graceful shutdown (stop accepting, wait ``graceful_timeout`` for connections, lifespan
shutdown). Given one, hypercorn installs no signal handler of its own. `serve` passes an
event that `_serving`'s stop sets, with ``graceful_timeout`` set from the budget first.

Rule 2 (READY when listening): hypercorn calls the trigger right after its servers started,
so the first call is where ``notify_ready`` goes.

Rule 3 (hurry): hypercorn has no "force" flag; on the fast path its serve task is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from ._ending import ExitStatusMode
from ._run import notify_ready
from ._run import run as aiosig_run
from ._serving import serve_until_cancelled, server_missing

try:
    import hypercorn.asyncio
    from hypercorn.config import Config
except ImportError as exc:  # pragma: no cover - the test extra installs it
    raise server_missing("hypercorn", "hypercorn") from exc

__all__ = ("Config", "run", "serve")


async def serve(
    app: Any, config: Config | None = None, *, mode: Literal["asgi", "wsgi"] | None = None
) -> None:
    """Serve `app` with hypercorn until ``aiosig.run``'s shutdown stops it gracefully.

    Use it as (or inside) the ``main`` of ``aiosig.run``. When ``main`` is cancelled (at the
    shutdown request, or after ``drain``), hypercorn stops accepting and gets what is left of
    the budget as its ``graceful_timeout``.

    Args:
        app: The ASGI (or WSGI) application.
        config: hypercorn's configuration (``bind``, ...); its defaults if None.
        mode: As for ``hypercorn.asyncio.serve``.
    """
    config = Config() if config is None else config
    stopping = asyncio.Event()

    async def shutdown_trigger() -> None:
        notify_ready("serving")  # Rule 2
        await stopping.wait()

    def stop(budget: float) -> None:
        config.graceful_timeout = max(0.1, budget)
        stopping.set()

    def hurry(task: asyncio.Task[None]) -> None:
        task.cancel()

    serving = hypercorn.asyncio.serve(app, config, shutdown_trigger=shutdown_trigger, mode=mode)
    await serve_until_cancelled(serving, stop=stop, hurry=hurry)


def run(
    app: Any,
    config: Config | None = None,
    *,
    grace: float = 25.0,
    drain: float = 0.0,
    reload: Callable[[], object] | None = None,
    reopen_logs: bool = False,
    exit_status: ExitStatusMode = "signal",
) -> None:
    """Run `app` with hypercorn under ``aiosig.run``: one budget, escalation, the right exit.

    Args:
        app: The ASGI (or WSGI) application.
        config: hypercorn's configuration; ``worker_class`` "uvloop" runs on uvloop.
        grace: As for ``aiosig.run``.
        drain: As for ``aiosig.run``.
        reload: Called on SIGHUP, as for ``aiosig.run``.
        reopen_logs: As for ``aiosig.run``.
        exit_status: As for ``aiosig.run``.

    Raises:
        ValueError: ``worker_class`` "trio", or ``workers`` > 1 (hypercorn's own supervisor).
    """
    config = Config() if config is None else config
    if config.worker_class not in ("asyncio", "uvloop"):
        raise ValueError(
            f"aiosig.hypercorn runs on asyncio or uvloop, not {config.worker_class!r}: set "
            "config.worker_class to 'asyncio' or 'uvloop'."
        )
    if config.workers != 1:
        raise ValueError(
            "aiosig.hypercorn.run serves in this process only: set config.workers = 1 and run "
            "one process per worker under your supervisor."
        )
    factory = None
    if config.worker_class == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    aiosig_run(
        serve(app, config),
        grace=grace,
        drain=drain,
        reload=reload,
        reopen_logs=reopen_logs,
        exit_status=exit_status,
        loop_factory=factory,
    )
