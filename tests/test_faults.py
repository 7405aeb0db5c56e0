"""Faults: handlers that raise, block or close themselves, fork under a flood, exit with all open.

Each case runs in a fresh interpreter per loop flavour (the ``*_main`` functions below are
the children's programs; each prints a JSON report, then READY, and the test checks it).
Signals come from separate processes (``tests._load.burst``: real-time signals carrying
their sequence number, so a precise receiver can tell order and duplicates). "plain" is a
real-time signal that is not blocked (the wakeup-fd path), "precise" one that is blocked
(the loop's signalfd).

What a buffered SIGTERM does at exit: a delivery a receiver took and nobody consumed is
raised again once the disposition is back (``_receiver`` Rule 3), however the program
ends: at the end of ``asyncio.run``, when the loop is closed without shutting down, and when
the interpreter exits with the loop still open. A program that wants to exit 0 consumes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest

import aiosig
from aiosig._hub import get_hub
from tests._load import (
    RT_PLAIN,
    RT_PRECISE,
    Leaks,
    burst,
    loop_factory,
    start_burst,
    warm_up,
)
from tests._util import finish, run_child

FLAVOURS = ["asyncio", "uvloop"]
PATHS = ["plain", "precise"]


def _run(program: str, *args: str, timeout: float = 30) -> tuple[dict[str, Any], int, str]:
    code = f"from tests.test_faults import {program}; {program}()"
    child = run_child(code, *args, timeout=timeout)
    returncode, _, err = finish(child)
    return json.loads(child.before_ready), returncode, err


def _report(report: dict[str, Any]) -> None:
    print(json.dumps(report))
    print("READY")


def _signal_for(path: str) -> int:
    """The path's signal; blocked (for good: the child is ours) when it is the precise one."""
    if path == "precise":
        signal.pthread_sigmask(signal.SIG_BLOCK, {RT_PRECISE})
        return RT_PRECISE
    return RT_PLAIN


async def _until(predicate: Any, timeout: float = 5.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)
    except TimeoutError:
        return False
    return True


async def _take_all(receiver: aiosig.SignalReceiver) -> list[aiosig.SigInfo]:
    """What the receiver buffered, consumed (a buffered delivery is raised again at exit)."""
    return [await anext(receiver) for _ in range(receiver.pending)]


# ---- handlers that raise an Exception --------------------------------------------------------

N = 50


def exceptions_main() -> None:
    flavour = sys.argv[1]

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(
            lambda loop, context: reported.append(repr(context.get("exception")))
        )
        calls: Counter[str] = Counter()

        def bad(info: aiosig.SigInfo) -> None:
            calls[f"sync {info.si_signo}"] += 1
            raise ValueError("bad")

        async def bad_async(info: aiosig.SigInfo) -> None:
            calls[f"async {info.si_signo}"] += 1
            raise ValueError("bad async")

        for signum in (RT_PLAIN, RT_PRECISE):
            aiosig.add_handler(signum, bad)
            aiosig.add_handler(signum, bad_async, policy="concurrent")
        receiver = aiosig.open_signal_receiver(RT_PLAIN, RT_PRECISE)  # after: later in a batch
        for signum in (RT_PLAIN, RT_PRECISE):
            await asyncio.to_thread(burst, os.getpid(), signum, N)
        await _until(lambda: receiver.pending >= 2 * N and len(reported) >= 4 * N)
        await asyncio.sleep(0.05)
        infos = await _take_all(receiver)
        return {
            "calls": dict(calls),
            "reported": dict(Counter(reported)),
            "received": dict(Counter(str(i.si_signo) for i in infos)),
            "precise values": [i.si_value for i in infos if i.precise],
        }

    signal.pthread_sigmask(signal.SIG_BLOCK, {RT_PRECISE})
    with asyncio.Runner(loop_factory=loop_factory(flavour)) as runner:
        _report(runner.run(main()))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_handler_exceptions_go_to_the_loop_and_dispatch_continues(flavour: str) -> None:
    report, returncode, err = _run("exceptions_main", flavour)
    expected = {f"{kind} {s}": N for kind in ("sync", "async") for s in (RT_PLAIN, RT_PRECISE)}
    assert report["calls"] == expected, report
    assert report["reported"] == {
        "ValueError('bad')": 2 * N,
        "ValueError('bad async')": 2 * N,
    }, report
    assert report["received"] == {str(RT_PLAIN): N, str(RT_PRECISE): N}, report
    assert report["precise values"] == list(range(N)), report
    assert returncode == 0, err


