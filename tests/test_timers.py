"""Timers: alarm futures, interval timers, and the user's own timer as a virtual timer.

Real kernel timers and real SIGALRM/SIGVTALRM/SIGPROF deliveries, on asyncio and uvloop. A
test that lets the user's own timer end the process runs in a child interpreter.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import random
import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aiosig
from aiosig import _itimers
from aiosig._dropin import signal as core_signal
from aiosig._hub import get_hub
from aiosig._siginfo import SigInfo
from aiosig._timers import (
    Tick,
    alarm,
    core_alarm,
    core_getitimer,
    core_setitimer,
    setitimer,
)
from tests._util import finish, run_child, until

TIMEOUT = 10.0
ITIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)
TIMER_SIGNALS = (signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF)
SI_KERNEL = 0x80  # Linux: the si_code of a signal the kernel raised (an itimer's expiry)


@pytest.fixture(autouse=True)
def itimers_left_clear() -> Iterator[None]:
    """Fail a test that leaves a kernel itimer armed or a scheduler active."""
    yield
    left = {which: signal.getitimer(which) for which in ITIMERS}
    active = [which for which, s in _itimers.schedulers().items() if s.active]
    for which in ITIMERS:
        signal.setitimer(which, 0)
    armed = {which: value for which, value in left.items() if value != (0.0, 0.0)}
    if armed or active:
        pytest.fail(f"the test left itimers armed {armed} / schedulers active {active}")


@pytest.fixture(autouse=True)
def timer_signals_ignored() -> Iterator[None]:
    """A user timer that a failing test leaves behind must not kill pytest (SIG_DFL would)."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in TIMER_SIGNALS}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


