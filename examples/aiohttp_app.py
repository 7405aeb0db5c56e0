"""An aiohttp application under aiosig: drain on SIGTERM, reload on SIGHUP.

Run it with ``python examples/aiohttp_app.py --port 8080`` (``--drain 5``, ``--uvloop``).
``/healthz`` answers 503 as soon as a shutdown is requested; ``kill -HUP <pid>`` reloads the
settings; ``kill -TERM <pid>`` stops it: after the drain the site stops accepting,
``on_shutdown`` runs, requests in flight finish, ``on_cleanup`` runs, and the process dies
of SIGTERM.
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web

import aiosig
import aiosig.aiohttp

SETTINGS = web.AppKey("settings", dict)


def make_app() -> web.Application:
    app = web.Application()
    app[SETTINGS] = {}

    def reload_settings() -> None:
        app[SETTINGS].clear()
        app[SETTINGS]["greeting"] = os.environ.get("GREETING", "hello")
        print(f"settings loaded: {app[SETTINGS]}", flush=True)

    async def on_startup(app: web.Application) -> None:
        reload_settings()

    async def on_cleanup(app: web.Application) -> None:
        print("cleanup: closing connections to the database", flush=True)

    async def healthz(request: web.Request) -> web.Response:
        if aiosig.current_shutdown().requested:
            return web.Response(status=503, text="draining\n")
        return web.Response(text="ok\n")

    async def root(request: web.Request) -> web.Response:
        return web.Response(text=f"{app[SETTINGS]['greeting']}\n")

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.add_routes([web.get("/", root), web.get("/healthz", healthz)])
    app["reload"] = reload_settings
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--drain", type=float, default=0.0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    factory = None
    if args.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    app = make_app()
    aiosig.aiohttp.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        grace=20,
        drain=args.drain,
        reload=app["reload"],
        loop_factory=factory,
    )
