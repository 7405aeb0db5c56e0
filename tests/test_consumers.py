"""What receivers, waits and handlers share: one way to subscribe to both sources.

Every subscriber sees every delivery, plain or precise; a subscriber that fails to open leaves
nothing subscribed; a loop's precise source lives no longer than its consumers or its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import resource
import signal
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator

import pytest

import aiosig
from aiosig._hub import get_hub
from tests._util import until

TIMEOUT = 10.0


def signalfds() -> int:
    """How many signalfds this process has open."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[signalfd]"
    return count


@contextlib.contextmanager
def no_new_file_descriptors() -> Iterator[None]:
    """Make every attempt to open a file descriptor fail with EMFILE, for a while."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---- every subscriber sees every delivery, whichever path it took --------------------------


@pytest.mark.asyncio
async def test_handler_receiver_and_wait_all_see_one_precise_delivery_of_a_blocked_signal() -> None:
    seen: list[aiosig.SigInfo] = []
    with aiosig.block(signal.SIGUSR1):
        handle = aiosig.add_handler(signal.SIGUSR1, seen.append)
        try:
            async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
                wait = asyncio.ensure_future(aiosig.sigwaitinfo([signal.SIGUSR1]))
                await asyncio.sleep(0.01)
                proc = await aiosig.create_subprocess_exec(
                    sys.executable, "-c", f"import os; os.kill({os.getpid()}, 10)"
                )
                async with asyncio.timeout(TIMEOUT):
                    info = await anext(receiver)
                    assert await wait == info
                    await proc.wait()
                await until(lambda: bool(seen))
        finally:
            handle.remove()
    assert info.precise and info.si_pid == proc.pid
    assert seen == [info]


@pytest.mark.asyncio
async def test_handler_error_on_a_precise_delivery_goes_to_the_loop_and_others_still_get_it() -> (
    None
):
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    def broken(info: aiosig.SigInfo) -> None:
        raise ValueError("boom")

    try:
        with aiosig.block(signal.SIGUSR1):
            handle = aiosig.add_handler(signal.SIGUSR1, broken)  # offered first
            try:
                async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
                    signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
                    async with asyncio.timeout(TIMEOUT):
                        info = await anext(receiver)
                    await until(lambda: bool(contexts))
            finally:
                handle.remove()
    finally:
        loop.set_exception_handler(None)
    assert info.precise
    assert [type(c["exception"]) for c in contexts] == [ValueError]


# ---- a subscriber that fails to open leaves nothing behind ---------------------------------


async def _open_receiver() -> None:
    aiosig.open_signal_receiver(signal.SIGUSR1)


async def _add_handler() -> None:
    aiosig.add_handler(signal.SIGUSR1, print)


async def _wait() -> None:
    await aiosig.sigtimedwait([signal.SIGUSR1], TIMEOUT)


@pytest.mark.parametrize("subscribe", [_open_receiver, _add_handler, _wait])
@pytest.mark.asyncio
async def test_subscriber_failing_after_the_hub_subscription_leaves_no_subscription(
    subscribe: Callable[[], Awaitable[None]],
) -> None:
    # A plain receiver keeps the hub holding the wakeup fd, so that subscribing needs no new
    # descriptor: only the precise source's signalfd does, and it cannot be made.
    async with aiosig.open_signal_receiver(signal.SIGUSR2):
        with aiosig.block(signal.SIGUSR1):
            with no_new_file_descriptors(), pytest.raises(OSError) as failure:
                await subscribe()
            assert failure.value.errno == errno.EMFILE
            assert any(entry.name == "signalfd" for entry in failure.traceback), failure
            assert not get_hub().holds(signal.SIGUSR1)
            assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


# ---- a loop's precise source lives no longer than its consumers or its loop ----------------


@pytest.mark.parametrize("blocked", [False, True], ids=["plain", "precise"])
def test_a_loop_that_had_receivers_is_not_kept_alive(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], blocked: bool
) -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def open_and_close() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
            assert receiver.precise_signals == ({signal.SIGUSR1} if blocked else set())

    with aiosig.block(signal.SIGUSR1) if blocked else contextlib.nullcontext():
        for _ in range(3):
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(open_and_close())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]


def test_signalfd_closes_when_the_loop_shuts_down_with_a_receiver_still_open(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def leave_open() -> aiosig.SignalReceiver:
        return aiosig.open_signal_receiver(signal.SIGUSR1)

    with aiosig.block(signal.SIGUSR1):
        before = signalfds()
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            receiver = runner.run(leave_open())
            assert signalfds() == before + 1
        assert signalfds() == before  # shutdown_asyncgens closed it
        receiver.close()  # harmless now


def test_signalfd_of_a_loop_closed_without_shutdown_closes_at_the_next_precise_use(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def leave_open() -> aiosig.SignalReceiver:
        return aiosig.open_signal_receiver(signal.SIGUSR1)

    async def open_and_count() -> int:
        async with aiosig.open_signal_receiver(signal.SIGUSR1):
            return signalfds()

    with aiosig.block(signal.SIGUSR1):
        before = signalfds()
        loop = loop_factory()
        receiver = loop.run_until_complete(leave_open())
        loop.close()  # no shutdown_asyncgens: nothing tells aiosig
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            assert runner.run(open_and_count()) == before + 1  # the new loop's only
        receiver.close()
        assert signalfds() == before