class LoopErrors:
    """Records what reaches the running loop's exception handler."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, ctx: self.contexts.append(ctx)
        )


def assert_idle() -> None:
    assert not _itimers.schedulers()[signal.ITIMER_REAL].active
    assert not get_hub().holds(signal.SIGALRM)


async def settled(which: int = signal.ITIMER_REAL) -> None:
    """Wait for the scheduler to go idle after its last timer went while it was ticking: an
    expiry already on its way keeps it until it arrives (a loop turn or three)."""
    await until(lambda: not _itimers.schedulers()[which].active)


# ---- alarm futures ------------------------------------------------------------------------


def record_resolution(
    resolved: list[tuple[float, float]], deadline: float, future: asyncio.Future[SigInfo]
) -> None:
    if not future.cancelled():
        resolved.append((deadline, time.monotonic()))


@pytest.mark.asyncio
async def test_hundred_alarms_resolve_in_deadline_order_and_cancelled_ones_never_resolve() -> None:
    errors = LoopErrors()
    rng = random.Random(20240607)
    resolved: list[tuple[float, float]] = []
    futures: list[tuple[float, asyncio.Future[SigInfo]]] = []
    # Distinct delays 2.8 ms apart: the order the test expects cannot hinge on the few µs
    # between its clock reading and the alarm's own.
    delays = [0.01 + 0.0028 * i for i in range(100)]
    rng.shuffle(delays)
    for delay in delays:
        deadline = time.monotonic() + delay  # a lower bound for the alarm's own deadline
        future = alarm(delay)
        future.add_done_callback(functools.partial(record_resolution, resolved, deadline))
        futures.append((deadline, future))
    cancelled = [f for _, f in futures[::3]]
    for future in cancelled:
        assert future.cancel()
    kept = [(d, f) for i, (d, f) in enumerate(futures) if i % 3]
    results = await asyncio.wait_for(asyncio.gather(*(f for _, f in kept)), TIMEOUT)
    assert all(info.si_signo == signal.SIGALRM for info in results)
    assert [d for d, _ in resolved] == sorted(d for d, _ in kept)
    assert all(resolved_at >= deadline for deadline, resolved_at in resolved)  # never early
    assert all(f.cancelled() for f in cancelled)
    assert errors.contexts == []  # nothing tried to resolve a cancelled future
    assert_idle()


@pytest.mark.asyncio
async def test_alarm_resolves_no_earlier_than_its_deadline() -> None:
    start = time.monotonic()
    info = await asyncio.wait_for(alarm(0.05), TIMEOUT)
    assert time.monotonic() - start >= 0.05
    assert info == SigInfo(signal.SIGALRM)


@pytest.mark.asyncio
async def test_alarm_zero_is_due_at_once_but_resolves_on_a_real_sigalrm() -> None:
    future = alarm(0)
    assert not future.done()
    assert (await asyncio.wait_for(future, TIMEOUT)).si_signo == signal.SIGALRM
    assert_idle()


@pytest.mark.asyncio
async def test_cancelling_the_last_alarm_gives_itimer_real_back_at_once() -> None:
    future = alarm(30)
    assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
    assert get_hub().holds(signal.SIGALRM)
    future.cancel()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert_idle()


@pytest.mark.asyncio
async def test_an_alarm_awaited_with_a_timeout_is_disarmed_when_the_wait_times_out() -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(alarm(30), 0.05)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert_idle()


@pytest.mark.asyncio
async def test_an_alarm_on_a_loop_in_another_thread_resolves_on_that_loop() -> None:
    main_alarm = alarm(30)  # the main thread's loop holds SIGALRM, as the hub requires

    async def in_thread() -> tuple[int, bool]:
        future = alarm(0.05)
        info = await asyncio.wait_for(future, TIMEOUT)
        return info.si_signo, future.get_loop() is asyncio.get_running_loop()

    # The thread blocks every signal, so its loop reads SIGALRM from a signalfd too: the
    # expiry arrives by whichever path takes it first (both resolve the alarm).
    results: list[tuple[int, bool]] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(in_thread())))
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    await asyncio.to_thread(thread.join, TIMEOUT)
    assert results == [(signal.SIGALRM, True)]
    assert not main_alarm.done()
    main_alarm.cancel()
    assert_idle()


@pytest.mark.asyncio
async def test_cancelled_alarms_do_not_pile_up_while_another_keeps_the_scheduler_busy() -> None:
    keep = alarm(60)
    for _ in range(1000):
        alarm(3600).cancel()
    assert len(_itimers.schedulers()[signal.ITIMER_REAL]._heap) < 200
    keep.cancel()
    assert_idle()


def test_alarms_left_pending_on_a_closed_loop_are_dropped(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    loop = loop_factory()
    try:

        async def leave_pending() -> asyncio.Future[SigInfo]:
            return alarm(30)

        future = loop.run_until_complete(leave_pending())
        assert not future.done()
    finally:
        loop.close()
    # The next entry point notices: the user's view is the kernel's again.
    assert core_getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert_idle()


# ---- the user's own timer while aiosig timers are pending --------------------------------


@pytest.mark.asyncio
async def test_core_getitimer_reports_the_users_own_timer_while_alarms_are_pending() -> None:
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, 5.0, 2.0)
    try:
        future = alarm(0.2)
        kernel_value, _ = signal.getitimer(signal.ITIMER_REAL)
        assert kernel_value <= 0.2  # the kernel timer serves the alarm...
        value, interval = core_getitimer(signal.ITIMER_REAL)  # ...the user sees theirs
        assert 5.0 - (time.monotonic() - start) - 0.05 <= value <= 5.0
        assert interval == 2.0
        await asyncio.wait_for(future, TIMEOUT)
        assert_idle()
        value, interval = signal.getitimer(signal.ITIMER_REAL)  # back in the kernel
        assert 5.0 - (time.monotonic() - start) - 0.05 <= value <= 5.0 - 0.2
        assert interval == 2.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


@pytest.mark.asyncio
async def test_core_alarm_and_setitimer_change_only_the_virtual_timer_while_alarms_pend() -> None:
    future = alarm(30)
    try:
        assert core_alarm(100) == 0
        assert core_getitimer(signal.ITIMER_REAL)[0] == pytest.approx(100, abs=0.5)
        assert signal.getitimer(signal.ITIMER_REAL)[0] <= 30  # ours still arms the kernel
        old = core_setitimer(signal.ITIMER_REAL, 2.6, 0.5)
        assert old[0] == pytest.approx(100, abs=0.5) and old[1] == 0.0
        assert core_getitimer(signal.ITIMER_REAL)[1] == 0.5
        assert core_alarm(0) == 3  # alarm(2) rounds to the nearest second
        assert core_getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        core_setitimer(signal.ITIMER_REAL, 2.4)
        assert core_alarm(0) == 2
        core_setitimer(signal.ITIMER_REAL, 0.3)
        assert core_alarm(0) == 1  # under a second, but pending: never 0
        assert core_alarm(-1) == 0  # an unsigned int, as the stdlib passes it on
        assert core_getitimer(signal.ITIMER_REAL)[0] == pytest.approx(2**32 - 1, abs=1)
        core_alarm(0)
    finally:
        future.cancel()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_core_alarm_rounds_as_the_kernel_does_when_aiosig_is_idle() -> None:
    for value, expected in ((2.6, 3), (2.4, 2), (0.3, 1)):
        signal.setitimer(signal.ITIMER_REAL, value)
        assert signal.alarm(0) == expected  # the kernel's rounding, which the test above uses
        signal.setitimer(signal.ITIMER_REAL, value)
        assert core_alarm(0) == expected


@pytest.mark.asyncio
async def test_users_python_handler_runs_when_their_virtual_timer_expires() -> None:
    calls: list[tuple[int, object]] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: calls.append((signum, frame)))
    future = alarm(30)
    try:
        core_setitimer(signal.ITIMER_REAL, 0.05)
        await until(lambda: len(calls) == 1)
        assert calls == [(signal.SIGALRM, None)]
        assert not future.done()
        assert core_getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        future.cancel()
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.asyncio
async def test_users_periodic_virtual_timer_keeps_firing_and_ignored_one_does_nothing() -> None:
    calls: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
    future = alarm(30)
    try:
        core_setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        await until(lambda: len(calls) >= 3)
        core_signal(signal.SIGALRM, signal.SIG_IGN)
        seen = len(calls)
        await asyncio.sleep(0.1)
        assert len(calls) == seen
    finally:
        core_setitimer(signal.ITIMER_REAL, 0)
        future.cancel()
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
@pytest.mark.parametrize("blocked", [False, True], ids=["free_loop", "blocked_loop"])
def test_users_alarm_under_sig_dfl_kills_the_process_while_alarms_pend(
    loop_name: str, blocked: bool
) -> None:
    code = textwrap.dedent(
        """
        import asyncio, signal, sys, time, uvloop
        from aiosig._timers import alarm, core_alarm, core_getitimer

        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # SIG_IGN is inherited through exec

        async def main():
            pending = [alarm(30), alarm(40)]
            assert core_alarm(1) == 0
            assert 0.5 < core_getitimer(signal.ITIMER_REAL)[0] <= 1.0
            print("READY", flush=True)
            if sys.argv[2] == "blocked":
                time.sleep(20)  # the loop never gets to run: the trampoline must act
            await asyncio.wait_for(asyncio.gather(*pending), 20)
            print("SURVIVED", flush=True)

        (uvloop.run if sys.argv[1] == "uvloop" else asyncio.run)(main())
        """
    )
    child = run_child(code, loop_name, "blocked" if blocked else "free")
    returncode, out, err = finish(child, timeout=15)
    assert returncode == -signal.SIGALRM, (out, err)
    assert "SURVIVED" not in out


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_users_alarm_runs_their_python_handler_while_alarms_pend(loop_name: str) -> None:
    code = textwrap.dedent(
        """
        import asyncio, signal, sys, uvloop
        from aiosig._dropin import signal as core_signal
        from aiosig._timers import alarm, core_alarm

        calls = []
        signal.signal(signal.SIGALRM, lambda s, f: calls.append(("before", int(s), f)))

        async def main():
            pending = alarm(30)
            core_alarm(1)
            print("READY", flush=True)
            async with asyncio.timeout(10):
                while not calls:
                    await asyncio.sleep(0.01)
            # A handler set through aiosig.core while the hub holds SIGALRM works too.
            core_signal(signal.SIGALRM, lambda s, f: calls.append(("after", int(s), f)))
            core_alarm(1)
            async with asyncio.timeout(10):
                while len(calls) < 2:
                    await asyncio.sleep(0.01)
            print(calls, pending.done(), flush=True)
            pending.cancel()

        (uvloop.run if sys.argv[1] == "uvloop" else asyncio.run)(main())
        print("ITIMER", signal.getitimer(signal.ITIMER_REAL), flush=True)
        """
    )
    child = run_child(code, loop_name)
    returncode, out, err = finish(child, timeout=15)
    assert returncode == 0, (out, err)
    assert "[('before', 14, None), ('after', 14, None)] False" in out
    assert "ITIMER (0.0, 0.0)" in out


# ---- interval timers ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_itimer_iteration_yields_ticks_and_counts_missed_when_the_consumer_is_slow() -> None:
    ticks: list[Tick] = []
    async with setitimer(signal.ITIMER_REAL, 0.03, 0.03) as timer:
        async with asyncio.timeout(TIMEOUT):
            async for tick in timer:
                ticks.append(tick)
                if len(ticks) == 2:
                    await asyncio.sleep(0.3)  # about 10 intervals
                if len(ticks) == 4:
                    break
    assert all(t.info.si_signo == signal.SIGALRM for t in ticks)
    assert ticks[2].missed >= 5
    await settled()
    assert_idle()


@pytest.mark.asyncio
async def test_itimer_aclose_gives_the_users_previous_timer_back() -> None:
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, 5.0, 2.0)
    try:
        timer = setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        for _ in range(3):
            await asyncio.wait_for(timer, TIMEOUT)
        await timer.aclose()
        await timer.aclose()  # idempotent
        await settled()
        assert_idle()
        value, interval = signal.getitimer(signal.ITIMER_REAL)
        # It kept running meanwhile, as it would have without aiosig.
        assert 5.0 - (time.monotonic() - start) - 0.05 <= value <= 5.0 - 0.06
        assert interval == 2.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


@pytest.mark.asyncio
async def test_one_shot_itimer_is_awaitable_and_its_iteration_ends_after_one_tick() -> None:
    timer = setitimer(signal.ITIMER_REAL, 0.02)
    tick = await asyncio.wait_for(timer, TIMEOUT)
    assert tick == Tick(SigInfo(signal.SIGALRM), 0)
    assert_idle()
    async with asyncio.timeout(TIMEOUT):
        assert [t async for t in timer] == []
    with pytest.raises(RuntimeError, match="expired"):
        await timer


@pytest.mark.asyncio
async def test_closing_an_itimer_ends_a_consumer_waiting_on_it() -> None:
    timer = setitimer(signal.ITIMER_REAL, 30, 1)

    async def consume() -> list[Tick]:
        return [t async for t in timer]

    consumer = asyncio.ensure_future(consume())
    await asyncio.sleep(0.01)
    await timer.aclose()
    assert await asyncio.wait_for(consumer, TIMEOUT) == []
    assert_idle()


@pytest.mark.asyncio
async def test_a_dropped_itimer_leaves_at_its_next_expiry() -> None:
    timer = setitimer(signal.ITIMER_REAL, 0.02, 0.02)
    del timer
    gc.collect()
    await until(lambda: not _itimers.schedulers()[signal.ITIMER_REAL].active)
    assert_idle()


@pytest.mark.asyncio
async def test_itimers_and_alarms_share_itimer_real() -> None:
    async with setitimer(signal.ITIMER_REAL, 0.01, 0.01) as timer:
        alarms = [alarm(0.05), alarm(0.1)]
        ticks = 0
        async with asyncio.timeout(TIMEOUT):
            async for _ in timer:
                ticks += 1
                if all(a.done() for a in alarms):
                    break
        assert ticks >= 2
    await settled()
    assert_idle()


async def _burn_cpu(stop: asyncio.Event) -> None:
    """Spin in short slices so that the loop stays free to take the ticks."""
    while not stop.is_set():
        end = time.process_time() + 0.005
        while time.process_time() < end:
            pass
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("which", "signum", "clock"),
    [
        (signal.ITIMER_PROF, signal.SIGPROF, time.process_time),
        (signal.ITIMER_VIRTUAL, signal.SIGVTALRM, _itimers._user_cpu_time),
    ],
    ids=["prof", "virtual"],
)
@pytest.mark.asyncio
async def test_cpu_itimer_ticks_while_burning_cpu(
    which: int, signum: int, clock: Callable[[], float]
) -> None:
    stop = asyncio.Event()
    burner = asyncio.ensure_future(_burn_cpu(stop))
    start = clock()
    try:
        async with setitimer(which, 0.03, 0.03) as timer:
            ticks = [await asyncio.wait_for(timer, TIMEOUT) for _ in range(3)]
    finally:
        stop.set()
        await burner
    assert all(t.info.si_signo == signum for t in ticks)
    assert clock() - start >= 0.03 * 3 - _itimers._TOLERANCE_CPU * 3
    await settled(which)
    assert signal.getitimer(which) == (0.0, 0.0)


@pytest.mark.asyncio
async def test_users_cpu_timer_is_virtual_too_while_an_aiosig_one_runs() -> None:
    signal.setitimer(signal.ITIMER_PROF, 50.0)
    try:
        async with setitimer(signal.ITIMER_PROF, 30):
            assert core_getitimer(signal.ITIMER_PROF)[0] == pytest.approx(50.0, abs=0.5)
            assert core_setitimer(signal.ITIMER_PROF, 60.0)[0] == pytest.approx(50.0, abs=0.5)
            assert signal.getitimer(signal.ITIMER_PROF)[0] <= 30.1  # rounded up to a tick
        assert signal.getitimer(signal.ITIMER_PROF)[0] == pytest.approx(60.0, abs=0.5)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


# ---- the stdlib's signatures, results and errors ------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (core_alarm, signal.alarm),
        (core_setitimer, signal.setitimer),
        (core_getitimer, signal.getitimer),
        (setitimer, signal.setitimer),
    ],
    ids=["core_alarm", "core_setitimer", "core_getitimer", "setitimer"],
)
def test_signatures_are_the_stdlibs(ours: Callable[..., Any], theirs: Callable[..., Any]) -> None:
    def shape(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert shape(ours) == shape(theirs)


class Index:
    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


class FloatSub(float):
    pass


BAD_SETITIMER_ARGS: list[tuple[Any, ...]] = [
    (5, 1.0),
    (-1, 1.0),
    (2**31, 1.0),
    (-(2**31) - 1, 1.0),
    (0.0, 1.0),
    ("0", 1.0),
    (None, 1.0),
    (0, -1),
    (0, -1e-6),
    (0, FloatSub(-0.5)),
    (0, 1.0, -0.001),
    (0, "1"),
    (0, None),
    (0, 1.0, "x"),
    (0, float("nan")),
    (0, 1.0, float("nan")),
    (0, float("inf")),
    (0, float("-inf")),
    (0, 1e300),
    (0, 2**63),
    (0, 9223372037),
    (0, -9223372037),
    (0, Index(2**62)),
    (0, 1.0, 2**70),
    (5, "1"),  # the conversion error comes before the kernel's EINVAL
    (5, -1),
]
BAD_WHICH: list[Any] = [5, -1, 2**31, 0.0, "0", None, Index(7)]
BAD_ALARM: list[Any] = [1.5, "1", None, 2**31, -(2**31) - 1, 2**70, Index(2**40)]


def _outcome(fn: Callable[..., Any], *args: Any) -> tuple[type[BaseException], str, Any]:
    with pytest.raises(Exception) as info:
        fn(*args)
    return type(info.value), str(info.value), getattr(info.value, "errno", None)


@pytest.mark.parametrize("active", [False, True], ids=["idle", "active"])
@pytest.mark.asyncio
async def test_core_functions_raise_exactly_what_the_stdlib_raises(active: bool) -> None:
    future = alarm(30) if active else None
    timer = setitimer(signal.ITIMER_PROF, 30) if active else None
    try:
        for args in BAD_SETITIMER_ARGS:
            assert _outcome(core_setitimer, *args) == _outcome(signal.setitimer, *args), args
        for which in BAD_WHICH:
            assert _outcome(core_getitimer, which) == _outcome(signal.getitimer, which), which
        for seconds in BAD_ALARM:
            assert _outcome(core_alarm, seconds) == _outcome(signal.alarm, seconds), seconds
    finally:
        if future is not None and timer is not None:
            future.cancel()
            timer.close()


@pytest.mark.asyncio
async def test_setitimer_and_alarm_validate_as_signal_setitimer() -> None:
    for args in BAD_SETITIMER_ARGS:
        assert _outcome(setitimer, *args) == _outcome(signal.setitimer, *args), args
    for args in BAD_SETITIMER_ARGS:
        if type(args[0]) is int and args[0] == signal.ITIMER_REAL and len(args) == 2:
            assert _outcome(alarm, args[1]) == _outcome(signal.setitimer, *args), args
    assert_idle()


def test_setitimer_and_alarm_need_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        alarm(1)
    with pytest.raises(RuntimeError, match="no running event loop"):
        setitimer(signal.ITIMER_REAL, 1)
    assert_idle()


def test_core_functions_are_the_stdlibs_while_aiosig_is_idle() -> None:
    assert core_setitimer(signal.ITIMER_REAL, 10, 0.5) == (0.0, 0.0)
    value, interval = core_getitimer(signal.ITIMER_REAL)
    assert 9 < value <= 10 and interval == 0.5
    assert signal.getitimer(signal.ITIMER_REAL)[1] == 0.5
    assert core_alarm(0) == 10
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


# ---- expiries in flight when the last timer goes -------------------------------------------

# The loop is kept from reading (time.sleep) while the kernel timer expires, then the timer is
# cancelled: its SIGALRM was delivered but not yet read. Under SIG_DFL, an expiry left to the
# user's disposition would end the process. "precise" blocks SIGALRM first, so the expiry
# waits in the kernel instead, and unblocking it at the end would deliver any left there.
# "threads" does it on two loops at once, whose threads arm the one kernel timer in turn.
_IN_FLIGHT = """
import asyncio, signal, sys, threading, time, uvloop
import aiosig
from aiosig import _itimers
from aiosig._hub import get_hub

