"""Receivers: registration at creation, broadcast, bounded buffers, any closing order."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import aiosig
from tests._util import ROOT, finish, run_child, send, until

TIMEOUT = 10.0


async def next_info(receiver: aiosig.SignalReceiver) -> aiosig.SigInfo:
    async with asyncio.timeout(TIMEOUT):
        return await anext(receiver)


@pytest.mark.asyncio
async def test_receiver_registers_when_created_not_on_first_iteration() -> None:
    receiver = aiosig.open_signal_receiver(signal.SIGUSR1)
    async with receiver:
        await send(signal.SIGUSR1)  # sent before anyone iterates
        info = await next_info(receiver)
        assert info.si_signo == signal.SIGUSR1
        assert info.precise is False


@pytest.mark.asyncio
async def test_two_receivers_of_the_same_signal_each_see_every_delivery() -> None:
    async with (
        aiosig.open_signal_receiver(signal.SIGUSR1) as a,
        aiosig.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as b,
    ):
        await send(signal.SIGUSR1)
        await send(signal.SIGUSR2)
        assert (await next_info(a)).si_signo == signal.SIGUSR1
        assert [(await next_info(b)).si_signo for _ in range(2)] == [
            signal.SIGUSR1,
            signal.SIGUSR2,
        ]


@pytest.mark.asyncio
async def test_full_buffer_counts_overflow_and_keeps_the_oldest() -> None:
    # What is still buffered at exit is raised again: under SIG_IGN, harmlessly.
    previous = signal.signal(signal.SIGRTMIN, signal.SIG_IGN)
    try:
        async with aiosig.open_signal_receiver(signal.SIGRTMIN, maxsize=10) as receiver:
            await send(signal.SIGRTMIN, 25)
            await until(lambda: receiver.pending + receiver.overflowed == 25)
            assert (receiver.pending, receiver.overflowed) == (10, 15)
    finally:
        signal.signal(signal.SIGRTMIN, previous)


@pytest.mark.asyncio
async def test_cancelling_an_iteration_loses_nothing() -> None:
    async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
        waiter = asyncio.ensure_future(anext(receiver))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await send(signal.SIGUSR1)
        assert (await next_info(receiver)).si_signo == signal.SIGUSR1


@pytest.mark.asyncio
async def test_iteration_ends_when_closed() -> None:
    receiver = aiosig.open_signal_receiver(signal.SIGUSR1)
    task = asyncio.ensure_future(anext(receiver))
    await asyncio.sleep(0.01)
    await receiver.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(task, TIMEOUT)


def _user_handler(signum: int, frame: object) -> None:
    pass


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.asyncio
async def test_receiver_restores_previous_handler_when_closed_in_any_order(count: int) -> None:
    """The exit-order matrix: every open order, every close order; the others keep working."""
    previous = signal.signal(signal.SIGUSR1, _user_handler)
    try:
        for close_order in itertools.permutations(range(count)):
            receivers = [aiosig.open_signal_receiver(signal.SIGUSR1) for _ in range(count)]
            open_ = set(range(count))
            for index in close_order:
                await receivers[index].aclose()
                open_.discard(index)
                if open_:
                    await send(signal.SIGUSR1)
                    for i in open_:
                        assert (await next_info(receivers[i])).si_signo == signal.SIGUSR1
            assert signal.getsignal(signal.SIGUSR1) is _user_handler, close_order
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.asyncio
async def test_nested_receivers_exiting_out_of_order_leave_the_outer_one_working() -> None:
    outer = aiosig.open_signal_receiver(signal.SIGUSR1)
    inner = aiosig.open_signal_receiver(signal.SIGUSR1)
    await outer.aclose()  # out of order: the outer exits first
    await send(signal.SIGUSR1)
    assert (await next_info(inner)).si_signo == signal.SIGUSR1
    await inner.aclose()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


BUFFERED_AT_EXIT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import aiosig

    calls = []
    if sys.argv[1] == "handler":
        signal.signal(signal.SIGTERM, lambda s, f: calls.append(s))

    async def main():
        async with aiosig.open_signal_receiver(signal.SIGTERM) as receiver:
            os.kill(os.getpid(), signal.SIGTERM)
            async with asyncio.timeout(5):
                while not receiver.pending:
                    await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        print("calls", calls)

    asyncio.run(main())
    print("READY")
    """
)


