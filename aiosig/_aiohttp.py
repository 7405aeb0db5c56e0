"""aiohttp under ``aiosig.run``: what ``web.run_app`` does, without its own signal handling.

Theory of operation
-------------------
Rule 1 (aiohttp's public runner API). ``web.AppRunner(app, handle_signals=False)`` with
sites, then ``runner.cleanup()``: site by site stop accepting, ``on_shutdown``, wait for
requests in flight up to ``shutdown_timeout``, ``on_cleanup``. That is ``web.run_app``'s
sequence; its SIGINT/SIGTERM handling (GracefulExit, exit 0) is left out: aiosig owns them.

Rule 2 (the timeout is fixed at construction). aiohttp reads ``shutdown_timeout`` from the
runner, which exists before any shutdown, so `serve_app` sets it from the budget a shutdown
would have: ``grace - drain``, less a margin for ``on_cleanup``. The deadline still bounds
everything; on the fast path the cleanup task is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ._ending import ExitStatusMode
from ._run import notify_ready
from ._run import run as aiosig_run
from ._serving import STOP_MARGIN, serve_until_cancelled, server_missing
from ._shutdown import current_shutdown

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - the test extra installs it
    raise server_missing("aiohttp", "aiohttp") from exc

__all__ = ("run_app", "serve_app")

logger = logging.getLogger("aiosig")


async def serve_app(
    app: web.Application,
    *,
    host: str | list[str] | None = None,
    port: int | None = None,
    path: str | None = None,
    shutdown_timeout: float | None = None,
    **runner_options: Any,
) -> None:
    """Serve an aiohttp `app` until ``aiosig.run``'s shutdown stops it gracefully.

    Use it as (or inside) the ``main`` of ``aiosig.run``. When ``main`` is cancelled (at the
    shutdown request, or after ``drain``), the sites stop accepting, ``on_shutdown`` runs,
    requests in flight get `shutdown_timeout` seconds, then ``on_cleanup`` runs.

    Args:
        app: The application.
        host: Host(s) to listen on (all interfaces if None and no `path`).
        port: TCP port (8080 if None, as ``web.run_app``).
        path: A Unix socket path to listen on instead of, or besides, TCP.
        shutdown_timeout: Seconds for requests in flight; by default the shutdown's budget
            less the drain, less a margin for ``on_cleanup``.
        **runner_options: ``web.AppRunner`` arguments (``access_log``, ...).
    """
    shutdown = current_shutdown()
    if shutdown_timeout is None:
        shutdown_timeout = max(0.1, (shutdown.grace - shutdown.drain) * 0.8 - STOP_MARGIN)
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=shutdown_timeout, **runner_options
    )
    await runner.setup()
    stopping = asyncio.Event()

    async def serving() -> None:
        try:
            sites: list[web.BaseSite] = []
            if path is not None:
                sites.append(web.UnixSite(runner, path))
            if host is not None or port is not None or path is None:
                hosts = host if isinstance(host, list) else [host]
                sites.extend(web.TCPSite(runner, h, port or 8080) for h in hosts)
            for site in sites:
                await site.start()
                logger.info("serving on %s", site.name)
            notify_ready("serving")
            await stopping.wait()
        finally:
            await runner.cleanup()

    def stop(budget: float) -> None:
        stopping.set()

    def hurry(task: asyncio.Task[None]) -> None:
        task.cancel()

    await serve_until_cancelled(serving(), stop=stop, hurry=hurry)


def run_app(
    app: web.Application,
    *,
    host: str | list[str] | None = None,
    port: int | None = None,
    path: str | None = None,
    grace: float = 25.0,
    drain: float = 0.0,
    reload: Callable[[], object] | None = None,
    reopen_logs: bool = False,
    exit_status: ExitStatusMode = "signal",
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    **runner_options: Any,
) -> None:
    """``web.run_app``, stopped by ``aiosig.run``: one budget, escalation, the right exit.

    Args:
        app: The application.
        host: Where to listen, as for ``web.run_app``.
        port: The TCP port, as for ``web.run_app``.
        path: A Unix socket path, as for ``web.run_app``.
        grace: As for ``aiosig.run``.
        drain: As for ``aiosig.run``.
        reload: Called on SIGHUP, as for ``aiosig.run``.
        reopen_logs: As for ``aiosig.run``.
        exit_status: As for ``aiosig.run``.
        loop_factory: As for ``aiosig.run``.
        **runner_options: ``web.AppRunner`` arguments (``access_log``, ...).
    """
    aiosig_run(
        serve_app(app, host=host, port=port, path=path, **runner_options),
        grace=grace,
        drain=drain,
        reload=reload,
        reopen_logs=reopen_logs,
        exit_status=exit_status,
        loop_factory=loop_factory,
    )
