"""Receive SIGUSR1 and SIGHUP in an asyncio program, sent by a separate process.

Run it with ``python examples/hello_signals.py`` (add ``--uvloop`` to run on uvloop). It
subscribes to both signals through aiosig's hub, starts a child that sends them, prints each
delivery as a `SigInfo`, and exits 0 once both have arrived (1 after 10 s without them).

SIGHUP's default action would kill the process; while the subscription is open the hub holds
the signal, and when it closes the previous disposition comes back exactly.

This uses the hub's subscription API, the foundation the public API (receivers, handlers,
awaitable waits, ``aiosig.run``) is being built on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable

from aiosig import SigInfo
from aiosig._hub import get_hub

WANTED = (signal.SIGUSR1, signal.SIGHUP)

# The child sends the signals one after the other. Standard signals coalesce in the kernel,
# so two different ones are used: each is delivered at least once.
SENDER = """\
import os, signal, sys
for name in sys.argv[2:]:
    os.kill(int(sys.argv[1]), getattr(signal, name))
"""


async def main() -> int:
    received: asyncio.Queue[SigInfo] = asyncio.Queue()
    missing: set[int] = set(WANTED)
    subscription = get_hub().subscribe(WANTED, received.put_nowait)
    try:
        print(f"pid {os.getpid()}: waiting for {', '.join(s.name for s in WANTED)}")
        sender = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SENDER, str(os.getpid()), *(s.name for s in WANTED)
        )
        async with asyncio.timeout(10):
            while missing:
                info = await received.get()
                print(f"received {info}")
                missing.discard(info.si_signo)
            await sender.wait()
    except TimeoutError:
        names = ", ".join(signal.Signals(s).name for s in sorted(missing))
        print(f"timed out waiting for {names}", file=sys.stderr)
        return 1
    finally:
        subscription.close()
    print("done")
    return 0


if __name__ == "__main__":
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if "--uvloop" in sys.argv[1:]:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        sys.exit(runner.run(main()))
