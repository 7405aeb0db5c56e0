"""Awaitable sigwait/sigwaitinfo/sigtimedwait, and precise delivery with the sender's siginfo."""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import random
import signal
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator

import pytest

import aiosig
from tests._util import finish, run_child, send
from tests.conftest import LoopFactory

TIMEOUT = 10.0


@pytest.fixture
def blocked_usr1() -> Iterator[None]:
    with aiosig.block(signal.SIGUSR1):
        yield
    # anything still pending would be delivered on unblock: the test must have consumed it
    assert signal.SIGUSR1 not in signal.sigpending()


# ---- plain (unblocked) waits -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_sigwait_returns_the_signal_number_like_the_stdlib() -> None:
    task = asyncio.ensure_future(aiosig.sigwait({signal.SIGUSR1, signal.SIGUSR2}))
    await asyncio.sleep(0.01)
    await send(signal.SIGUSR2)
    assert await asyncio.wait_for(task, TIMEOUT) is signal.SIGUSR2


@pytest.mark.asyncio
async def test_sigtimedwait_returns_none_on_timeout_and_restores_the_disposition() -> None:
    assert await aiosig.sigtimedwait([signal.SIGUSR1], 0.05) is None
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


@pytest.mark.asyncio
async def test_unblocked_wait_catches_deliveries_during_the_wait_only() -> None:
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: calls.append(s))
    try:
        task = asyncio.ensure_future(aiosig.sigwaitinfo([signal.SIGUSR1]))
        await asyncio.sleep(0.01)
        await send(signal.SIGUSR1)
        info = await asyncio.wait_for(task, TIMEOUT)
        assert info.si_signo == signal.SIGUSR1 and not info.precise
        assert signal.getsignal(signal.SIGUSR1) is previous or calls  # handler is back
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.asyncio
async def test_two_realtime_signals_in_one_read_both_reach_consecutive_plain_waits() -> None:
    signum = signal.SIGRTMIN + 8
    task = asyncio.ensure_future(aiosig.sigwaitinfo({signum}))
    await asyncio.sleep(0.01)  # the wait is subscribed
    os.kill(os.getpid(), signum)  # two sends before the loop reads: one read, two bytes
    os.kill(os.getpid(), signum)
    first = await asyncio.wait_for(task, TIMEOUT)
    second = await aiosig.sigtimedwait({signum}, TIMEOUT)
    assert first.si_signo == signum
    assert second is not None and second.si_signo == signum
    assert await aiosig.sigtimedwait({signum}, 0.05) is None  # and no third one


@pytest.mark.asyncio
async def test_cancelled_plain_wait_with_a_result_hands_it_to_the_next_wait() -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(aiosig.sigwaitinfo([signal.SIGUSR1]))
    await asyncio.sleep(0.01)
    # Deliver and cancel in the same loop iteration: the result is set, the task not resumed.
    await send(signal.SIGUSR1)
    await asyncio.sleep(0)  # let the hub read it (it may take one more turn)
    loop.call_soon(task.cancel)
    try:
        info = await asyncio.wait_for(task, TIMEOUT)
    except asyncio.CancelledError:
        info = await asyncio.wait_for(aiosig.sigwaitinfo([signal.SIGUSR1]), TIMEOUT)
    assert info.si_signo == signal.SIGUSR1


@pytest.mark.asyncio
async def test_delivery_reaching_a_cancelled_plain_wait_goes_to_the_next_wait() -> None:
    waiting: list[asyncio.Task[aiosig.SigInfo]] = []
    # Subscribed before the wait, so the hub calls it first for the same delivery: the
    # delivery then reaches a wait whose future was cancelled a moment ago.
    handle = aiosig.add_handler(signal.SIGUSR1, lambda info: waiting[0].cancel())
    try:
        waiting.append(asyncio.ensure_future(aiosig.sigwaitinfo([signal.SIGUSR1])))
        await asyncio.sleep(0.01)
        await send(signal.SIGUSR1)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting[0], TIMEOUT)
    finally:
        handle.remove()
    info = await asyncio.wait_for(aiosig.sigwaitinfo([signal.SIGUSR1]), TIMEOUT)
    assert info.si_signo == signal.SIGUSR1