# ---- handlers that raise KeyboardInterrupt or SystemExit -------------------------------------


def escape_main() -> None:
    flavour, exc_name, path = sys.argv[1:4]
    escape = {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit}[exc_name]
    signum = _signal_for(path)
    loop = loop_factory(flavour)()
    calls: Counter[str] = Counter()
    worker_got: list[int] = []
    worker_ready = threading.Event()

    def boom(info: aiosig.SigInfo) -> None:
        calls["boom"] += 1
        if calls["boom"] == 1:
            raise escape()

    async def worker() -> None:  # another loop: precise delivery is per loop, plain only
        async with aiosig.open_signal_receiver(RT_PLAIN) as receiver:
            worker_ready.set()
            async with asyncio.timeout(10):
                while len(worker_got) < N:
                    worker_got.append((await anext(receiver)).si_signo)

    async def setup() -> aiosig.SignalReceiver:
        aiosig.add_handler(signum, boom)  # first: the others come after it in each batch
        receiver = aiosig.open_signal_receiver(signum)
        aiosig.add_handler(signum, lambda info: calls.update(["counter"]))
        return receiver

    receiver = loop.run_until_complete(setup())
    thread = threading.Thread(target=asyncio.run, args=(worker(),))
    if path == "plain":
        thread.start()
        worker_ready.wait(5)

    async def flood() -> None:
        # uvloop took the wakeup fd at the start of this run: an aiosig call takes it back
        # (a plain burst that finds it taken shrinks to one delivery: _hub, Rule 3).
        aiosig.open_signal_receiver(signum).close()
        burst(os.getpid(), signum, N)  # the loop waits for it: one read, one batch
        await asyncio.sleep(3)

    try:
        loop.run_until_complete(flood())
        outcome = "did not escape"
    except escape:
        outcome = "escaped"
    loop.run_until_complete(_until(lambda: receiver.pending >= N and calls["counter"] >= N))
    loop.run_until_complete(asyncio.sleep(0.05))
    values = [i.si_value for i in loop.run_until_complete(_take_all(receiver))]
    receiver.close()
    if path == "plain":
        thread.join(10)
    report = {
        "outcome": outcome,
        "calls": dict(calls),
        "received": len(values),
        "values in order": values == list(range(N)) if path == "precise" else None,
        "worker": len(worker_got) if path == "plain" else None,
    }
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    _report(report)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("exc", ["KeyboardInterrupt", "SystemExit"])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_keyboard_interrupt_and_system_exit_escape_the_run_and_lose_no_delivery(
    flavour: str, exc: str, path: str
) -> None:
    report, returncode, err = _run("escape_main", flavour, exc, path)
    assert report["outcome"] == "escaped", report
    assert report["calls"] == {"boom": N, "counter": N}, report
    assert report["received"] == N, report
    if path == "precise":
        assert report["values in order"], report
    else:
        assert report["worker"] == N, report
    assert returncode == 0, err


# ---- a handler that blocks the loop ----------------------------------------------------------

FLOOD = 2000


