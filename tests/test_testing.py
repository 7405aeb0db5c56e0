"""aiosig.testing: synthetic deliveries, the signal-state guard and its plugin, real scripts."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

import aiosig
import aiosig.testing
from aiosig import SigInfo
from aiosig._hub import get_hub
from tests._util import ROOT, until

pytest_plugins = ["pytester"]

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
SI_USER, SI_QUEUE = 0, -1
TIMEOUT = 5.0


def _expected(signum: int = signal.SIGUSR1) -> SigInfo:
    return SigInfo(
        signal.Signals(signum),
        si_code=SI_QUEUE,
        si_pid=4242,
        si_uid=1000,
        si_value=7,
        synthetic=True,
    )


# ---- deliver ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_deliver_reaches_a_receiver_handlers_and_a_wait_with_the_given_sender() -> None:
    seen: dict[str, SigInfo] = {}

    async def coroutine_handler(info: SigInfo) -> None:
        await asyncio.sleep(0)
        seen["coroutine"] = info

    async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
        sync = aiosig.add_handler(signal.SIGUSR1, lambda info: seen.setdefault("sync", info))
        coro = aiosig.add_handler(signal.SIGUSR1, coroutine_handler)
        wait = asyncio.ensure_future(aiosig.sigwaitinfo({signal.SIGUSR1}))
        try:
            await asyncio.sleep(0)  # the wait's coroutine starts, and subscribes
            dispatched = get_hub().stats["dispatched"]
            assert aiosig.testing.deliver(signal.SIGUSR1, pid=4242, uid=1000, value=7) == 4
            seen["receiver"] = await asyncio.wait_for(anext(receiver), TIMEOUT)
            seen["wait"] = await asyncio.wait_for(wait, TIMEOUT)
            await until(lambda: len(seen) == 4)
        finally:
            wait.cancel()
            sync.remove()
            coro.remove()
    assert seen == dict.fromkeys(("sync", "coroutine", "receiver", "wait"), _expected())
    assert get_hub().stats["dispatched"] == dispatched  # nothing came through the pipe


@pytest.mark.asyncio
@pytest.mark.parametrize("policy", ["serial", "concurrent", "drop"])
async def test_deliver_runs_a_coroutine_handler_of_every_policy(policy: aiosig.Policy) -> None:
    got: list[SigInfo] = []

    async def handler(info: SigInfo) -> None:
        got.append(info)

    handle = aiosig.add_handler(signal.SIGUSR2, handler, policy=policy)
    try:
        aiosig.testing.deliver(signal.SIGUSR2, pid=4242, uid=1000, value=7)
        await until(lambda: bool(got))
    finally:
        handle.remove()
    assert got == [_expected(signal.SIGUSR2)]


@pytest.mark.asyncio
async def test_deliver_reaches_a_precise_receiver_without_queueing_anything_in_the_kernel() -> None:
    with aiosig.block(signal.SIGUSR2):
        async with aiosig.open_signal_receiver(signal.SIGUSR2) as receiver:
            aiosig.testing.deliver(signal.SIGUSR2, pid=4242, uid=1000, value=7)
            assert await asyncio.wait_for(anext(receiver), TIMEOUT) == _expected(signal.SIGUSR2)
            assert signal.sigpending() == set()


@pytest.mark.asyncio
async def test_deliver_queues_for_the_loop_rather_than_running_inside_the_call() -> None:
    got: list[SigInfo] = []
    handle = aiosig.add_handler(signal.SIGUSR1, got.append)
    try:
        aiosig.testing.deliver(signal.SIGUSR1)
        assert got == []  # a real delivery, too, runs when the loop next polls
        await until(lambda: bool(got))
    finally:
        handle.remove()
    assert got == [SigInfo(signal.SIGUSR1, synthetic=True)]


def test_deliver_reaches_each_subscription_on_its_own_loop_in_its_own_thread(
    loop_factory: LoopFactory,
) -> None:
    threads: dict[str, tuple[int, SigInfo]] = {}
    subscribed = threading.Event()

    async def receive(name: str, ready: Callable[[], object]) -> None:
        async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
            ready()
            info = await asyncio.wait_for(anext(receiver), TIMEOUT)
            threads[name] = (threading.get_ident(), info)

    def worker() -> None:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(receive("worker", subscribed.set))

    async def main() -> None:
        mine = asyncio.ensure_future(receive("main", lambda: None))
        await asyncio.sleep(0)
        assert await asyncio.to_thread(subscribed.wait, TIMEOUT)
        assert aiosig.testing.deliver(signal.SIGUSR1, pid=4242, uid=1000, value=7) == 2
        await asyncio.wait_for(mine, TIMEOUT)

    with aiosig.reserve(signal.SIGUSR1):
        thread = threading.Thread(target=worker)
        thread.start()
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(main())
        finally:
            thread.join(TIMEOUT)
    assert threads["main"] == (threading.get_ident(), _expected())
    assert threads["worker"] == (thread.ident, _expected())


def test_deliver_with_nobody_subscribed_reaches_nobody_and_takes_no_default_action() -> None:
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert aiosig.testing.deliver(signal.SIGTERM, pid=1) == 0  # and this process lives on


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, SigInfo(signal.SIGHUP, synthetic=True)),
        ({"pid": 4242}, SigInfo(signal.SIGHUP, si_code=SI_USER, si_pid=4242, synthetic=True)),
        ({"value": 7}, SigInfo(signal.SIGHUP, si_code=SI_QUEUE, si_value=7, synthetic=True)),
        ({"pid": 1, "code": 0x80}, SigInfo(signal.SIGHUP, si_code=0x80, si_pid=1, synthetic=True)),
    ],
    ids=["plain", "kill", "sigqueue", "explicit-code"],
)
def test_deliver_builds_the_siginfo_the_kernel_would_report(
    loop_factory: LoopFactory, fields: dict[str, int], expected: SigInfo
) -> None:
    async def main() -> SigInfo:
        async with aiosig.open_signal_receiver(signal.SIGHUP) as receiver:
            aiosig.testing.deliver(signal.SIGHUP, **fields)
            return await asyncio.wait_for(anext(receiver), TIMEOUT)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == expected


_UNCONSUMED = """
import asyncio, signal, aiosig, aiosig.testing