# ---- precise (blocked) waits -----------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("blocked_usr1")
async def test_sigwaitinfo_on_a_blocked_signal_gives_the_senders_pid_and_uid() -> None:
    task = asyncio.ensure_future(aiosig.sigwaitinfo([signal.SIGUSR1]))
    await asyncio.sleep(0.01)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import os; os.kill({os.getpid()}, {int(signal.SIGUSR1)})"
    )
    async with asyncio.timeout(TIMEOUT):
        info = await task
        await proc.wait()
    assert info.precise
    assert (info.si_pid, info.si_uid, info.si_code) == (proc.pid, os.getuid(), 0)  # SI_USER


@pytest.mark.asyncio
@pytest.mark.usefixtures("blocked_usr1")
async def test_sigwaitinfo_gives_the_uid_of_a_sender_that_switched_to_nobody() -> None:
    if os.getuid() != 0:
        pytest.skip("switching uid needs root")
    # A sender whose *real* uid is nobody (si_uid is the sender's real uid). Dropping the
    # effective uid too would leave it no permission to signal a root process.
    code = f"import os; os.setresuid(65534, 0, 0); os.kill({os.getpid()}, 10)"
    task = asyncio.ensure_future(aiosig.sigwaitinfo([signal.SIGUSR1]))
    await asyncio.sleep(0.01)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    async with asyncio.timeout(TIMEOUT):
        info = await task
        await proc.wait()
    assert (info.si_pid, info.si_uid) == (proc.pid, 65534)


@pytest.mark.asyncio
@pytest.mark.usefixtures("blocked_usr1")
async def test_already_pending_blocked_signal_returns_at_once() -> None:
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
    assert signal.SIGUSR1 in signal.sigpending()
    info = await aiosig.sigtimedwait([signal.SIGUSR1], 0)
    assert info is not None and info.precise and info.si_pid == os.getpid()


@pytest.mark.asyncio
@pytest.mark.usefixtures("blocked_usr1")
async def test_already_pending_blocked_signal_taken_by_a_wait_reaches_the_loops_receiver_too() -> (
    None
):
    async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        assert signal.SIGUSR1 in signal.sigpending()
        async with asyncio.timeout(TIMEOUT):  # not wait_for: no new task, no loop turn first
            info = await aiosig.sigwaitinfo([signal.SIGUSR1])
            assert info.precise and info.si_pid == os.getpid()
            assert await anext(receiver) == info


@pytest.mark.asyncio
@pytest.mark.usefixtures("blocked_usr1")
async def test_consecutive_blocked_waits_keep_one_subscription_until_the_next_turn() -> None:
    from aiosig._hub import get_hub
    from aiosig._precise import _sources

    loop = asyncio.get_running_loop()
    sources = set()
    async with asyncio.timeout(TIMEOUT):  # not wait_for: the waits run in this task's steps
        for _ in range(3):
            # Sent while no wait is pending: it stays in the kernel's queue for the next wait.
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            assert signal.SIGUSR1 in signal.sigpending()
            info = await aiosig.sigwaitinfo([signal.SIGUSR1])
            assert info.precise and info.si_pid == os.getpid()
            assert get_hub().holds(signal.SIGUSR1)  # kept for the next wait
            sources.add(id(_sources[loop]))
        assert len(sources) == 1  # one signalfd registration for every wait
        await asyncio.sleep(0)  # the next turn: nobody took it, so it is closed
        assert not get_hub().holds(signal.SIGUSR1)
        assert loop not in _sources


@pytest.mark.usefixtures("blocked_usr1")
def test_a_wait_kept_for_the_next_one_does_not_outlive_run_until_complete(
    loop_factory: LoopFactory,
) -> None:
    from aiosig._hub import get_hub

    loop = loop_factory()
    try:
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        info = loop.run_until_complete(aiosig.sigtimedwait([signal.SIGUSR1], TIMEOUT))
        assert info is not None and info.precise
        assert not get_hub().holds(signal.SIGUSR1)
    finally:
        loop.close()