def blocked_loop_main() -> None:
    flavour = sys.argv[1]

    async def main() -> dict[str, Any]:
        calls: Counter[int] = Counter()

        def hog(info: aiosig.SigInfo) -> None:
            if not calls[signal.SIGUSR1]:  # the loop stops here while the floods arrive
                burst(os.getpid(), RT_PLAIN, FLOOD)
                burst(os.getpid(), RT_PRECISE, FLOOD)
                time.sleep(0.3)
            calls[signal.SIGUSR1] += 1

        receiver = aiosig.open_signal_receiver(signal.SIGUSR1, RT_PLAIN, RT_PRECISE)
        aiosig.add_handler(signal.SIGUSR1, hog)
        for signum in (RT_PLAIN, RT_PRECISE):
            aiosig.add_handler(signum, lambda info: calls.update([int(info.si_signo)]))
        await asyncio.to_thread(os.kill, os.getpid(), signal.SIGUSR1)
        await _until(lambda: receiver.pending >= 2 * FLOOD + 1)
        await asyncio.sleep(0.05)
        infos = await _take_all(receiver)
        return {
            "received": dict(Counter(str(i.si_signo) for i in infos)),
            "handled": {str(k): v for k, v in calls.items()},
            "values in order": [i.si_value for i in infos if i.precise] == list(range(FLOOD)),
        }

    signal.pthread_sigmask(signal.SIG_BLOCK, {RT_PRECISE})
    with asyncio.Runner(loop_factory=loop_factory(flavour)) as runner:
        _report(runner.run(main()))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_deliveries_while_a_handler_blocks_the_loop_are_all_delivered_after(flavour: str) -> None:
    report, returncode, err = _run("blocked_loop_main", flavour)
    counts = {str(signal.SIGUSR1): 1, str(RT_PLAIN): FLOOD, str(RT_PRECISE): FLOOD}
    assert report["received"] == counts, report
    assert report["handled"] == counts, report
    assert report["values in order"], report
    assert returncode == 0, err


# ---- subscribers that close themselves while running -----------------------------------------


def self_closing_main() -> None:
    flavour, path = sys.argv[1:3]
    signum = _signal_for(path)
    factory = loop_factory(flavour)
    warm_up(factory)
    before = Leaks()

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda loop, context: reported.append(str(context)))
        calls: Counter[str] = Counter()
        handles: dict[str, aiosig.HandlerHandle] = {}

        def sync(info: aiosig.SigInfo) -> None:
            calls["sync"] += 1
            handles["sync"].remove()

        async def serial(info: aiosig.SigInfo) -> None:
            calls["serial"] += 1
            handles["serial"].remove()  # cancels this very run: it ends at the next await
            await asyncio.sleep(0)
            calls["serial after remove"] += 1

        async def concurrent(info: aiosig.SigInfo) -> None:
            calls["concurrent"] += 1
            await handles["concurrent"].aclose()

        # A receiver that outlives them: what the others buffered was received by someone.
        witness = aiosig.open_signal_receiver(signum)
        handles["sync"] = aiosig.add_handler(signum, sync)
        handles["serial"] = aiosig.add_handler(signum, serial)
        handles["concurrent"] = aiosig.add_handler(signum, concurrent, policy="concurrent")
        closing = aiosig.open_signal_receiver(signum)

        async def close_on_first() -> None:
            async for _ in closing:
                calls["receiver"] += 1
                closing.close()

        drain = asyncio.ensure_future(close_on_first())
        await asyncio.to_thread(burst, os.getpid(), signum, 10)
        await _until(lambda: witness.pending >= 10 and drain.done())
        await asyncio.sleep(0.05)
        await asyncio.to_thread(burst, os.getpid(), signum, 10)  # after: nobody but the witness
        await _until(lambda: witness.pending >= 20)
        await asyncio.sleep(0.05)
        await _take_all(witness)
        witness.close()
        return {
            "calls": dict(calls),
            "removed": all(h.removed for h in handles.values()),
            "reported": reported,
            "drain": repr(drain.exception()),
        }

    with asyncio.Runner(loop_factory=factory) as runner:
        report = runner.run(main())
    report["leaks"] = before.compare()
    _report(report)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_subscribers_closing_themselves_while_running_get_nothing_more(
    flavour: str, path: str
) -> None:
    report, returncode, err = _run("self_closing_main", flavour, path)
    assert report["calls"] == {"sync": 1, "serial": 1, "concurrent": 1, "receiver": 1}, report
    assert report["removed"], report
    assert report["reported"] == [], report
    assert report["drain"] == "None", report
    assert report["leaks"] == [], report
    assert returncode == 0, err


