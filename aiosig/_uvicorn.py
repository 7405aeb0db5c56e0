"""uvicorn under ``aiosig.run``: aiosig owns the signals and the exit status, uvicorn serves.

Theory of operation
-------------------
Rule 1 (uvicorn's public hooks, not a copy of its code). ``uvicorn.Server.serve`` wraps the
server in ``capture_signals()``, which installs handlers for SIGINT and SIGTERM and, once
``serve`` returns, re-raises the signals it caught from inside ``serve``: the process dies
there, before any ``finally`` block or atexit handler of the application. `Server` replaces
that context manager with one that does nothing; everything else is uvicorn's.

Rule 2 (stop = ``should_exit``, hurry = ``force_exit``): the two flags uvicorn's own handler
sets. ``should_exit`` makes uvicorn stop accepting, close idle keep-alive connections, wait
for responses in flight (``timeout_graceful_shutdown``, set from the budget) and run the
lifespan shutdown; ``force_exit`` stops the waiting at once (see `_serving`).

Rule 3 (READY when listening): `Server.startup` calls ``notify_ready`` once uvicorn's own
startup (the lifespan startup, binding the sockets) has succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

from ._ending import ExitStatusMode
from ._run import notify_ready
from ._run import run as aiosig_run
from ._serving import serve_until_cancelled, server_missing

try:
    import uvicorn
except ImportError as exc:  # pragma: no cover - the test extra installs it
    raise server_missing("uvicorn", "uvicorn") from exc

__all__ = ("Server", "run", "serve", "serve_server")


class Server(uvicorn.Server):
    """``uvicorn.Server`` without signal handling of its own: ``aiosig.run`` stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # Rule 1

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            notify_ready("serving")


async def serve(app: Any = None, *, config: uvicorn.Config | None = None, **options: Any) -> None:
    """Serve `app` with uvicorn until ``aiosig.run``'s shutdown stops it gracefully.

    Use it as (or inside) the ``main`` of ``aiosig.run``. When ``main`` is cancelled (at the
    shutdown request, or after ``drain``), uvicorn stops accepting, finishes the responses in
    flight within what is left of the budget, and runs the lifespan shutdown.

    Args:
        app: The ASGI application, or its import string ("module:app").
        config: A ready ``uvicorn.Config`` instead of `app` and `options`.
        **options: ``uvicorn.Config`` arguments (host, port, log_level, ...).
    """
    if config is None:
        config = uvicorn.Config(app, **options)
    elif app is not None or options:
        raise TypeError("give either config or the app and its options, not both")
    await serve_server(Server(config))


async def serve_server(server: Server, sockets: list[socket.socket] | None = None) -> None:
    """Run `server` (Rule 2): stop with ``should_exit``, hurry with ``force_exit``."""

    def stop(budget: float) -> None:
        # A float works: uvicorn passes it to asyncio.wait_for (its annotation says int).
        server.config.timeout_graceful_shutdown = max(0.1, budget)  # type: ignore[assignment]
        server.should_exit = True

    def hurry(task: asyncio.Task[None]) -> None:
        server.force_exit = True

    await serve_until_cancelled(server.serve(sockets), stop=stop, hurry=hurry)


def run(
    app: Any,
    *,
    grace: float = 25.0,
    drain: float = 0.0,
    reload: Callable[[], object] | None = None,
    reopen_logs: bool = False,
    exit_status: ExitStatusMode = "signal",
    **options: Any,
) -> None:
    """``uvicorn.run``, stopped by ``aiosig.run``: one budget, escalation, the right exit.

    SIGTERM or Ctrl-C: uvicorn stops accepting, the requests in flight finish within `grace`
    (less `drain`, during which it still serves), the lifespan shutdown runs, and the process
    dies of the signal after its ``finally`` blocks and atexit handlers. A second signal
    stops waiting; a third ends the process.

    Args:
        app: The ASGI application, or its import string ("module:app").
        grace: As for ``aiosig.run``.
        drain: As for ``aiosig.run``.
        reload: Called on SIGHUP, as for ``aiosig.run`` (uvicorn's development
            autoreloader is not available here).
        reopen_logs: As for ``aiosig.run``.
        exit_status: As for ``aiosig.run``.
        **options: ``uvicorn.Config`` arguments: host, port, loop ("auto", "asyncio",
            "uvloop"), log_level, ...

    Raises:
        ValueError: Options that need uvicorn's supervisor process: ``workers`` > 1 (run
            several workers with gunicorn and ``aiosig.gunicorn.UvicornWorker``), or
            ``reload=True`` or ``reload_dirs`` (the development autoreloader).
    """
    if isinstance(reload, bool):
        raise ValueError(
            "reload is the function aiosig calls on SIGHUP; uvicorn's development autoreloader "
            "(reload=True) needs its own supervisor process: use the uvicorn command for it."
        )
    if options.get("workers", 1) not in (None, 1) or options.get("reload_dirs"):
        raise ValueError(
            "aiosig.uvicorn.run serves in this process only: for several workers run "
            "gunicorn with -k aiosig.gunicorn.UvicornWorker."
        )
    config = uvicorn.Config(app, **options)
    aiosig_run(
        serve(config=config),
        grace=grace,
        drain=drain,
        reload=reload,
        reopen_logs=reopen_logs,
        exit_status=exit_status,
        loop_factory=config.get_loop_factory(),
    )
