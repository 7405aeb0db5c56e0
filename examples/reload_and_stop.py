"""A service skeleton: reload on SIGHUP with a coroutine handler, stop on SIGTERM.

Run it with ``python examples/reload_and_stop.py`` (``--uvloop`` for uvloop). To keep the
example self-contained it signals itself: two SIGHUPs (reload) and then SIGTERM (stop); run
it with ``--wait`` to send them yourself (``kill -HUP <pid>``, ``kill -TERM <pid>``).

``@aiosig.on`` at module level records the handler; ``aiosig.run`` starts it on its loop.
The "serial" policy runs one reload at a time, and SIGHUPs that arrive during a reload
coalesce into one more reload.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiosig

config_generation = 0


@aiosig.on(signal.SIGHUP, policy="serial")
async def reload(info: aiosig.SigInfo) -> None:
    global config_generation
    await asyncio.sleep(0.05)  # read files, reconnect, ...
    config_generation += 1
    print(f"reloaded configuration (generation {config_generation})")


async def main() -> int:
    print(f"pid {os.getpid()}: SIGHUP reloads, SIGTERM stops")
    stop = asyncio.ensure_future(aiosig.sigwait({signal.SIGTERM}))
    await asyncio.sleep(0)  # the wait is registered from here on
    if "--wait" not in sys.argv[1:]:
        for signum in (signal.SIGHUP, signal.SIGHUP, signal.SIGTERM):
            os.kill(os.getpid(), signum)
            await asyncio.sleep(0.2)
    signum = await stop
    print(f"{signal.Signals(signum).name} received: stopping")
    return 0


if __name__ == "__main__":
    factory = None
    if "--uvloop" in sys.argv[1:]:
        import uvloop

        factory = uvloop.new_event_loop
    sys.exit(aiosig.run(main(), loop_factory=factory))
