"""Soak: a minute of mixed load on both loops at once, then nothing may have grown.

Each loop flavour runs in its own fresh interpreter, the two in parallel (the machine has two
cores), for ``AIOSIG_SOAK_SECONDS`` (default 60; it is part of the normal run, marked
``soak`` so that ``-m "not soak"`` leaves it out). Each one: a sender process sends
SIGUSR1 and two real-time signals (one plain, one blocked and read precisely) at a steady
rate, a receiver open throughout counts them (``tests/_load.Tally``: exact real-time
counts, precise sequence numbers in order), and ``tests/_load.Churn`` opens and closes
receivers, handlers and waits without pause. After a warm-up the churn is brought to rest
(everything it opened closed, ``gc.collect()``) and fds, threads, RSS, the interpreter's
allocated memory blocks and the objects the garbage collector tracks are measured; again at
the end. Fds and threads must be equal, RSS may grow by less than 5 MB and the allocated
blocks by less than 5,000 (a leak of one object per churn step would be tens of thousands).

Not tracemalloc: it slows the churn, and its own bookkeeping grew RSS by 3-4 MB a minute
while the heap it traced grew by 3-5 KB; without it, RSS grows by 0.1-0.4 MB in a minute.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import sys
import threading

import pytest

from tests._load import (
    Churn,
    Leaks,
    Sender,
    Tally,
    loop_factory,
    rss_kib,
    run_checked,
    warm_up,
)
from tests._util import finish, run_child

SOAK_SECONDS = float(os.environ.get("AIOSIG_SOAK_SECONDS", "60"))
WARM_UP = min(10.0, SOAK_SECONDS / 6)  # s of churn before the first measurement
MAX_RSS_GROWTH = 5 << 20  # bytes
MAX_BLOCKS_GROWTH = 5000
SEED = 6


def _measure() -> dict[str, int]:
    gc.collect()
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "blocks": sys.getallocatedblocks(),
        "objects": len(gc.get_objects()),
        "rss": rss_kib() << 10,
    }


async def _churn_for(churn: Churn, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await churn.step()
    await churn.close_all()  # at rest: what is left open is leaked


async def _soak(seconds: float) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda loop, context: reported.append(str(context)))
    tally = Tally()
    sender = Sender(SEED, burst_max=4, pause_max=0.004)  # about 1,200 signals a second
    churn = Churn(random.Random(SEED))
    await _churn_for(churn, WARM_UP)
    start = _measure()
    await _churn_for(churn, seconds - WARM_UP)
    end = _measure()
    sent = await sender.stop()
    problems = churn.problems + await tally.close(sent)
    problems += [f"reported to the loop: {context}" for context in reported[:5]]
    return {
        "sent": sent,
        "received": tally.report(),
        "churn": dict(churn.stats),
        "start": start,
        "end": end,
        "problems": problems,
    }


def soak_main() -> None:
    """The child's program (argv: flavour seconds): READY at once, a JSON report at the end."""
    flavour, seconds = sys.argv[1], float(sys.argv[2])
    factory = loop_factory(flavour)
    warm_up(factory)
    before = Leaks()
    print("READY")
    report = run_checked(factory, _soak(seconds), before)
    print(json.dumps(report))


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 120)
def test_a_minute_of_mixed_load_on_both_loops_loses_nothing_and_grows_nothing() -> None:
    code = "from tests.test_soak import soak_main; soak_main()"
    children = {f: run_child(code, f, str(SOAK_SECONDS)) for f in ("asyncio", "uvloop")}
    reports = {}
    for flavour, child in children.items():
        returncode, out, err = finish(child, timeout=SOAK_SECONDS + 60)
        assert returncode == 0 and out.strip(), f"{flavour}: {returncode}\n{out}\n{err}"
        assert "Traceback" not in err and "Exception ignored" not in err, err
        reports[flavour] = json.loads(out)
    for flavour, report in reports.items():
        start, end = report["start"], report["end"]
        growth = {k: end[k] - start[k] for k in start}
        print(flavour, json.dumps({**report, "growth": growth}))
        assert report["problems"] == [], (flavour, report)
        assert growth["fds"] == 0 and growth["threads"] == 0, (flavour, growth)
        assert growth["rss"] < MAX_RSS_GROWTH, (flavour, growth)
        assert growth["blocks"] < MAX_BLOCKS_GROWTH, (flavour, growth)
