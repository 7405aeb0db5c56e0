"""Loops stopped and closed without shutting down, while aiosig waits are still pending.

The tasks of such a loop are abandoned: the garbage collector finalizes their coroutines in
an order of its own. On CPython 3.10 and 3.11 that crashed (a segfault in ``gen_close``)
when a wait's timeout kept the last reference to its task (see ``aiosig._waits``, Rule 3).
Each run is a fresh interpreter: a crash must not take the test session with it.
"""

from __future__ import annotations

import pytest

from tests._util import finish, run_child

# The reproduction from issue 6: it crashed 10 runs out of 10, within about 30 to 110 loops.
CHURN = """
import asyncio, signal, sys
import aiosig

if sys.argv[2] == "blocked":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
if sys.argv[1] == "uvloop":
    import uvloop
    new_loop = uvloop.new_event_loop
else:
    new_loop = asyncio.new_event_loop

async def churn():
    while True:
        await aiosig.sigtimedwait({signal.SIGUSR1}, 0)

print("READY")
for _ in range(300):
    loop = new_loop()
    loop.create_task(churn())
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    loop.close()
print("done")
"""

RUNS = 3


@pytest.mark.parametrize("mask", ["unblocked", "blocked"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_loops_closed_with_pending_sigtimedwait_are_collected_without_crashing(
    loop: str, mask: str
) -> None:
    for run in range(RUNS):
        returncode, out, err = finish(run_child(CHURN, loop, mask))
        assert "Fatal Python error" not in err, f"run {run}:\n{err[-3000:]}"
        assert returncode == 0 and out.strip() == "done", f"run {run} ({returncode}):\n{err}"
        # Abandoned tasks are reported as such (the loop's business), and nothing else.
        assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
