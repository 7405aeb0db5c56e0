"""Handlers: sync and async functions, policies, exceptions, removal."""

from __future__ import annotations

import asyncio
import signal
import textwrap
from collections.abc import Callable

import pytest

import aiosig
from tests._util import finish, run_child, send, until

TIMEOUT = 10.0


@pytest.mark.asyncio
async def test_sync_and_async_handlers_both_run_for_each_delivery() -> None:
    seen: list[str] = []

    def sync(info: aiosig.SigInfo) -> None:
        seen.append(f"sync {info.si_signo.name}")  # type: ignore[union-attr]

    async def coro(info: aiosig.SigInfo) -> None:
        await asyncio.sleep(0)
        seen.append("async")

    handles = [aiosig.add_handler(signal.SIGUSR1, sync), aiosig.add_handler(signal.SIGUSR1, coro)]
    try:
        await send(signal.SIGUSR1)
        await until(lambda: sorted(seen) == ["async", "sync SIGUSR1"])
    finally:
        for handle in handles:
            handle.remove()
            handle.remove()  # idempotent


class Gate:
    """An async handler that blocks until released, counting runs."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.release = asyncio.Event()

    async def __call__(self, info: aiosig.SigInfo) -> None:
        self.started += 1
        await self.release.wait()
        self.finished += 1


async def _burst_during_a_run(
    policy: aiosig.Policy, wrap: Callable[[Gate], Callable[[aiosig.SigInfo], object]] = lambda g: g
) -> Gate:
    gate = Gate()
    handle = aiosig.add_handler(signal.SIGUSR1, wrap(gate), policy=policy)
    try:
        await send(signal.SIGUSR1)
        await until(lambda: gate.started == 1)
        for _ in range(3):  # three separate deliveries while the first run is blocked
            await send(signal.SIGUSR1)
        await asyncio.sleep(0.1)
        gate.release.set()
        await asyncio.sleep(0.1)
        await until(lambda: gate.finished == gate.started)
    finally:
        await handle.aclose()
    return gate


@pytest.mark.asyncio
async def test_serial_policy_coalesces_a_burst_during_a_run_into_one_more_run() -> None:
    gate = await _burst_during_a_run("serial")
    assert gate.started == 2


@pytest.mark.asyncio
async def test_drop_policy_ignores_deliveries_during_a_run() -> None:
    gate = await _burst_during_a_run("drop")
    assert gate.started == 1


@pytest.mark.asyncio
async def test_concurrent_policy_runs_a_task_per_delivery() -> None:
    gate = await _burst_during_a_run("concurrent")
    assert gate.started == 4


@pytest.mark.parametrize(("policy", "runs"), [("serial", 2), ("drop", 1), ("concurrent", 4)])
@pytest.mark.asyncio
async def test_policy_applies_to_a_plain_function_that_returns_a_coroutine(
    policy: aiosig.Policy, runs: int
) -> None:
    gate = await _burst_during_a_run(policy, lambda gate: lambda info: gate(info))
    assert gate.started == runs


@pytest.mark.asyncio
async def test_handler_exception_goes_to_loop_exception_handler_and_dispatch_continues() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))
    runs: list[int] = []

    async def broken(info: aiosig.SigInfo) -> None:
        runs.append(1)
        raise KeyError("boom")

    def broken_sync(info: aiosig.SigInfo) -> None:
        raise ValueError("sync boom")

    handles = [
        aiosig.add_handler(signal.SIGUSR1, broken),
        aiosig.add_handler(signal.SIGUSR1, broken_sync),
    ]
    try:
        await send(signal.SIGUSR1)
        await until(lambda: len(contexts) == 2)
        await send(signal.SIGUSR1)
        await until(lambda: len(contexts) == 4 and len(runs) == 2)
        kinds = sorted(type(c["exception"]).__name__ for c in contexts)
        assert kinds == ["KeyError", "KeyError", "ValueError", "ValueError"]
    finally:
        for handle in handles:
            handle.remove()
        loop.set_exception_handler(None)


@pytest.mark.asyncio
async def test_removing_a_handle_cancels_and_awaits_running_tasks() -> None:
    cancelled = asyncio.Event()

    async def forever(info: aiosig.SigInfo) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    handle = aiosig.add_handler(signal.SIGUSR1, forever, policy="concurrent")
    await send(signal.SIGUSR1)
    await until(lambda: bool(handle._tasks))
    await asyncio.wait_for(handle.aclose(), TIMEOUT)
    assert cancelled.is_set() and handle.removed


@pytest.mark.asyncio
async def test_on_decorator_inside_a_loop_registers_at_once() -> None:
    seen: list[int] = []

    @aiosig.on(signal.SIGUSR1, signal.SIGUSR2)
    def record(info: aiosig.SigInfo) -> None:
        seen.append(int(info.si_signo))

    try:
        await send(signal.SIGUSR2)
        await until(lambda: seen == [signal.SIGUSR2])
    finally:
        record.aiosig_handle.remove()  # type: ignore[attr-defined]


def test_add_handler_without_a_running_loop_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"aiosig\.on.*aiosig\.run"):
        aiosig.add_handler(signal.SIGUSR1, print)


@pytest.mark.asyncio
async def test_bad_policy_and_bad_signal_are_refused() -> None:
    with pytest.raises(ValueError, match="policy must be one of"):
        aiosig.add_handler(signal.SIGUSR1, print, policy="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        aiosig.add_handler(0, print)
    with pytest.raises(TypeError, match="callable"):
        aiosig.add_handler(signal.SIGUSR1, 42)  # type: ignore[arg-type]


LOOP_CLOSES_WITH_RUNNING_HANDLER = textwrap.dedent(
    """
    import asyncio, os, signal, sys, warnings
    import aiosig
    warnings.simplefilter("error")

    async def slow(info):
        try:
            await asyncio.sleep(3600)
        finally:
            print("handler finally ran")

    async def main():
        aiosig.add_handler(signal.SIGUSR1, slow)
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.sleep(0.2)

    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    print("READY")
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_handler_task_running_when_the_loop_closes_is_cancelled_not_destroyed(flavour: str) -> None:
    child = run_child(LOOP_CLOSES_WITH_RUNNING_HANDLER, flavour)
    returncode, _, err = finish(child)
    assert "handler finally ran" in child.before_ready
    assert "destroyed but it is pending" not in err
    assert returncode == 0, err


