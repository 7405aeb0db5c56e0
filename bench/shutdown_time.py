"""How long an idle ``aiosig.run`` service takes to end after SIGTERM; how late a deadline is.

Run it with ``python bench/shutdown_time.py`` (``--runs N``). Each run starts a fresh
interpreter, waits for it to print READY, sends SIGTERM from this process and waits for the
exit status (``os.waitpid``), on asyncio and on uvloop; beside it, the same idle program under
``asyncio.run`` with ``loop.add_signal_handler(SIGTERM, main_task.cancel)``, the usual
hand-written alternative. The service reports the moment its loop read the signal and the
moment ``aiosig.run`` finished its shutdown, so the total splits into the shutdown itself and
the interpreter's exit.

For the deadline, a service whose ``main`` calls ``time.sleep(3600)`` gets SIGTERM with
``grace=0.5``: the time from the signal to the exit, less 0.5 s, is how late the deadline
thread ended the process.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IDLE = textwrap.dedent(
    """
    import asyncio, sys, time
    import aiosig
    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop

    @aiosig.on_shutdown
    def finished():
        print("finished", time.monotonic(), flush=True)

    async def main():
        print("READY", flush=True)
        await asyncio.sleep(3600)

    aiosig.run(main(), loop_factory=factory)
    """
)

HAND_WRITTEN = textwrap.dedent(
    """
    import asyncio, signal, sys, time
    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop

    async def main():
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        print("READY", flush=True)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("finished", time.monotonic(), flush=True)

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    """
)

WEDGED = textwrap.dedent(
    """
    import asyncio, sys, time
    import aiosig
    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop

    async def main():
        print("READY", flush=True)
        time.sleep(3600)

    aiosig.run(main(), grace=0.5, loop_factory=factory)
    """
)


def once(code: str, flavour: str) -> tuple[float, float, int]:
    """(seconds from SIGTERM to the exit status, to "finished" if printed, raw status)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, flavour],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    time.sleep(0.05)
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    _, status = os.waitpid(proc.pid, 0)
    ended = time.monotonic()
    proc.returncode = 0  # reaped above
    rest = proc.stdout.read().split()
    proc.stdout.close()
    finished = float(rest[1]) - sent if rest[:1] == ["finished"] else float("nan")
    return ended - sent, finished, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print("| program | loop | SIGTERM to shutdown finished | SIGTERM to exit | exit |")
    print("| --- | --- | --- | --- | --- |")
    for name, code in (("aiosig.run", IDLE), ("asyncio.run + add_signal_handler", HAND_WRITTEN)):
        for flavour in ("asyncio", "uvloop"):
            runs = [once(code, flavour) for _ in range(args.runs)]
            total = statistics.median(r[0] for r in runs) * 1000
            inner = statistics.median(r[1] for r in runs) * 1000
            how = runs[0][2]
            exit_ = f"death by {signal.Signals(how & 0x7F).name}" if how & 0x7F else f"{how >> 8}"
            print(f"| {name} | {flavour} | {inner:.2f} ms | {total:.1f} ms | {exit_} |")
    print()
    print("| loop | deadline 0.5 s: how late the process ended (median, max) |")
    print("| --- | --- |")
    for flavour in ("asyncio", "uvloop"):
        late = [(once(WEDGED, flavour)[0] - 0.5) * 1000 for _ in range(max(5, args.runs // 2))]
        print(f"| {flavour} | {statistics.median(late):.1f} ms, {max(late):.1f} ms |")


if __name__ == "__main__":
    main()
