"""The hub: ownership of the wakeup fd, cooperation with asyncio/uvloop, counting, threads.

Real signals from real processes; every async test runs on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import signal
import textwrap
import threading
from collections.abc import Callable

import pytest

from aiosig._hub import get_hub
from aiosig._siginfo import SigInfo
from tests._signal_state import read_wakeup_fd
from tests._util import finish, run_child, send, until

TIMEOUT = 10.0


class Collector:
    """A deliver callback that records deliveries and lets a test await a count."""

    def __init__(self) -> None:
        self.infos: list[SigInfo] = []
        self._changed = asyncio.Event()

    def __call__(self, info: SigInfo) -> None:
        self.infos.append(info)
        self._changed.set()

    def count(self, signum: int) -> int:
        return sum(1 for i in self.infos if i.si_signo == signum)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


# ---- basic delivery and restoration ----------------------------------------------------------


@pytest.mark.asyncio
async def test_subscription_receives_signal_sent_by_another_process() -> None:
    got = Collector()
    sub = get_hub().subscribe([signal.SIGUSR1], got)
    try:
        await send(signal.SIGUSR1)
        await got.wait_for(lambda: got.count(signal.SIGUSR1) == 1)
        assert got.infos[0] == SigInfo(signal.SIGUSR1)
        assert got.infos[0].si_pid is None  # a plain delivery never invents a pid
    finally:
        sub.close()


@pytest.mark.asyncio
async def test_two_subscriptions_each_see_every_delivery() -> None:
    a, b = Collector(), Collector()
    sub_a = get_hub().subscribe([signal.SIGUSR1], a)
    sub_b = get_hub().subscribe([signal.SIGUSR1, signal.SIGUSR2], b)
    try:
        await send(signal.SIGUSR1)
        await send(signal.SIGUSR2)
        await b.wait_for(lambda: len(b.infos) == 2)
        await a.wait_for(lambda: len(a.infos) == 1)
        assert [i.si_signo for i in b.infos] == [signal.SIGUSR1, signal.SIGUSR2]
    finally:
        sub_a.close()
        sub_b.close()


@pytest.mark.parametrize("order", ["fifo", "lifo"])
@pytest.mark.asyncio
async def test_last_close_restores_saved_disposition_and_wakeup_fd_in_any_order(
    order: str,
) -> None:
    def user_handler(signum: int, frame: object) -> None:
        pass

    before_fd = read_wakeup_fd()
    previous = signal.signal(signal.SIGUSR1, user_handler)
    try:
        subs = [get_hub().subscribe([signal.SIGUSR1], Collector()) for _ in range(3)]
        assert signal.getsignal(signal.SIGUSR1) is not user_handler
        for sub in subs if order == "fifo" else reversed(subs):
            sub.close()
            sub.close()  # idempotent
        assert signal.getsignal(signal.SIGUSR1) is user_handler
        assert read_wakeup_fd() == before_fd
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.asyncio
async def test_trampoline_chains_to_the_previous_python_handler() -> None:
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: calls.append(s))
    got = Collector()
    sub = get_hub().subscribe([signal.SIGUSR1], got)
    try:
        await send(signal.SIGUSR1)
        await got.wait_for(lambda: got.count(signal.SIGUSR1) == 1)
        await until(lambda: calls == [signal.SIGUSR1])
    finally:
        sub.close()
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.asyncio
async def test_callback_exception_goes_to_loop_exception_handler_and_dispatch_continues() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))

    def broken(info: SigInfo) -> None:
        raise ZeroDivisionError

    got = Collector()
    subs = [
        get_hub().subscribe([signal.SIGUSR1], broken),
        get_hub().subscribe([signal.SIGUSR1], got),
    ]
    try:
        await send(signal.SIGUSR1)
        await got.wait_for(lambda: len(got.infos) == 1)
        assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    finally:
        for sub in subs:
            sub.close()
        loop.set_exception_handler(None)


# ---- refusals ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_refuses_what_cannot_be_handled() -> None:
    hub = get_hub()
    for signum in (signal.SIGKILL, signal.SIGSTOP):
        with pytest.raises(OSError) as exc_info:
            hub.subscribe([signum], Collector())
        with pytest.raises(OSError) as stdlib_info:
            signal.signal(signum, signal.SIG_DFL)
        assert (exc_info.value.errno, str(exc_info.value)) == (
            stdlib_info.value.errno,
            str(stdlib_info.value),
        )
    for signum in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL):
        with pytest.raises(ValueError, match="faulthandler"):
            hub.subscribe([signum], Collector())
    bad_input = (
        (0, ValueError),
        (signal.NSIG, ValueError),
        ("x", TypeError),
        (None, TypeError),
        (2**40, OverflowError),
    )
    for bad, exc in bad_input:
        with pytest.raises(exc) as ours:
            hub.subscribe([bad], Collector())  # type: ignore[list-item]
        with pytest.raises(exc) as theirs:
            signal.signal(bad, signal.SIG_DFL)  # type: ignore[arg-type]
        assert str(ours.value) == str(theirs.value)


@pytest.mark.asyncio(loop_factories=["uvloop"])
async def test_sigchld_on_uvloop_is_refused_with_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"uvloop.*instead"):
        get_hub().subscribe([signal.SIGCHLD], Collector())


def test_sigint_before_the_loop_runs_is_refused(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    loop = loop_factory()
    try:
        with pytest.raises(RuntimeError, match="inside the running loop"):
            get_hub().subscribe([signal.SIGINT], Collector(), loop=loop)
    finally:
        loop.close()


# ---- cooperation with asyncio's and uvloop's own signal handling -------------------------------


@pytest.mark.asyncio
async def test_add_signal_handler_before_and_after_aiosig_keep_firing() -> None:
    loop = asyncio.get_running_loop()
    before_fd = read_wakeup_fd()
    before_disp = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)}
    fired: list[str] = []
    loop.add_signal_handler(signal.SIGUSR1, fired.append, "before")
    got = Collector()
    sub = get_hub().subscribe([signal.SIGUSR1, signal.SIGUSR2], got)
    loop.add_signal_handler(signal.SIGHUP, fired.append, "after")
    try:
        # SIGUSR2's byte goes to the loop's fd (add_signal_handler took it); aiosig's trampoline
        # notices, recovers the delivery and takes the fd back, chaining to the loop's.
        await send(signal.SIGUSR2)
        await got.wait_for(lambda: got.count(signal.SIGUSR2) == 1)
        await send(signal.SIGUSR1)
        await send(signal.SIGHUP)
        await got.wait_for(lambda: got.count(signal.SIGUSR1) == 1)
        await until(lambda: sorted(fired) == ["after", "before"])
        assert got.count(signal.SIGUSR2) == 1
    finally:
        sub.close()
        loop.remove_signal_handler(signal.SIGUSR1)
        loop.remove_signal_handler(signal.SIGHUP)
    if isinstance(loop, asyncio.SelectorEventLoop):
        # asyncio's last remove_signal_handler sets the fd to -1 and the dispositions to SIG_DFL.
        assert read_wakeup_fd().fd == -1
    assert {s: signal.getsignal(s) for s in before_disp} == before_disp
    del before_fd


@pytest.mark.asyncio
async def test_add_signal_handler_for_the_same_signal_after_aiosig_is_adopted() -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    got = Collector()
    sub = get_hub().subscribe([signal.SIGUSR1], got)
    loop.add_signal_handler(signal.SIGUSR1, fired.append, "loop")
    # The next aiosig entry point re-installs the trampoline in front, chaining to the loop's.
    other = get_hub().subscribe([signal.SIGUSR2], Collector())
    try:
        await send(signal.SIGUSR1)
        await got.wait_for(lambda: got.count(signal.SIGUSR1) == 1)
        await until(lambda: fired == ["loop"])
    finally:
        other.close()
        sub.close()
        loop.remove_signal_handler(signal.SIGUSR1)


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_subscriptions_survive_remove_signal_handler_resetting_the_fd() -> None:
    loop = asyncio.get_running_loop()
    got = Collector()
    sub = get_hub().subscribe([signal.SIGUSR1], got)
    loop.add_signal_handler(signal.SIGUSR2, lambda: None)
    loop.remove_signal_handler(signal.SIGUSR2)  # the last one: set_wakeup_fd(-1)
    assert read_wakeup_fd().fd == -1
    try:
        for n in (1, 2, 3):
            await send(signal.SIGUSR1)
            await got.wait_for(lambda n=n: got.count(signal.SIGUSR1) == n)  # type: ignore[misc]
    finally:
        sub.close()


def test_subscription_keeps_working_across_two_uvloop_runs() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    got: list[SigInfo] = []
    try:

        async def subscribe() -> object:
            return get_hub().subscribe([signal.SIGUSR1], got.append)

        sub = loop.run_until_complete(subscribe())

        async def one_more(n: int) -> None:
            await send(signal.SIGUSR1)
            await until(lambda: len(got) == n)

        loop.run_until_complete(one_more(1))
        loop.run_until_complete(one_more(2))  # uvloop took the fd again at this run's start
        loop.run_until_complete(one_more(3))
        sub.close()  # type: ignore[attr-defined]
    finally:
        loop.close()


# ---- counting ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_ten_thousand_realtime_signals_from_a_child_are_counted_exactly() -> None:
    got = Collector()
    sub = get_hub().subscribe([signal.SIGRTMIN], got)
    try:
        await send(signal.SIGRTMIN, 10_000)
        await got.wait_for(lambda: len(got.infos) >= 10_000)
        await asyncio.sleep(0.1)  # nothing more may come
        assert len(got.infos) == 10_000
    finally:
        sub.close()


@pytest.mark.asyncio
async def test_burst_of_standard_signal_gives_at_least_one_and_never_more_than_sent() -> None:
    got = Collector()
    sub = get_hub().subscribe([signal.SIGUSR1], got)
    try:
        await send(signal.SIGUSR1, 1000)
        await got.wait_for(lambda: len(got.infos) >= 1)
        await asyncio.sleep(0.1)
        assert 1 <= len(got.infos) <= 1000
        # ... and one after the last send: a lone send after the burst is always seen.
        seen = len(got.infos)
        await send(signal.SIGUSR1)
        await got.wait_for(lambda: len(got.infos) == seen + 1)
    finally:
        sub.close()


# ---- processes and threads --------------------------------------------------------------------

FORK_CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from aiosig._hub import get_hub

    async def main():
        got = []
        sub = get_hub().subscribe([signal.SIGUSR1], got.append)
        pid = os.fork()
        if pid == 0:
            # The child: the parent's subscription is gone; signalling ourselves must not
            # reach the parent, and aiosig must work here.
            async def child():
                mine = []
                s = get_hub().subscribe([signal.SIGUSR1], mine.append)
                os.kill(os.getpid(), signal.SIGUSR1)
                async with asyncio.timeout(5):
                    while not mine:
                        await asyncio.sleep(0.01)
                s.close()
                return len(mine) == 1 and not got
            ok = asyncio.new_event_loop().run_until_complete(child())
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        await asyncio.sleep(0.2)
        assert not got, f"the child's signal reached the parent: {got}"
        os.kill(os.getpid(), signal.SIGUSR1)
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0.01)
        sub.close()
        print("child status", os.waitstatus_to_exitcode(status))
        print("READY")

    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_forked_child_does_not_deliver_into_parent_and_aiosig_works_in_child(flavour: str) -> None:
    child = run_child(FORK_CHILD, flavour)
    returncode, _, err = finish(child)
    assert returncode == 0, err
    assert "child status 0" in child.before_ready


@pytest.mark.asyncio
async def test_loop_in_non_main_thread_receives_signal() -> None:
    received = threading.Event()
    errors: list[BaseException] = []

    def thread_main() -> None:
        async def run() -> None:
            got = Collector()
            sub = get_hub().subscribe([signal.SIGUSR1], got)  # installed via the main loop
            try:
                await send(signal.SIGUSR1)
                await got.wait_for(lambda: len(got.infos) == 1)
                received.set()
            finally:
                sub.close()

        try:
            asyncio.run(run())
        except BaseException as exc:
            errors.append(exc)

    # The main thread's loop uses aiosig (for another signal): it installs on the thread's behalf.
    main_sub = get_hub().subscribe([signal.SIGUSR2], Collector())
    thread = threading.Thread(target=thread_main)
    thread.start()
    await until(lambda: not thread.is_alive())
    thread.join()
    main_sub.close()
    assert not errors, errors
    assert received.is_set()
    await asyncio.sleep(0.05)  # the release is handed to this (the main) loop


def test_non_main_thread_without_main_loop_gets_clear_error_or_uses_reservation() -> None:
    outcome: list[object] = []

    def attempt() -> None:
        async def run() -> None:
            try:
                get_hub().subscribe([signal.SIGUSR2], Collector())
            except RuntimeError as exc:
                outcome.append(exc)

        asyncio.run(run())

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(TIMEOUT)
    assert isinstance(outcome[0], RuntimeError)
    assert "main thread" in str(outcome[0]) and "SIGUSR2" in str(outcome[0])

    reservation = get_hub().reserve([signal.SIGUSR2])
    counts: list[int] = []

    def with_reservation() -> None:
        async def run() -> None:
            got = Collector()
            sub = get_hub().subscribe([signal.SIGUSR2], got)
            await send(signal.SIGUSR2)
            await got.wait_for(lambda: len(got.infos) == 1)
            sub.close()
            counts.append(len(got.infos))

        asyncio.run(run())

    thread = threading.Thread(target=with_reservation)
    thread.start()
    thread.join(TIMEOUT)
    reservation.close()
    assert counts == [1]


# ---- Ctrl-C -----------------------------------------------------------------------------------

CTRL_C_CHILD = textwrap.dedent(
    """
    import asyncio, signal, sys
    from aiosig._hub import get_hub

    async def main():
        subs = [get_hub().subscribe([signal.SIGUSR1], lambda i: None)]
        if sys.argv[2] == "subscribed":
            subs.append(get_hub().subscribe([signal.SIGINT], lambda i: print("aiosig saw SIGINT")))
        print("READY")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            print("main cancelled")
            raise
        finally:
            for s in subs:
                s.close()

    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    """
)


@pytest.mark.parametrize("subscribed", ["subscribed", "unsubscribed"])
@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_ctrl_c_still_cancels_main_task_and_ends_in_keyboard_interrupt(
    flavour: str, subscribed: str
) -> None:
    child = run_child(CTRL_C_CHILD, flavour, subscribed)
    child.send_signal(signal.SIGINT)
    returncode, out, err = finish(child)
    assert "main cancelled" in out
    assert "KeyboardInterrupt" in err
    assert returncode == -signal.SIGINT


# ---- many subscriptions of one signal (the table is a dict, issue 10) -------------------------


@pytest.mark.asyncio
async def test_many_subscriptions_of_one_signal_receive_in_order_after_some_closed() -> None:
    order: list[int] = []
    subs = [
        get_hub().subscribe([signal.SIGUSR1], lambda info, n=n: order.append(n)) for n in range(60)
    ]
    try:
        for n in range(0, 60, 3):
            subs[n].close()
        subs[1].close()
        subs[1].close()  # idempotent
        alive = [n for n in range(60) if n % 3 and n != 1]
        await send(signal.SIGUSR1)
        await until(lambda: len(order) >= len(alive), TIMEOUT)
        assert order == alive
    finally:
        for sub in subs:
            sub.close()


@pytest.mark.asyncio
async def test_user_handler_is_chained_again_only_when_every_taking_over_subscription_closed() -> (
    None
):
    import aiosig.core

    calls: list[int] = []
    got = Collector()
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    try:
        takers = [get_hub().subscribe([signal.SIGUSR1], got, chain=False) for _ in range(2)]
        plain = get_hub().subscribe([signal.SIGUSR1], got)
        try:
            takers[0].close()
            await send(signal.SIGUSR1)
            await got.wait_for(lambda: len(got.infos) == 2)
            assert calls == []  # one subscription still takes the signal over
            takers[1].close()
            await send(signal.SIGUSR1)
            await got.wait_for(lambda: len(got.infos) == 3)
            assert calls == [signal.SIGUSR1]
            assert aiosig.core.getsignal(signal.SIGUSR1) is not None
        finally:
            for sub in (*takers, plain):
                sub.close()
    finally:
        signal.signal(signal.SIGUSR1, previous)