MODULE_LEVEL_ON = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import aiosig

    seen = []

    @aiosig.on(signal.SIGUSR1)
    async def reload(info):
        seen.append(int(info.si_signo))

    async def main():
        os.kill(os.getpid(), signal.SIGUSR1)
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.01)
        return "main returned"

    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
    print(aiosig.run(main(), loop_factory=factory), seen)
    print("default after run", signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)
    print("READY")
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_module_level_on_registers_for_the_next_aiosig_run(flavour: str) -> None:
    child = run_child(MODULE_LEVEL_ON, flavour)
    assert "main returned [10]" in child.before_ready
    assert "default after run True" in child.before_ready
    finish(child)


CTRL_C_HANDLER = textwrap.dedent(
    """
    import asyncio, signal, sys
    import aiosig

    flavour, how = sys.argv[1], sys.argv[2]
    got = []

    if how == "on":
        @aiosig.on(signal.SIGINT, chain=False)
        def record(info):
            got.append(info.si_signo.name)

    async def main():
        handle = None
        if how == "add_handler":
            handle = aiosig.add_handler(
                signal.SIGINT, lambda info: got.append(info.si_signo.name), chain=False
            )
        print("READY")
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # Runner's Ctrl-C handler would cancel us by now
        if handle is not None:
            handle.remove()
        return "main finished " + " ".join(got)

    factory = None if flavour == "asyncio" else __import__("uvloop").new_event_loop
    # Under aiosig.run SIGINT stops the service unless it is taken out of stop_signals.
    print(aiosig.run(main(), loop_factory=factory, stop_signals={signal.SIGTERM}))
    """
)


@pytest.mark.parametrize("how", ["add_handler", "on"])
@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_ctrl_c_with_chain_false_runs_the_handler_and_does_not_cancel_main(
    flavour: str, how: str
) -> None:
    child = run_child(CTRL_C_HANDLER, flavour, how)
    child.send_signal(signal.SIGINT)
    returncode, out, err = finish(child)
    assert "main finished SIGINT" in out, err
    assert returncode == 0, err


RUN_TWICE = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import aiosig

    seen = []

    @aiosig.on(signal.SIGUSR1)
    def record(info):
        seen.append(int(info.si_signo))

    async def main():
        os.kill(os.getpid(), signal.SIGUSR1)
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.01)
        seen.clear()
        return "handled"

    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
    print("first", aiosig.run(main(), loop_factory=factory))
    print("second", aiosig.run(main(), loop_factory=factory))
    print("default after runs", signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)
    print("READY")
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_every_aiosig_run_starts_the_handlers_recorded_at_module_level(flavour: str) -> None:
    child = run_child(RUN_TWICE, flavour)
    assert "first handled" in child.before_ready
    assert "second handled" in child.before_ready
    assert "default after runs True" in child.before_ready
    finish(child)


RUN_WITH_A_HANDLER_THAT_CANNOT_START = textwrap.dedent(
    """
    import signal, sys, uvloop
    import aiosig

    @aiosig.on(signal.SIGHUP)
    async def reload(info):
        pass

    @aiosig.on(signal.SIGCHLD)  # refused on uvloop: libuv owns SIGCHLD
    async def reap(info):
        pass

    async def main():
        print("main ran")

    try:
        aiosig.run(main(), loop_factory=uvloop.new_event_loop)
    except RuntimeError as exc:
        print("refused:", "SIGCHLD" in str(exc))
    print("SIGHUP default again:", signal.getsignal(signal.SIGHUP) == signal.SIG_DFL)
    print("READY")
    """
)


def test_aiosig_run_removes_the_started_handlers_when_a_later_one_cannot_start() -> None:
    child = run_child(RUN_WITH_A_HANDLER_THAT_CANNOT_START)
    returncode, _, err = finish(child)
    assert "refused: True" in child.before_ready
    assert "main ran" not in child.before_ready
    assert "SIGHUP default again: True" in child.before_ready
    assert "never awaited" not in err, err
    assert returncode == 0, err