async def main():
    async with aiosig.open_signal_receiver(signal.SIGTERM):
        assert aiosig.testing.deliver(signal.SIGTERM) == 1
        await asyncio.sleep(0.1)  # buffered by the receiver, never consumed
    print("alive")

print("READY")
with asyncio.Runner(loop_factory=LOOP) as runner:
    runner.run(main())
"""


def test_deliver_leaves_nothing_to_raise_again_when_a_receiver_closes_unconsumed(
    loop_factory: LoopFactory,
) -> None:
    # A real SIGTERM left unconsumed is raised again once SIG_DFL is back; a synthetic one
    # must not end the process. In a child, because the failure is death.
    factory = f"{loop_factory.__module__}.{loop_factory.__name__}"
    code = f"import {loop_factory.__module__}\n" + _UNCONSUMED.replace("LOOP", factory)
    assert aiosig.testing.run_script(code, env=_env()) == (0, "alive\n", "")


def test_deliver_refuses_a_signal_as_signal_signal_does() -> None:
    with pytest.raises(OSError):
        aiosig.testing.deliver(signal.SIGKILL)
    with pytest.raises(ValueError, match="signal number out of range"):
        aiosig.testing.deliver(0)


def test_importing_aiosig_imports_neither_aiosig_testing_nor_pytest() -> None:
    code = (
        "import sys, aiosig, aiosig.core\n"
        "print('READY')\n"
        "assert 'aiosig.testing' not in sys.modules and 'pytest' not in sys.modules\n"
        "import aiosig.testing\n"
        "assert 'pytest' not in sys.modules, 'aiosig.testing imported pytest'\n"
    )
    result = aiosig.testing.run_script(code, env=_env())
    assert result == (0, "", "")


# ---- the guard and its plugin -------------------------------------------------------------

_LEAKS = """
import signal

def test_leaks_a_disposition():
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)

def test_leaks_a_timer():
    signal.setitimer(signal.ITIMER_REAL, 30)