@pytest.mark.asyncio
async def test_sigqueue_value_arrives_with_a_precise_wait() -> None:
    with aiosig.block(signal.SIGRTMIN):
        task = asyncio.ensure_future(aiosig.sigwaitinfo([signal.SIGRTMIN]))
        await asyncio.sleep(0.01)
        aiosig.sigqueue(os.getpid(), signal.SIGRTMIN, value=42)
        info = await asyncio.wait_for(task, TIMEOUT)
    assert (info.si_value, info.si_code, info.si_pid) == (42, -1, os.getpid())  # SI_QUEUE


@pytest.mark.asyncio
@pytest.mark.parametrize("turn_between", [False, True])
async def test_signals_queued_while_a_completed_wait_has_not_resumed_go_to_the_next_waits(
    turn_between: bool,
) -> None:
    # The first wait reads one; the rest arrive while it has no room (completed, not yet
    # resumed) and must stay in the kernel, in order, for the next waits.
    with aiosig.block(signal.SIGRTMIN):
        values = []
        async with asyncio.timeout(TIMEOUT):
            for value in range(4):
                aiosig.sigqueue(os.getpid(), signal.SIGRTMIN, value=value)
            for _ in range(4):
                values.append((await aiosig.sigwaitinfo([signal.SIGRTMIN])).si_value)
                if turn_between:
                    await asyncio.sleep(0.01)
        assert values == [0, 1, 2, 3]
        assert signal.SIGRTMIN not in signal.sigpending()


PRECISE_FLOOD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import aiosig

    N = int(sys.argv[2])
    aiosig.block(signal.SIGRTMIN)  # before any thread starts

    async def main():
        async with aiosig.open_signal_receiver(signal.SIGRTMIN) as receiver:
            proc = await aiosig.create_subprocess_exec(
                sys.executable, "-c",
                "import os, sys, aiosig\\n"
                "pid = int(sys.argv[1])\\n"
                "for i in range(int(sys.argv[2])):\\n"
                "    while True:\\n"
                "        try:\\n"
                "            aiosig.sigqueue(pid, aiosig.SIGRTMIN, i); break\\n"
                "        except BlockingIOError:\\n"
                "            pass\\n",
                str(os.getpid()), str(N))
            values = []
            async with asyncio.timeout(120):
                async for info in receiver:
                    assert info.precise and info.si_pid == proc.pid, info
                    values.append(info.si_value)
                    if len(values) == N:
                        break
                await proc.wait()
            assert values == list(range(N)), "out of order or lost"
            await asyncio.sleep(0.05)
            assert receiver.pending == 0 and receiver.overflowed == 0
        print("ok", len(values))

    if sys.argv[1] == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
    print("READY")
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_hundred_thousand_sigqueued_realtime_signals_arrive_once_in_order(flavour: str) -> None:
    child = run_child(PRECISE_FLOOD, flavour, "100000", timeout=150)
    assert "ok 100000" in child.before_ready
    returncode, _, err = finish(child)
    assert returncode == 0, err


