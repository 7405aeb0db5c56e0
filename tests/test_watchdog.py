"""The watchdog: a blocked loop is reported with the stack of the code that blocks it.

Real blocking (``time.sleep`` in a coroutine), a real watchdog thread and a real signal to the
main thread, on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aiosig
from aiosig._hub import get_hub
from aiosig._watchdog import BlockedLoop, Watchdog, watchdog

TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def itimers_left_clear() -> Iterator[None]:
    """The watchdog must not touch any itimer."""
    yield
    for which in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF):
        assert signal.getitimer(which) == (0.0, 0.0)


def watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("aiosig watchdog")]


async def next_report(reports: list[BlockedLoop], count: int = 1) -> BlockedLoop:
    async with asyncio.timeout(TIMEOUT):
        while len(reports) < count:
            await asyncio.sleep(0.01)
    return reports[count - 1]


@pytest.mark.asyncio
async def test_watchdog_reports_a_coroutine_blocking_in_time_sleep_with_that_line() -> None:
    reports: list[BlockedLoop] = []
    async with watchdog(0.2, callback=reports.append):
        await asyncio.sleep(0.1)
        line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        time.sleep(1)
        report = await next_report(reports)
    innermost = report.stack[-1]
    assert (innermost.filename, innermost.lineno, innermost.name) == (
        __file__,
        line,
        "test_watchdog_reports_a_coroutine_blocking_in_time_sleep_with_that_line",
    )
    assert innermost.line == "time.sleep(1)"
    assert 0.2 < report.captured_after < report.duration
    assert report.duration >= 1.0
    text = report.format()
    assert text.startswith("event loop blocked for ")
    assert f'File "{__file__}", line {line}' in text and "time.sleep(1)" in text
    assert len(reports) == 1  # one report per blocked episode


@pytest.mark.asyncio
async def test_watchdog_reports_each_blocked_episode_once() -> None:
    reports: list[BlockedLoop] = []
    async with watchdog(0.1, callback=reports.append):
        for _ in range(2):
            time.sleep(0.5)
            await next_report(reports, len(reports) + 1)
            await asyncio.sleep(0.2)  # the loop beats again: the next block is a new episode
    assert len(reports) == 2


@pytest.mark.asyncio
async def test_watchdog_stays_quiet_while_the_loop_is_free() -> None:
    reports: list[BlockedLoop] = []
    async with watchdog(1.0, callback=reports.append):
        for _ in range(30):
            await asyncio.sleep(0.05)
    assert reports == []


@pytest.mark.asyncio
async def test_watchdog_logs_a_warning_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aiosig.watchdog"):
        async with watchdog(0.1):
            time.sleep(0.5)
            async with asyncio.timeout(TIMEOUT):
                while not caplog.records:
                    await asyncio.sleep(0.01)
    record = caplog.records[0]
    assert record.name == "aiosig.watchdog" and record.levelno == logging.WARNING
    assert "event loop blocked" in record.getMessage()
    assert "time.sleep(0.5)" in record.getMessage()


@pytest.mark.asyncio
async def test_a_failing_callback_goes_to_the_loops_exception_handler() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))

    def broken(report: BlockedLoop) -> None:
        raise ZeroDivisionError

    try:
        async with watchdog(0.1, callback=broken):
            time.sleep(0.5)
            async with asyncio.timeout(TIMEOUT):
                while not contexts:
                    await asyncio.sleep(0.01)
        assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    finally:
        loop.set_exception_handler(None)


@pytest.mark.asyncio
async def test_closing_stops_the_thread_and_gives_the_signal_back() -> None:
    dog = watchdog(0.5)
    assert get_hub().holds(signal.SIGURG)
    assert len(watchdog_threads()) == 1
    await dog.aclose()
    await dog.aclose()  # idempotent
    assert watchdog_threads() == []
    assert not get_hub().holds(signal.SIGURG)


@pytest.mark.asyncio
async def test_watchdog_thread_blocks_every_signal() -> None:
    async with watchdog(0.5):
        (thread,) = watchdog_threads()
        with open(f"/proc/self/task/{thread.native_id}/status") as status:
            blocked = next(line for line in status if line.startswith("SigBlk:"))
    mask = int(blocked.split()[1], 16)
    # The kernel never blocks SIGKILL and SIGSTOP; glibc keeps 32 and 33 for itself.
    catchable = set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP}
    unblocked = [s for s in catchable if not mask & (1 << (s - 1))]
    assert unblocked == []


@pytest.mark.asyncio
async def test_another_signal_can_carry_the_poke() -> None:
    reports: list[BlockedLoop] = []
    async with watchdog(0.1, callback=reports.append, signum=signal.SIGUSR2):
        time.sleep(0.5)
        report = await next_report(reports)
    assert report.stack[-1].line == "time.sleep(0.5)"


@pytest.mark.asyncio
async def test_watchdog_refuses_a_loop_outside_the_main_thread() -> None:
    errors: list[BaseException] = []

    async def start() -> None:
        try:
            watchdog(0.5)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=asyncio.run, args=(start(),))
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    await asyncio.to_thread(thread.join, TIMEOUT)
    assert len(errors) == 1 and "main thread" in str(errors[0])


@pytest.mark.asyncio
async def test_watchdog_validates_its_threshold() -> None:
    for bad, exc in ((0, ValueError), (-1, ValueError), (float("nan"), ValueError)):
        with pytest.raises(exc):
            watchdog(bad)
    with pytest.raises(ValueError):
        watchdog(float("inf"))
    with pytest.raises(TypeError):
        watchdog("1")  # type: ignore[arg-type]
    assert refusal(watchdog, 0.05, callback="log") == (
        TypeError,
        "callback must be callable, not str",
    )
    assert_nothing_started()


def test_watchdog_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        watchdog(1.0)


def refusal(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[type[BaseException], str]:
    """What `fn` raises, without keeping its traceback (whose frames would keep objects alive)."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:
        return type(exc), str(exc)
    raise AssertionError(f"{fn.__name__} did not raise")