def test_clean_after_the_leaks():
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
"""


def _plugin_session(pytester: pytest.Pytester, ini: str = "") -> None:
    """An inner session that finds aiosig's plugin through pyproject's own entry point."""
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    dist = pytester.mkdir("site") / "aiosig_plugin_probe-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aiosig-plugin-probe\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points["pytest11"].items())
    )
    pytester.syspathinsert(dist.parent)
    pytester.makeini(f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{ini}")
    pytester.makepyfile(_LEAKS)


def test_plugin_does_nothing_until_enabled(pytester: pytest.Pytester) -> None:
    _plugin_session(pytester)
    try:
        result = pytester.runpytest("-p", "no:cacheprovider", "-k", "disposition")
        result.assert_outcomes(passed=1, deselected=2)
    finally:
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)


@pytest.mark.parametrize("how", ["option", "ini"])
def test_plugin_enabled_fails_the_leaking_tests_and_restores_for_the_next(
    pytester: pytest.Pytester, how: str
) -> None:
    _plugin_session(pytester, "aiosig_guard = true\n" if how == "ini" else "")
    args = ["--aiosig-guard"] if how == "option" else []
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines_random(
        [
            "*the test left process-wide signal state changed:*",
            "*SIGUSR2 disposition: before=SIG_DFL, after=SIG_IGN*",
            "*ITIMER_REAL: before=disarmed, after=armed (*s left, interval 0 s)*",
        ]
    )


def test_guard_fixture_imported_from_aiosig_testing_works_without_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest("import pytest\nfrom aiosig.testing import signal_state_guard\n")
    pytester.makepyfile(
        "import pytest\n"
        + _LEAKS.replace("def test_", "@pytest.mark.usefixtures('signal_state_guard')\ndef test_")
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:aiosig")
    result.assert_outcomes(passed=3, errors=2)


# ---- scripts ------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    """Scripts import this checkout's aiosig."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))}


_RELOADS_THEN_STOPS = """
import asyncio, aiosig

async def main():
    async with aiosig.open_signal_receiver(aiosig.SIGHUP, aiosig.SIGTERM) as receiver:
        print("READY")
        async for info in receiver:
            print(info.si_signo.name)
            if info.si_signo == aiosig.SIGTERM:
                return

asyncio.run(main())
"""


def test_run_script_sends_a_real_signal_after_ready_and_returns_the_outcome() -> None:
    result = aiosig.testing.run_script(_RELOADS_THEN_STOPS, send=[signal.SIGTERM], env=_env())
    assert result == (0, "SIGTERM\n", "")


def test_start_script_signals_one_at_a_time_with_read_line_in_between() -> None:
    child = aiosig.testing.start_script(_RELOADS_THEN_STOPS, env=_env())
    child.send(signal.SIGHUP)
    assert child.read_line() == "SIGHUP"
    child.send(signal.SIGTERM)
    assert child.read_line() == "SIGTERM"
    assert child.finish() == (0, "", "")


def test_read_line_kills_a_silent_script_and_says_so() -> None:
    child = aiosig.testing.start_script("import time\nprint('READY')\ntime.sleep(60)")
    with pytest.raises(AssertionError, match=r"printed no line within 0\.2 s"):
        child.read_line(timeout=0.2)
    assert child.returncode == -signal.SIGKILL


def test_run_script_runs_a_file_and_reports_death_by_signal(tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text("import sys, time\nprint(sys.argv[1])\nprint('READY')\ntime.sleep(60)\n")
    child = aiosig.testing.start_script(script, "hello")
    assert child.before_ready == "hello\n"
    child.send(signal.SIGTERM)
    assert child.finish() == (-signal.SIGTERM, "", "")


def test_finish_kills_a_script_that_does_not_exit_and_says_so() -> None:
    child = aiosig.testing.start_script("import time\nprint('READY')\ntime.sleep(60)")
    with pytest.raises(AssertionError, match=r"did not exit within 0\.2 s and was killed"):
        child.finish(timeout=0.2)
    assert child.returncode == -signal.SIGKILL


def test_send_from_another_process_delivers_with_the_senders_pid(
    loop_factory: LoopFactory,
) -> None:
    async def main() -> SigInfo:
        with aiosig.block(signal.SIGUSR1):
            async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
                await asyncio.to_thread(
                    aiosig.testing.send_from_another_process, os.getpid(), signal.SIGUSR1
                )
                return await asyncio.wait_for(anext(receiver), TIMEOUT)

    if not sys.platform.startswith("linux"):
        pytest.skip("precise delivery (the sender's pid) is Linux-only")
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        info = runner.run(main())
    assert info.si_code == SI_USER and info.si_pid not in (None, 0, os.getpid())


def test_signal_states_compare_a_running_timer_by_its_meaning_not_its_remaining_time() -> None:
    signal.setitimer(signal.ITIMER_REAL, 30, 10)
    try:
        armed = aiosig.testing.SignalState.capture()
        signal.setitimer(signal.ITIMER_REAL, 20, 10)  # later, less left: the same timer
        assert aiosig.testing.SignalState.capture() == armed
        signal.setitimer(signal.ITIMER_REAL, 20, 5)
        assert aiosig.testing.SignalState.capture() != armed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