signal.signal(signal.SIGALRM, signal.SIG_DFL)  # SIG_IGN is inherited through exec
loop_name, path, what = sys.argv[1:]
run = uvloop.run if loop_name == "uvloop" else asyncio.run

async def churn(what):
    for _ in range(150):
        if what == "setitimer":
            timer = aiosig.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
            time.sleep(0.002)
            await timer.aclose()
        else:
            future = aiosig.alarm(0.001)
            time.sleep(0.002)
            future.cancel()
        await asyncio.sleep(0)
    for _ in range(150):  # the race as programs meet it: a timeout as long as the alarm
        try:
            await asyncio.wait_for(aiosig.alarm(0.002), 0.002)
        except TimeoutError:
            pass

async def main():
    print("READY", flush=True)
    if what == "threads":
        errors = []
        other = threading.Thread(target=lambda: errors.append(run(churn("alarm"))))
        other.start()
        await churn("alarm")
        await asyncio.to_thread(other.join)
        assert errors == [None], errors
    else:
        await churn(what)
    async with asyncio.timeout(5):  # and then it gives everything back
        while _itimers.schedulers()[signal.ITIMER_REAL].active:
            await asyncio.sleep(0.001)
    print("IDLE", flush=True)

# Held from the main thread, so the other thread's loop can subscribe whenever it needs to;
# a delivery nobody took is raised again when it is released.
reservation = get_hub().reserve([signal.SIGALRM])
if path == "precise":
    with aiosig.block(signal.SIGALRM):
        run(main())