CANCEL_STORM = textwrap.dedent(
    """
    import asyncio, os, random, signal, sys
    import aiosig

    N = 2000
    aiosig.block(signal.SIGRTMIN)

    async def main():
        got = []
        random.seed(int(sys.argv[2]))
        proc = await aiosig.create_subprocess_exec(
            sys.executable, "-c",
            "import os, sys, time, aiosig\\n"
            "for i in range(int(sys.argv[2])):\\n"
            "    aiosig.sigqueue(int(sys.argv[1]), aiosig.SIGRTMIN, i)\\n"
            "    if i % 50 == 0: time.sleep(0.001)\\n",
            str(os.getpid()), str(N))
        async with asyncio.timeout(60):
            while len(got) < N:
                task = asyncio.ensure_future(aiosig.sigwaitinfo([signal.SIGRTMIN]))
                await asyncio.sleep(random.choice([0, 0, 0.0001, 0.001]))
                task.cancel()
                try:
                    got.append((await task).si_value)
                except asyncio.CancelledError:
                    pass
            await proc.wait()
        assert sorted(got) == list(range(N)), (len(got), len(set(got)))
        print("ok", len(got))

    if sys.argv[1] == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
    print("READY")
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_cancelling_waiters_at_random_moments_loses_no_delivery(flavour: str) -> None:
    child = run_child(CANCEL_STORM, flavour, str(random.randrange(1000)), timeout=90)
    assert "ok 2000" in child.before_ready
    finish(child)


# ---- children and threads --------------------------------------------------------------------

CHILD_WAITS_FOR_TERM = "import time; print('up', flush=True); time.sleep(30)"


@pytest.mark.asyncio
async def test_child_spawned_through_helpers_stops_on_sigterm_while_parent_blocks_it() -> None:
    with aiosig.block(signal.SIGTERM):
        proc = await aiosig.create_subprocess_exec(
            sys.executable, "-c", CHILD_WAITS_FOR_TERM, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            await proc.stdout.readline()
            proc.terminate()
            assert await proc.wait() == -signal.SIGTERM
        sync = aiosig.popen([sys.executable, "-c", CHILD_WAITS_FOR_TERM], stdout=-1)
        assert sync.stdout is not None
        sync.stdout.readline()
        sync.terminate()
        assert sync.wait(TIMEOUT) == -signal.SIGTERM
        sync.stdout.close()


def test_plain_subprocess_inherits_the_blocked_mask_which_is_why_the_helpers_exist() -> None:
    import subprocess

    with aiosig.block(signal.SIGTERM):
        code = "import signal; print(signal.SIGTERM in signal.pthread_sigmask(0, []))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        clean = aiosig.popen([sys.executable, "-c", code], stdout=-1, text=True)
        clean_out, _ = clean.communicate(timeout=TIMEOUT)
    assert out.stdout.strip() == "True"
    assert clean_out.strip() == "False"


def test_thread_audit_names_a_thread_that_does_not_block() -> None:
    import threading

    started, stop = threading.Event(), threading.Event()

    def unblocked() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR1])
        started.set()
        stop.wait(TIMEOUT)

    with aiosig.block(signal.SIGUSR1):
        thread = threading.Thread(target=unblocked, name="leaky-worker")
        thread.start()
        started.wait(TIMEOUT)
        names = [t.python_name for t in aiosig.threads_not_blocking([signal.SIGUSR1])]
        stop.set()
        thread.join()
    assert "leaky-worker" in names
    assert "MainThread" not in names


# ---- argument validation: the same errors as the stdlib --------------------------------------

BAD_SIGSETS: list[object] = [5, None, ["a"], [0], [2**70], [signal.NSIG], [1.5]]
BAD_TIMEOUTS: list[object] = ["x", -1, -0.5, math.nan, None, 2**70, 1e300]


def _stdlib_error(fn: object, *args: object) -> tuple[type[BaseException], str] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args)  # type: ignore[operator]
    except Exception as exc:
        return type(exc), str(exc)
    return None


def test_bad_arguments_raise_the_stdlibs_error_at_the_call_not_at_the_await() -> None:
    # No loop and no await: the call itself raises, as the stdlib's does.
    for bad in BAD_SIGSETS:
        expected = _stdlib_error(signal.sigtimedwait, bad, 0)
        assert expected is not None, bad
        for wait, args in (
            (aiosig.sigwait, (bad,)),
            (aiosig.sigwaitinfo, (bad,)),
            (aiosig.sigtimedwait, (bad, 0)),
        ):
            with pytest.raises(expected[0]) as info:
                wait(*args)  # type: ignore[operator]
            assert str(info.value) == expected[1], bad
    for bad in BAD_TIMEOUTS:
        expected = _stdlib_error(signal.sigtimedwait, [signal.SIGUSR1], bad)
        assert expected is not None, bad
        with pytest.raises(expected[0]) as info:
            aiosig.sigtimedwait([signal.SIGUSR1], bad)  # type: ignore[arg-type]
        assert str(info.value) == expected[1], bad


@pytest.mark.asyncio
async def test_invalid_signal_number_in_a_set_warns_like_the_stdlib_at_the_callers_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # In a task (wait_for makes one), the line that awaits runs no frame of the wait.
        line = sys._getframe().f_lineno + 1
        got = await asyncio.wait_for(aiosig.sigtimedwait([32, signal.SIGUSR1], 0.01), TIMEOUT)
    assert got is None
    assert [str(w.message) for w in caught] == [
        "invalid signal number 32, please use valid_signals()"
    ]
    assert (caught[0].category, caught[0].filename, caught[0].lineno) == (
        RuntimeWarning,
        __file__,
        line,
    )


def test_sigwait_takes_its_set_by_keyword_like_the_stdlib() -> None:
    assert "sigset" in inspect.signature(signal.sigwait).parameters
    waiting = aiosig.sigwait(sigset={signal.SIGUSR1})
    waiting.close()  # never awaited: nothing was subscribed


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "signum", [signal.SIGKILL, signal.SIGSTOP, signal.SIGSEGV, signal.SIGBUS, signal.SIGCHLD]
)
async def test_waits_accept_what_the_stdlib_accepts_even_signals_no_loop_can_catch(
    signum: signal.Signals,
) -> None:
    assert signal.sigtimedwait({signum}, 0) is None  # the stdlib accepts it
    assert await aiosig.sigtimedwait({signum}, 0.01) is None
    waiting = asyncio.ensure_future(aiosig.sigwaitinfo({signum}))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, TIMEOUT)


@pytest.mark.asyncio
async def test_wait_on_a_set_with_signals_no_loop_can_catch_returns_the_others() -> None:
    uncatchable = {signal.SIGKILL, signal.SIGSEGV}
    if "uvloop" in type(asyncio.get_running_loop()).__module__:
        uncatchable.add(signal.SIGCHLD)  # libuv's; on asyncio a child's exit would end the wait
    task = asyncio.ensure_future(aiosig.sigwait({*uncatchable, signal.SIGUSR1}))
    await asyncio.sleep(0.01)
    assert not task.done()  # else SIGUSR1 would meet its default action
    await send(signal.SIGUSR1)
    assert await asyncio.wait_for(task, TIMEOUT) is signal.SIGUSR1


@pytest.mark.asyncio
async def test_tiny_negative_timeout_rounds_up_to_zero_like_the_stdlib() -> None:
    assert signal.sigtimedwait([signal.SIGUSR1], -1e-10) is None
    assert await aiosig.sigtimedwait([signal.SIGUSR1], -1e-10) is None


STRAY_THREAD = textwrap.dedent(
    """
    import asyncio, os, signal, subprocess, sys, threading
    import aiosig

    aiosig.block(signal.SIGUSR1)
    ready, stop = threading.Event(), threading.Event()

    def leaky():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR1])  # the only taker
        ready.set()
        stop.wait(10)

    async def main():
        async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
            thread = threading.Thread(target=leaky, name="leaky")
            thread.start()
            ready.wait(5)
            print("audit", [t.python_name for t in aiosig.threads_not_blocking([signal.SIGUSR1])])
            sender = f"import os; os.kill({os.getpid()}, {int(signal.SIGUSR1)})"
            subprocess.run([sys.executable, "-c", sender], check=True, timeout=10)
            async with asyncio.timeout(5):
                info = await anext(receiver)
            stop.set()
            thread.join()
        print("precise", info.precise, "pid", info.si_pid)

    if sys.argv[1] == "uvloop":
        __import__("uvloop").run(main())
    else:
        asyncio.run(main())
    print("READY")
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_thread_that_does_not_block_still_delivers_through_the_plain_path(flavour: str) -> None:
    child = run_child(STRAY_THREAD, flavour)
    assert "audit ['leaky']" in child.before_ready
    assert "precise False pid None" in child.before_ready
    finish(child)