# ---- fork while a flood arrives --------------------------------------------------------------

FORK_FLOOD = 10000
FORKS = 5


def _in_forked_child(flavour: str) -> int:
    """The forked child's program: its hub starts clean and serves its own signals."""
    problems = []
    hub = get_hub()
    if any(hub.holds(s) for s in (RT_PLAIN, RT_PRECISE)):
        problems.append("the parent's signals are still held")
    if signal.getsignal(RT_PLAIN) != signal.SIG_DFL:
        problems.append(f"RT_PLAIN disposition {signal.getsignal(RT_PLAIN)!r}")
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        problems.append(f"wakeup fd {fd} (the parent's)")

    async def main() -> None:
        async with aiosig.open_signal_receiver(RT_PLAIN, RT_PRECISE) as receiver:
            for signum in (RT_PLAIN, RT_PRECISE):
                for value in range(5):
                    aiosig.sigqueue(os.getpid(), signum, value)
            got: Counter[int] = Counter()
            async with asyncio.timeout(5):
                while sum(got.values()) < 10:
                    got[int((await anext(receiver)).si_signo)] += 1
            await asyncio.sleep(0.05)
            if got != {RT_PLAIN: 5, RT_PRECISE: 5} or receiver.pending:
                problems.append(f"the child received {dict(got)} + {receiver.pending}")

    try:
        with asyncio.Runner(loop_factory=loop_factory(flavour)) as runner:
            runner.run(main())
    except BaseException as exc:
        problems.append(repr(exc))
    if get_hub().holds(RT_PLAIN):
        problems.append("the child's hub still holds RT_PLAIN")
    if problems:
        os.write(2, ("\n".join(problems) + "\n").encode())
    return 1 if problems else 0


def fork_main() -> None:
    flavour = sys.argv[1]

    async def main() -> dict[str, Any]:
        receiver = aiosig.open_signal_receiver(RT_PLAIN, RT_PRECISE)
        # Processes, not threads: the fork must not copy a thread's half-done work.
        floods = [start_burst(os.getpid(), s, FORK_FLOOD, 1.0) for s in (RT_PLAIN, RT_PRECISE)]
        statuses = []
        during = 0
        while len(statuses) < FORKS:
            await asyncio.sleep(0.001)
            if not receiver.pending:
                continue  # fork once the flood is arriving
            during += any(flood.poll() is None for flood in floods)
            pid = os.fork()
            if pid == 0:
                os._exit(_in_forked_child(flavour))
            while (status := os.waitpid(pid, os.WNOHANG))[0] == 0:
                await asyncio.sleep(0.005)
            statuses.append(os.waitstatus_to_exitcode(status[1]))
        await _until(lambda: all(flood.poll() is not None for flood in floods), 30)
        await _until(lambda: receiver.pending >= 2 * FORK_FLOOD)
        await asyncio.sleep(0.05)
        infos = await _take_all(receiver)
        receiver.close()
        return {
            "forked children's exit codes": statuses,
            "forks during the flood": during,
            "received": dict(Counter(str(i.si_signo) for i in infos)),
            "values in order": [i.si_value for i in infos if i.precise] == list(range(FORK_FLOOD)),
        }

    signal.pthread_sigmask(signal.SIG_BLOCK, {RT_PRECISE})
    with asyncio.Runner(loop_factory=loop_factory(flavour)) as runner:
        _report(runner.run(main()))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_fork_during_a_flood_gives_a_clean_child_hub_and_the_parent_loses_nothing(
    flavour: str,
) -> None:
    report, returncode, err = _run("fork_main", flavour, timeout=60)
    assert report["forked children's exit codes"] == [0] * FORKS, (report, err)
    assert report["forks during the flood"] >= 1, report
    assert report["received"] == {str(RT_PLAIN): FORK_FLOOD, str(RT_PRECISE): FORK_FLOOD}, report
    assert report["values in order"], report
    assert returncode == 0, err


