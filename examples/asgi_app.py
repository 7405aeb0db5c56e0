"""A pure ASGI application that drains on SIGTERM and reloads its settings on SIGHUP.

Served by ``serve_uvicorn.py``, ``serve_hypercorn.py`` and ``gunicorn.conf.py`` (the same
app under each server). What it shows:

- ``/healthz`` answers 200 while the service runs and 503 as soon as a shutdown is requested:
  with ``drain=`` the server keeps serving for that long while the load balancer (a
  Kubernetes readiness probe) sees the 503 and stops sending, then stops accepting.
- ``/`` answers with the current settings; `reload_settings` (the ``reload=`` of the runner,
  called on SIGHUP) reads them again from ``$GREETING`` or a file given in ``$SETTINGS``.
- the ASGI lifespan shutdown runs after the requests in flight have finished.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiosig

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

settings: dict[str, Any] = {}


def reload_settings() -> None:
    """Read the settings again (on SIGHUP); an error leaves the old ones in place."""
    path = os.environ.get("SETTINGS")
    if path:
        with open(path) as f:
            fresh = json.load(f)
    else:
        fresh = {"greeting": os.environ.get("GREETING", "hello")}
    settings.clear()
    settings.update(fresh)
    print(f"settings loaded: {settings}", flush=True)


def shutting_down() -> bool:
    try:
        return aiosig.current_shutdown().requested
    except RuntimeError:  # served without aiosig.run: never draining
        return False


async def respond(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                reload_settings()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("lifespan shutdown: closing connections to the database", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        if scope["path"] == "/healthz":
            if shutting_down():
                await respond(send, 503, "draining\n")
            else:
                await respond(send, 200, "ok\n")
        else:
            await respond(send, 200, f"{settings.get('greeting', '')}\n")
