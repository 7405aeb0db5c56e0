"""``asgi_app`` under hypercorn, stopped by aiosig: drain on SIGTERM, reload on SIGHUP.

Run it with ``python examples/serve_hypercorn.py --port 8000`` (``--drain 5``, ``--loop
uvloop``). ``kill -HUP <pid>`` reloads the settings; ``kill -TERM <pid>`` stops it as
``serve_uvicorn.py`` describes, with hypercorn's own graceful shutdown.
"""

from __future__ import annotations

import argparse

from asgi_app import app, reload_settings  # next to this file: on sys.path

import aiosig.hypercorn

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--drain", type=float, default=0.0)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    args = parser.parse_args()
    config = aiosig.hypercorn.Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.worker_class = args.loop
    aiosig.hypercorn.run(app, config, grace=20, drain=args.drain, reload=reload_settings)