def test_delivery_buffered_at_exit_takes_the_restored_default_action() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUFFERED_AT_EXIT, "default"],
        capture_output=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == -signal.SIGTERM, done.stderr


def test_delivery_buffered_at_exit_is_not_repeated_to_a_user_handler_that_saw_it() -> None:
    child = run_child(BUFFERED_AT_EXIT, "handler")
    assert "calls [15]" in child.before_ready
    finish(child)


@pytest.mark.asyncio
async def test_open_receiver_validates_like_the_stdlib() -> None:
    with pytest.raises(ValueError, match="at least one"):
        aiosig.open_signal_receiver()
    with pytest.raises(ValueError, match="out of range"):
        aiosig.open_signal_receiver(0)
    with pytest.raises(OSError):
        aiosig.open_signal_receiver(signal.SIGKILL)


def test_open_receiver_without_a_running_loop_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        aiosig.open_signal_receiver(signal.SIGUSR1)


@pytest.mark.asyncio
async def test_second_task_iterating_a_receiver_is_refused_and_the_first_still_gets_it() -> None:
    async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
        first = asyncio.ensure_future(anext(receiver))
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError, match="another task is already waiting"):
            await next_info(receiver)
        await send(signal.SIGUSR1)
        assert (await asyncio.wait_for(first, TIMEOUT)).si_signo == signal.SIGUSR1
        # once the first is done, another task may iterate
        second = asyncio.ensure_future(next_info(receiver))
        await asyncio.sleep(0.01)
        await send(signal.SIGUSR1)
        assert (await asyncio.wait_for(second, TIMEOUT)).si_signo == signal.SIGUSR1


CTRL_C_RECEIVER = textwrap.dedent(
    """
    import asyncio, sys
    import aiosig

    flavour, chain = sys.argv[1], sys.argv[2] == "True"

    async def main():
        async with aiosig.open_signal_receiver(aiosig.SIGINT, chain=chain) as receiver:
            print("READY")
            async with asyncio.timeout(5):
                info = await anext(receiver)
            print("received", info.si_signo.name)
            await asyncio.sleep(0.1)  # Runner's Ctrl-C handler would cancel us by now
        return "main finished"

    factory = None if flavour == "asyncio" else __import__("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        print(runner.run(main()))
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_ctrl_c_with_chain_false_goes_to_the_receiver_and_does_not_cancel_main(
    flavour: str,
) -> None:
    child = run_child(CTRL_C_RECEIVER, flavour, "False")
    child.send_signal(signal.SIGINT)
    returncode, out, err = finish(child)
    assert "received SIGINT" in out and "main finished" in out, err
    assert returncode == 0, err


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_ctrl_c_by_default_also_reaches_runners_handler_and_cancels_main(flavour: str) -> None:
    child = run_child(CTRL_C_RECEIVER, flavour, "True")
    child.send_signal(signal.SIGINT)
    returncode, out, err = finish(child)
    assert "main finished" not in out
    assert "KeyboardInterrupt" in err
    assert returncode != 0


@pytest.mark.asyncio
async def test_closing_the_full_precise_receiver_among_many_lets_the_others_read_again() -> None:
    # Precise reading stops while any receiver of the signal is full (back-pressure); it must
    # start again when that receiver closes, whichever of many it was.
    with aiosig.block(signal.SIGUSR1):
        others = [aiosig.open_signal_receiver(signal.SIGUSR1) for _ in range(5)]
        full = aiosig.open_signal_receiver(signal.SIGUSR1, maxsize=1)
        last = aiosig.open_signal_receiver(signal.SIGUSR1)
        try:
            async with asyncio.timeout(TIMEOUT):
                signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
                first = await anext(last)
                assert first.precise and full.pending == 1
                signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
                await asyncio.sleep(0.05)
                assert last.pending == 0  # held back in the kernel: `full` has no room
                assert signal.SIGUSR1 in signal.sigpending()
                full.close()
                second = await anext(last)
                assert second.precise
                for other in others:
                    assert [await anext(other), await anext(other)] == [first, second]
        finally:
            for receiver in (*others, full, last):
                receiver.close()
