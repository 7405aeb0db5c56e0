"""Every order of installs and restores by aiosig and two other owners of SIGTERM.

Actors each take SIGTERM (or the wakeup fd) and give it back: aiosig (a receiver opened, then
closed), a library that saves and restores with ``signal.signal`` (uvicorn's signal capture
does exactly this), asyncio's ``add_signal_handler``/``remove_signal_handler``, and a library
that takes the wakeup fd with ``signal.set_wakeup_fd`` and puts back what it found. Every
interleaving of the steps of three of them (aiosig, ``signal.signal``, and one of the other
two) is generated (90 each), each run with and without an aiosig entry point (an audit)
between steps, on both loops. After each one the test compares with a model
of the process *without* aiosig: the disposition aiosig reports (``aiosig.core.getsignal``,
which sees through a trampoline) must be the model's, the wakeup fd must be what the last
owner left, a SIGTERM sent at the end must reach exactly the handler the model says, and a
new receiver must receive SIGTERM (no trampoline recorded as anyone's handler: no
RecursionError). The case where the model's disposition is SIG_DFL and a trampoline of
aiosig's is left installed (the library restored what it saved after aiosig let go) is
checked end to end in `test_stale_trampoline_put_back_by_its_saver_terminates_on_sigterm`.
"""

from __future__ import annotations

import textwrap

import pytest

from tests._util import finish, run_child

ORDERS = textwrap.dedent(
    """
    import asyncio, itertools, os, signal, socket, sys
    import aiosig, aiosig.core

    def unwrap(handler):
        return getattr(handler, "behind", handler)  # what an aiosig trampoline stands for

    SIGTERM = signal.SIGTERM
    lib_calls = []
    def lib_handler(signum, frame):
        lib_calls.append(signum)
    asyncio_calls = []
    ACTORS = sys.argv[2]
    signal.signal(signal.SIGUSR2, lambda signum, frame: None)  # a byte, and nothing else

    def orders():
        seen = set()
        for perm in itertools.permutations(ACTORS * 2):
            if perm not in seen:
                seen.add(perm)
                yield perm

    def wakeup_fd():
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        return fd

    async def one(order, audit, baseline_fd):
        loop = asyncio.get_running_loop()
        step = {"A": 0, "L": 0, "S": 0, "W": 0}
        model = signal.SIG_DFL
        model_fd = literal_fd = baseline_fd  # without aiosig; what the last owner left
        saved = saved_model = saved_fd = saved_model_fd = None
        receiver = None
        problems = []
        for actor in order:
            first = step[actor] == 0
            step[actor] += 1
            if actor == "A":
                if first:
                    receiver = aiosig.open_signal_receiver(SIGTERM)
                else:
                    ours = wakeup_fd() != model_fd  # aiosig's pipe holds it, not another owner
                    receiver.close()
                    if ours:
                        literal_fd = model_fd  # aiosig was the last owner: it put back
            elif actor == "L":
                if first:
                    saved, saved_model = signal.signal(SIGTERM, lib_handler), model
                    model = lib_handler
                else:
                    signal.signal(SIGTERM, saved)
                    model = saved_model
            elif actor == "W":
                if first:  # another library takes the wakeup fd, as signal.set_wakeup_fd does
                    theirs, mine = socket.socketpair()
                    theirs.setblocking(False)
                    mine.setblocking(False)
                    saved_fd = signal.set_wakeup_fd(mine.fileno())
                    saved_model_fd, model_fd = model_fd, mine.fileno()
                    literal_fd = model_fd
                else:  # it still hears signals, then puts back what it found
                    os.kill(os.getpid(), signal.SIGUSR2)
                    await asyncio.sleep(0.02)
                    try:
                        heard = theirs.recv(4096)
                    except BlockingIOError:
                        heard = b""
                    if bytes([signal.SIGUSR2]) not in heard:
                        problems.append("the library that took the wakeup fd went deaf")
                    signal.set_wakeup_fd(saved_fd)
                    model_fd, literal_fd = saved_model_fd, saved_fd
                    theirs.close()
                    mine.close()
            else:
                if first:
                    loop.add_signal_handler(SIGTERM, asyncio_calls.append, 1)
                    model = "asyncio"
                else:
                    loop.remove_signal_handler(SIGTERM)
                    model = signal.SIG_DFL
            await asyncio.sleep(0)
            if audit:
                aiosig.core.getsignal(SIGTERM)
        got = unwrap(signal.getsignal(SIGTERM))
        shown = aiosig.core.getsignal(SIGTERM)
        if model == "asyncio":
            ok = "sighandler" in getattr(got, "__name__", "")  # asyncio's or uvloop's
        else:
            ok = got == model and shown == model
        if not ok:
            problems.append(f"disposition {got!r} (core says {shown!r}), model {model!r}")
        if "W" in ACTORS and wakeup_fd() != literal_fd:  # (uvloop's own during a run)
            problems.append(f"wakeup fd {wakeup_fd()} left, expected {literal_fd}")
        if callable(model) or model == "asyncio":
            before = (len(lib_calls), len(asyncio_calls))
            os.kill(os.getpid(), SIGTERM)
            await asyncio.sleep(0.02)
            after = (len(lib_calls), len(asyncio_calls))
            if model is lib_handler and after[0] != before[0] + 1:
                problems.append("the library's handler did not run")
            if model is not lib_handler and after[0] != before[0]:
                problems.append("a handler its owner replaced was still called")
        async with aiosig.open_signal_receiver(SIGTERM) as again:
            os.kill(os.getpid(), SIGTERM)
            async with asyncio.timeout(2):
                await again.__anext__()
        # After an aiosig entry point, a pipe of aiosig's put back after it let go is healed.
        if wakeup_fd() != model_fd:
            problems.append(f"wakeup fd {wakeup_fd()} after an entry point, expected {model_fd}")
        signal.set_wakeup_fd(baseline_fd)
        signal.signal(SIGTERM, signal.SIG_DFL)
        return problems

    async def main():
        failures = 0
        cases = 0
        baseline_fd = wakeup_fd()
        for audit in (False, True):
            for order in orders():
                cases += 1
                try:
                    problems = await one(order, audit, baseline_fd)
                except BaseException as exc:
                    problems = [f"raised {exc!r}"]
                if problems:
                    failures += 1
                    print("FAIL", "".join(order), "audit" if audit else "", problems)
        print("cases", cases, "failures", failures)

    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    print("READY")
    """
)


