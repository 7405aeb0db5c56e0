"""Races: subscribers made and ended at random moments while another process sends signals.

Per loop flavour, in a fresh interpreter: a sender process (``tests/_load.py``) sends bursts
of SIGUSR1, a plain real-time signal and a blocked (precise) one carrying sequence numbers,
while a seeded ``random.Random`` opens and closes receivers (some tiny, some drained),
adds and removes handlers (some that remove themselves or close a receiver while running),
and starts and cancels ``sigwaitinfo``/``sigtimedwait``/``sigwait`` waits, a thousand steps.
A receiver open for the whole run must count every real-time signal exactly, see every
precise sequence number once and in order, and get a SIGUSR1 after the last one sent; at
the end nothing may be left: dispositions, the wakeup fd, the mask, fds, threads, and what
the hub holds are as before.

Timers are not raced yet: cancelling an alarm is left out on purpose, and alarms awaited to
expiry are ready in the churn but off (``tests/_load.ALARMS``, which says why).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

import pytest

from tests._load import Churn, Leaks, Sender, Tally, loop_factory, run_checked, warm_up
from tests._util import finish, run_child

FLAVOURS = ["asyncio", "uvloop"]
STEPS = 1000
SEED = 20240601


async def _race(seed: int, steps: int) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda loop, context: reported.append(str(context)))
    tally = Tally()
    sender = Sender(seed, burst_max=12, pause_max=0.004)
    churn = Churn(random.Random(seed))
    for _ in range(steps):
        await churn.step()
    sent = await sender.stop()
    await churn.close_all()
    problems = churn.problems + await tally.close(sent)
    problems += [f"reported to the loop: {context}" for context in reported]
    return {
        "sent": sent,
        "received": tally.report(),
        "churn": dict(churn.stats),
        "problems": problems,
    }


def race_main() -> None:
    """The child's program (argv: flavour seed steps): print a JSON report, then READY."""
    flavour, seed, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    factory = loop_factory(flavour)
    warm_up(factory)
    before = Leaks()
    report = run_checked(factory, _race(seed, steps), before)
    print(json.dumps(report))
    print("READY")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_random_subscribe_close_and_cancel_lose_no_delivery_and_leave_nothing(
    flavour: str,
) -> None:
    child = run_child(
        "from tests.test_races import race_main; race_main()",
        flavour,
        str(SEED),
        str(STEPS),
        timeout=50,
    )
    returncode, _, err = finish(child)
    report = json.loads(child.before_ready)
    print(flavour, json.dumps(report, indent=1))
    assert report["problems"] == [], report
    assert report["churn"]["steps"] == STEPS
    assert returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
