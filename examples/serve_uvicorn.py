"""``asgi_app`` under uvicorn, stopped by aiosig: drain on SIGTERM, reload on SIGHUP.

Run it with ``python examples/serve_uvicorn.py --port 8000`` (``--drain 5`` for a 5 s
readiness drain, ``--loop asyncio`` or ``uvloop``). Then ``kill -HUP <pid>`` reloads the
settings and ``kill -TERM <pid>`` stops it: ``/healthz`` turns 503 at once, the server keeps
serving for the drain, stops accepting, finishes what is in flight, runs the lifespan
shutdown, and the process dies of SIGTERM, as its supervisor expects.
"""

from __future__ import annotations

import argparse

from asgi_app import app, reload_settings  # next to this file: on sys.path

import aiosig.uvicorn

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--drain", type=float, default=0.0)
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    args = parser.parse_args()
    aiosig.uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop=args.loop,
        grace=20,
        drain=args.drain,
        reload=reload_settings,
    )
