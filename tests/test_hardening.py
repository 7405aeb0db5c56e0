"""Exceptions in the middle of the hub's work, and the errors and warnings users see.

A KeyboardInterrupt can land at any bytecode (the default SIGINT handler, outside
``asyncio.Runner``), and a handler can raise SystemExit in the middle of a batch: neither may
leave a reference, a disposition or the wakeup fd behind, or cost another loop its delivery.
"""

from __future__ import annotations

import asyncio
import signal
import textwrap

import pytest

import aiosig
from tests._util import finish, run_child, send

FLAVOURS = ["asyncio", "uvloop"]

KEYBOARD_INTERRUPTS = textwrap.dedent(
    """
    import asyncio, os, signal, subprocess, sys
    import aiosig
    from aiosig._hub import get_hub

    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
    # A sender that interrupts us at random moments, SIGINT under its default handler.
    sender = subprocess.Popen([sys.executable, "-c", (
        "import os, random, sys, time\\n"
        "random.seed(1)\\n"
        "pid = int(sys.argv[1])\\n"
        "for _ in range(150):\\n"
        "    time.sleep(random.uniform(0.001, 0.01))\\n"
        "    try: os.kill(pid, 2)\\n"
        "    except ProcessLookupError: break\\n"
    ), str(os.getpid())])

    async def churn():
        loop = asyncio.get_running_loop()
        end = loop.time() + 0.05
        while loop.time() < end:
            async with aiosig.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2):
                handle = aiosig.add_handler(signal.SIGUSR1, lambda info: None)
                await asyncio.sleep(0)
                handle.remove()

    interrupts = 0

    def session():
        global interrupts
        try:
            loop = (factory or asyncio.new_event_loop)()
            try:
                loop.run_until_complete(churn())
            finally:
                while not loop.is_closed():  # an interrupt here too must not leave it open
                    try:
                        loop.run_until_complete(loop.shutdown_asyncgens())
                        loop.close()
                    except (KeyboardInterrupt, RuntimeError):  # RuntimeError: uvloop's
                        interrupts += 1  # "Event loop stopped before Future completed"
        except KeyboardInterrupt:
            interrupts += 1

    done = False
    while not done:  # an interrupt may land in this loop's own bytecodes too
        try:
            while sender.poll() is None:
                session()
            done = True
        except KeyboardInterrupt:
            interrupts += 1
    # The next aiosig entry point ends what the interrupted loops left (they are closed).
    async def once():
        aiosig.open_signal_receiver(signal.SIGUSR1).close()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(once())
    hub = get_hub()
    fd = signal.set_wakeup_fd(-1)
    print("interrupts", interrupts)
    # White-box: a reference no subscription holds is a leak; a subscription on a loop that
    # is still open is not (an interrupt can leave a uvloop loop marked running, and such a
    # loop cannot be closed: its subscriptions rightly live on).
    live = {s: [x for x in hub._subs[s] if not x.loop.is_closed()] for s in (10, 12)}
    print("leaked", {s: hub._disp.refs[s] - len(live[s]) for s in (10, 12)})
    held = [s for s in (signal.SIGUSR1, signal.SIGUSR2) if hub.holds(s)]
    default = [signal.getsignal(s) == signal.SIG_DFL for s in (10, 12)]
    print("held", held, "default again", default, "wakeup fd", fd)
    if any(live.values()):  # held by live subscriptions, rightly
        print("consistent", all(hub.holds(s) for s in live if live[s]))
    else:
        print("consistent", not held and all(default) and fd == -1)
    print("READY")
    """
)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_keyboard_interrupt_at_any_bytecode_leaves_nothing_held(flavour: str) -> None:
    child = run_child(KEYBOARD_INTERRUPTS, flavour, timeout=60)
    returncode, _, err = finish(child)
    report = child.before_ready
    assert "leaked {10: 0, 12: 0}" in report, report + err
    assert "consistent True" in report, report + err
    assert "RecursionError" not in err
    assert returncode == 0, err


SYSTEM_EXIT_IN_BATCH = textwrap.dedent(
    """
    import asyncio, os, signal, sys, threading
    import aiosig

    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
    worker_got = threading.Event()
    worker_ready = threading.Event()

    async def worker():
        async with aiosig.open_signal_receiver(signal.SIGUSR1) as receiver:
            worker_ready.set()
            async with asyncio.timeout(5):
                await anext(receiver)
            worker_got.set()

    def quit(info):
        raise SystemExit(3)

    async def main():
        aiosig.add_handler(signal.SIGUSR1, quit)
        thread = threading.Thread(target=asyncio.run, args=(worker(),))
        thread.start()
        while not worker_ready.is_set():
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.sleep(5)

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    except SystemExit as exc:
        print("exit", exc.code)
    print("worker got it", worker_got.wait(5))
    print("READY")
    """
)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_handler_raising_system_exit_does_not_cost_another_loop_its_delivery(
    flavour: str,
) -> None:
    child = run_child(SYSTEM_EXIT_IN_BATCH, flavour, timeout=20)
    finish(child)
    assert "exit 3" in child.before_ready
    assert "worker got it True" in child.before_ready


@pytest.mark.asyncio
async def test_receiver_used_in_another_loop_says_so() -> None:
    receiver = aiosig.open_signal_receiver(signal.SIGUSR1)
    try:

        async def elsewhere() -> None:
            await anext(receiver)

        with pytest.raises(RuntimeError, match="belongs to another event loop"):
            await asyncio.to_thread(asyncio.run, elsewhere())
    finally:
        receiver.close()


RECORDED_NEVER_STARTED = textwrap.dedent(
    """
    import asyncio, signal
    import aiosig

    @aiosig.on(signal.SIGHUP)
    async def reload(info):
        pass

    asyncio.run(asyncio.sleep(0))  # not aiosig.run: the handler never starts
    print("READY")
    """
)


def test_handlers_recorded_at_import_that_never_started_are_reported_at_exit() -> None:
    child = run_child(RECORDED_NEVER_STARTED)
    returncode, _, err = finish(child)
    assert returncode == 0
    assert "never ran" in err and "reload" in err and "aiosig.add_handler()" in err
    assert err.count("never ran") == 1


def test_decorating_a_non_callable_is_refused_and_records_nothing() -> None:
    from aiosig import _handlers

    before = list(_handlers._recorded)
    with pytest.raises(TypeError, match="handler must be callable"):
        aiosig.on(signal.SIGUSR1)(42)  # type: ignore[type-var]
    assert _handlers._recorded == before


@pytest.mark.asyncio
async def test_a_worker_loop_subscribes_to_a_signal_the_main_thread_reserved() -> None:
    got: list[aiosig.SigInfo] = []

    async def worker() -> None:
        async with aiosig.open_signal_receiver(signal.SIGUSR2) as receiver:
            await send(signal.SIGUSR2)
            async with asyncio.timeout(5):
                got.append(await anext(receiver))

    with aiosig.reserve(signal.SIGUSR2):
        await asyncio.to_thread(asyncio.run, worker())
    assert [info.si_signo for info in got] == [signal.SIGUSR2]


def test_no_error_message_names_private_api() -> None:
    import pathlib
    import re

    root = pathlib.Path(aiosig.__file__).parent
    for path in root.glob("*.py"):
        for literal in re.findall(r'"[^"\\n]*"', path.read_text()):
            assert "Hub." not in literal and "_hub" not in literal, (path.name, literal)
