"""A service that reloads its configuration on SIGHUP, under ``aiosig.run``.

Run it with ``python examples/reload_config.py settings.json`` (``--uvloop`` for uvloop).
``kill -HUP <pid>`` reloads the file; ``kill -TERM <pid>`` stops the service. With
``--demo`` it signals itself instead (two SIGHUPs, then SIGTERM), to show the whole cycle.

``reload=`` is what makes SIGHUP reload: without it SIGHUP keeps its default action and ends
the process, as it would without aiosig. Reloads run one at a time; a burst of SIGHUPs
coalesces into at most one more reload. A reload that fails (a syntax error in the file) is
logged, and the service goes on with the configuration it had. Under systemd
(``Type=notify-reload``) aiosig sends RELOADING=1 and READY=1 around each reload.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import signal
import tempfile
from typing import Any

import aiosig

log = logging.getLogger("reload_config")


class Service:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.config: dict[str, Any] = {}
        self.generation = 0

    def reload(self) -> None:
        config = json.loads(self.path.read_text())  # raises: logged, old config kept
        self.config = config
        self.generation += 1
        print(f"configuration generation {self.generation}: {config}", flush=True)

    async def run(self, demo: bool) -> None:
        self.reload()
        aiosig.notify_ready(f"configuration generation {self.generation}")
        print(f"pid {os.getpid()}: SIGHUP reloads {self.path}, SIGTERM stops", flush=True)
        if demo:
            for greeting in ("hello", "bonjour"):
                self.path.write_text(json.dumps({"greeting": greeting}))
                os.kill(os.getpid(), signal.SIGHUP)
                await asyncio.sleep(0.3)
            os.kill(os.getpid(), signal.SIGTERM)
        reason = await aiosig.current_shutdown().wait()
        print(f"stopping: {reason}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=pathlib.Path, nargs="?")
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.config is None and not args.demo:
        parser.error("give a configuration file, or --demo")
    factory = None
    if args.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with tempfile.TemporaryDirectory() as scratch:  # the demo's file, removed at the end
        path = args.config or pathlib.Path(scratch) / "settings.json"
        if args.config is None:
            path.write_text(json.dumps({"greeting": "hi"}))
        service = Service(path)
        aiosig.run(service.run(args.demo), reload=service.reload, loop_factory=factory)