def assert_nothing_started(signum: int = signal.SIGURG) -> None:
    """No watchdog thread, no subscription, and nothing on the loop that keeps one alive."""
    assert watchdog_threads() == []
    if 0 < signum < signal.NSIG:
        assert not get_hub().holds(signum)
    gc.collect()  # a heartbeat left on the loop would keep its Watchdog alive
    assert [obj for obj in gc.get_objects() if isinstance(obj, Watchdog)] == []


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSTOP, 0, signal.NSIG, "x"])
@pytest.mark.asyncio
async def test_a_refused_signal_raises_the_stdlibs_error_and_starts_nothing(signum: Any) -> None:
    expected = refusal(signal.signal, signum, signal.SIG_DFL)
    assert refusal(watchdog, 0.05, signum=signum) == expected
    await asyncio.sleep(0.1)  # two heartbeats' worth
    assert_nothing_started()


@pytest.mark.asyncio
async def test_a_signal_the_hub_refuses_starts_nothing() -> None:
    # A fault signal: refused by aiosig itself, after the stdlib's checks.
    kind, message = refusal(watchdog, 0.05, signum=signal.SIGSEGV)
    assert kind is ValueError and "faulthandler" in message
    assert_nothing_started()


@pytest.mark.asyncio
async def test_a_watchdog_whose_thread_cannot_start_leaves_nothing_behind() -> None:
    previous = threading.stack_size(2**45)  # no thread can get that much stack: start() fails
    try:
        assert refusal(watchdog, 0.05) == (RuntimeError, "can't start new thread")
    finally:
        threading.stack_size(previous)
    assert_nothing_started()


@pytest.mark.asyncio
async def test_watchdog_refuses_a_signal_blocked_in_the_main_thread_and_says_why() -> None:
    # A blocked poke cannot interrupt the code that blocks the loop: there would be no stack.
    with aiosig.block(signal.SIGURG):
        kind, message = refusal(watchdog, 0.05)
    assert kind is RuntimeError
    assert "SIGURG is blocked" in message and "signum" in message
    assert_nothing_started()
    reports: list[BlockedLoop] = []
    with aiosig.block(signal.SIGUSR1):  # another signal blocked does not matter
        async with watchdog(0.1, callback=reports.append, signum=signal.SIGUSR2):
            time.sleep(0.5)
            report = await next_report(reports)
    assert report.stack[-1].line == "time.sleep(0.5)"