else:
    run(main())
reservation.close()
print("SURVIVED", flush=True)
"""


@pytest.mark.parametrize("what", ["alarm", "setitimer", "threads"])
@pytest.mark.parametrize("path", ["plain", "precise"])
@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_an_expiry_in_flight_when_the_last_timer_goes_is_never_the_users(
    loop_name: str, path: str, what: str
) -> None:
    child = run_child(_IN_FLIGHT, loop_name, path, what)
    returncode, out, err = finish(child, timeout=30)
    assert (returncode, out) == (0, "IDLE\nSURVIVED\n"), err
    assert "Traceback" not in err, err


# ---- blocked timer signals: read from the loop's signalfd ---------------------------------


@pytest.mark.asyncio
async def test_alarms_and_itimers_fire_with_sigalrm_blocked_and_say_the_kernel_sent_it() -> None:
    with aiosig.block(signal.SIGALRM):
        assert aiosig.threads_not_blocking([signal.SIGALRM]) == []  # else one may take it
        info = await asyncio.wait_for(alarm(0.01), TIMEOUT)
        async with setitimer(signal.ITIMER_REAL, 0.01, 0.01) as timer:
            ticks = [await asyncio.wait_for(timer, TIMEOUT) for _ in range(2)]
        assert_idle()
        assert signal.SIGALRM not in signal.sigpending()  # every expiry was read
    for delivery in (info, *(tick.info for tick in ticks)):
        assert delivery.precise and delivery.si_signo == signal.SIGALRM
        assert delivery.si_code == SI_KERNEL
        assert delivery.si_pid == 0  # the kernel, not a process