# ---- interpreter exit with everything open ---------------------------------------------------

ENDINGS = ["asyncio.Runner", "loop closed without shutdown", "loop left open"]


def exit_main() -> None:
    """Open everything, end as `ending` says, and never close anything ourselves."""
    flavour, ending, sigterm = sys.argv[1:4]
    signal.pthread_sigmask(signal.SIG_BLOCK, {RT_PRECISE})
    open_: list[asyncio.Future[Any]] = []  # pending until the interpreter exits

    async def open_everything() -> None:
        receivers = [
            aiosig.open_signal_receiver(signal.SIGUSR1, RT_PLAIN),
            aiosig.open_signal_receiver(RT_PRECISE),
            aiosig.open_signal_receiver(signal.SIGUSR2),  # its anext still waits at exit
        ]
        open_.extend(asyncio.ensure_future(anext(receiver)) for receiver in receivers)
        aiosig.add_handler(signal.SIGUSR2, lambda info: None)
        aiosig.add_handler(RT_PLAIN, sleep, policy="concurrent")
        open_.append(asyncio.ensure_future(aiosig.sigwaitinfo({signal.SIGUSR2})))
        open_.append(asyncio.ensure_future(aiosig.sigtimedwait({RT_PRECISE, signal.SIGUSR1}, 60)))
        for signum in (RT_PLAIN, RT_PRECISE):  # taken by the pending anext: a handler runs
            aiosig.sigqueue(os.getpid(), signum, 1)
        if sigterm == "buffered SIGTERM":
            term = aiosig.open_signal_receiver(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            await _until(lambda: term.pending > 0)
        await asyncio.sleep(0.05)
        print("{}")
        print("READY")  # what follows is the exit

    async def sleep(info: aiosig.SigInfo) -> None:
        await asyncio.sleep(60)

    factory = loop_factory(flavour)
    if ending == "asyncio.Runner":
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(open_everything())
    else:
        loop = factory()
        loop.run_until_complete(open_everything())
        if ending == "loop closed without shutdown":
            loop.close()


def _only_asyncio_pending_task_notes(err: str) -> bool:
    """stderr says nothing but asyncio's own note on each task the program left pending."""
    notes = ("Task was destroyed but it is pending!", "task: <Task pending ")
    return all(line.startswith(notes) for line in err.splitlines() if line)


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_exit_with_everything_open_is_quiet(flavour: str, ending: str) -> None:
    _, returncode, err = _run("exit_main", flavour, ending, "nothing buffered")
    assert _only_asyncio_pending_task_notes(err), err
    assert returncode == 0, err


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_exit_with_a_buffered_sigterm_nobody_consumed_terminates(flavour: str, ending: str) -> None:
    _, returncode, err = _run("exit_main", flavour, ending, "buffered SIGTERM")
    assert _only_asyncio_pending_task_notes(err), err
    assert returncode == -signal.SIGTERM, err


def closed_loop_main() -> None:
    flavour = sys.argv[1]
    waiting: list[asyncio.Future[aiosig.SigInfo]] = []

    async def wait_on_a_receiver() -> None:
        receiver = aiosig.open_signal_receiver(signal.SIGUSR2)
        waiting.append(asyncio.ensure_future(anext(receiver)))
        await asyncio.sleep(0.01)

    loop = loop_factory(flavour)()
    loop.run_until_complete(wait_on_a_receiver())
    loop.close()  # no shutdown_asyncgens: the next aiosig call ends the receiver

    async def later() -> None:
        aiosig.open_signal_receiver(signal.SIGUSR1).close()

    with asyncio.Runner(loop_factory=loop_factory(flavour)) as runner:
        runner.run(later())
    _report({"held": get_hub().holds(signal.SIGUSR2)})


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_receiver_waited_on_in_a_loop_closed_without_shutdown_ends_quietly(
    flavour: str,
) -> None:
    report, returncode, err = _run("closed_loop_main", flavour)
    assert report == {"held": False}
    assert _only_asyncio_pending_task_notes(err), err
    assert returncode == 0, err