@pytest.mark.parametrize("actors", ["ALS", "ALW"])
@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_every_order_of_installs_and_restores_leaves_what_the_last_owner_left(
    flavour: str, actors: str
) -> None:
    child = run_child(ORDERS, flavour, actors, timeout=60)
    returncode, _, err = finish(child)
    report = child.before_ready
    assert "cases 180 failures 0" in report, report + err
    assert returncode == 0, err


STALE = textwrap.dedent(
    """
    import asyncio, os, signal, sys, time
    import aiosig

    def library_handler(signum, frame):
        print("library handler ran", flush=True)

    async def main():
        receiver = aiosig.open_signal_receiver(signal.SIGTERM)
        saved = signal.signal(signal.SIGTERM, library_handler)  # saves aiosig's trampoline
        await asyncio.sleep(0.01)
        receiver.close()  # aiosig lets go while the library's handler is on top
        signal.signal(signal.SIGTERM, saved)  # ... and the library puts the trampoline back

    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    print("READY")
    time.sleep(5)
    print("SWALLOWED")
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_stale_trampoline_put_back_by_its_saver_terminates_on_sigterm(flavour: str) -> None:
    child = run_child(STALE, flavour)
    child.send_signal(15)
    returncode, out, err = finish(child)
    assert returncode == -15, out + err
    assert "library handler ran" not in out


LIFETIMES = {
    "buffered at the end of the run": """
        async def main():
            receiver = aiosig.open_signal_receiver(signal.SIGTERM)  # closed by the run's end
            os.kill(os.getpid(), signal.SIGTERM)
            async with asyncio.timeout(5):
                while not receiver.pending:
                    await asyncio.sleep(0.01)
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
        print("READY")
        """,
    "loop closed without shutting down": """
        async def main():
            aiosig.open_signal_receiver(signal.SIGTERM)  # never closed
        loop = (factory or asyncio.new_event_loop)()
        loop.run_until_complete(main())
        loop.close()  # no shutdown_asyncgens: nothing tells aiosig
        print("READY")
        time.sleep(5)
        """,
    "buffered on a worker thread's loop": """
        async def worker():
            receiver = aiosig.open_signal_receiver(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            async with asyncio.timeout(5):
                while not receiver.pending:
                    await asyncio.sleep(0.01)
            receiver.close()
        async def main():
            async with aiosig.open_signal_receiver(signal.SIGUSR1):  # the main loop in use
                thread = threading.Thread(target=asyncio.run, args=(worker(),))
                thread.start()
                while thread.is_alive():
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.5)
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
        print("READY")
        """,
}


@pytest.mark.parametrize("case", list(LIFETIMES))
@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_sigterm_nobody_consumed_terminates_however_the_receiver_ends(
    case: str, flavour: str
) -> None:
    code = (
        "import asyncio, os, signal, sys, threading, time\nimport aiosig\n"
        'factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop\n'
        + textwrap.dedent(LIFETIMES[case])
        + 'print("SWALLOWED")\n'
    )
    try:
        child = run_child(code, flavour)
    except AssertionError as exc:  # it may die before READY: that is the point
        assert "returncode -15" in str(exc) and "SWALLOWED" not in str(exc), exc
        return
    child.send_signal(15)
    returncode, out, err = finish(child)
    assert returncode == -15, out + err
    assert "SWALLOWED" not in out
