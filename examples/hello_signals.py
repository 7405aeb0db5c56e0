"""Receive SIGUSR1 and SIGHUP sent by another process, and see who sent them.

Run it with ``python examples/hello_signals.py`` (add ``--uvloop`` to run on uvloop). It opens
a receiver for both signals, starts a child that sends them, prints each delivery and exits 0
once both have arrived (1 after 10 s without them).

SIGUSR1 is blocked first, so on Linux it is read from a signalfd with its full siginfo: the
sender's pid and uid. SIGHUP is not blocked: it arrives plainly (the number only, no pid),
and its default action (terminate) is held off while the receiver is open; closing the
receiver restores exactly the disposition that was there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable

import aiosig

WANTED = (signal.SIGUSR1, signal.SIGHUP)

# Standard signals coalesce in the kernel, so two different ones are sent: each arrives once.
SENDER = """\
import os, signal, sys
for name in sys.argv[2:]:
    os.kill(int(sys.argv[1]), getattr(signal, name))
"""


def describe(info: aiosig.SigInfo) -> str:
    name = signal.Signals(info.si_signo).name
    if info.precise:
        return f"{name} from pid {info.si_pid} (uid {info.si_uid}), read from the kernel"
    return f"{name}, plain delivery (the sender is unknown)"


async def main() -> int:
    missing = set(WANTED)
    async with aiosig.open_signal_receiver(*WANTED) as receiver:
        print(f"pid {os.getpid()}: waiting for {', '.join(s.name for s in WANTED)}")
        # A child of a process that blocks signals inherits the mask; this one starts clean.
        sender = await aiosig.create_subprocess_exec(
            sys.executable, "-c", SENDER, str(os.getpid()), *(s.name for s in WANTED)
        )
        print(f"sender started as pid {sender.pid}")
        try:
            async with asyncio.timeout(10):
                async for info in receiver:
                    print(f"received {describe(info)}")
                    missing.discard(signal.Signals(info.si_signo))
                    if not missing:
                        break
                await sender.wait()
        except TimeoutError:
            print(f"timed out waiting for {', '.join(s.name for s in missing)}", file=sys.stderr)
            return 1
    print("done")
    return 0


if __name__ == "__main__":
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if "--uvloop" in sys.argv[1:]:
        import uvloop

        loop_factory = uvloop.new_event_loop
    # Block before any thread starts: threads inherit the mask.
    with aiosig.block(signal.SIGUSR1), asyncio.Runner(loop_factory=loop_factory) as runner:
        sys.exit(runner.run(main()))
