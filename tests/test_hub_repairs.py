"""The hub's answers to the ways a delivery could be swallowed, duplicated or left behind.

Each child below is a fresh interpreter: these cases end processes or leave state behind by
design. They run on asyncio and uvloop.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests._util import ROOT, finish, run_child

FLAVOURS = ["asyncio", "uvloop"]
RUNNER = """
factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


ORPHAN = textwrap.dedent(
    """
    import os, signal
    from aiosig._hub import get_hub

    reservation = get_hub().reserve([signal.SIGTERM])  # held, but nobody receives it
    os.kill(os.getpid(), signal.SIGTERM)
    print("still alive while held", flush=True)
    reservation.close()  # SIG_DFL is back: the delivery nobody received takes effect
    print("SWALLOWED", flush=True)
    """
)


def test_delivery_that_no_subscription_received_takes_the_restored_default_action() -> None:
    done = _run(ORPHAN)
    assert "still alive while held" in done.stdout
    assert "SWALLOWED" not in done.stdout
    assert done.returncode == -15, done.stderr


OUTLIVES_LOOP = (
    textwrap.dedent(
        """
    import asyncio, os, signal, sys
    import aiosig

    async def main():
        aiosig.add_handler(signal.SIGTERM, lambda info: None)  # never removed
        subscription = aiosig.open_signal_receiver(signal.SIGINT)  # never closed
    """
    )
    + RUNNER
    + textwrap.dedent(
        """
    print("SIGTERM default again:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    print("SIGINT default_int_handler again:",
          signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    print("READY")
    """
    )
)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_subscriptions_end_with_their_loop_and_runner_sigint_handler_is_not_left_stale(
    flavour: str,
) -> None:
    child = run_child(OUTLIVES_LOOP, flavour)
    assert "SIGTERM default again: True" in child.before_ready
    assert "SIGINT default_int_handler again: True" in child.before_ready
    finish(child)


THEFT_THEN_BUSY = (
    textwrap.dedent(
        """
    import asyncio, os, signal, subprocess, sys, time
    from aiosig._hub import get_hub

    async def main():
        got = {signal.SIGUSR1: 0, signal.SIGUSR2: 0}
        def count(info):
            got[info.si_signo] += 1
        sub = get_hub().subscribe([signal.SIGUSR1, signal.SIGUSR2], count)
        r, w = os.pipe2(os.O_NONBLOCK)
        signal.set_wakeup_fd(w)  # another library takes the wakeup fd
        pid = os.getpid()
        code = (
            f"import os,time; time.sleep(0.2); os.kill({pid},10); "
            f"time.sleep(0.3); os.kill({pid},12)"
        )
        sender = subprocess.Popen([sys.executable, "-c", code])
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # one busy frame, as a CPU-bound step would be
            pass
        sender.wait()
        await asyncio.sleep(0.3)
        sub.close()
        signal.set_wakeup_fd(-1)
        os.close(r); os.close(w)
        print("counts", got[signal.SIGUSR1], got[signal.SIGUSR2])
    """
    )
    + RUNNER
    + textwrap.dedent(
        """
    print("READY")
    """
    )
)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_delivery_after_a_theft_is_recovered_once_not_twice(flavour: str) -> None:
    child = run_child(THEFT_THEN_BUSY, flavour)
    assert "counts 1 1" in child.before_ready
    finish(child)


FORK_OLD_SUBSCRIPTION = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from aiosig._hub import get_hub

    loop = asyncio.new_event_loop()
    old = get_hub().subscribe({signal.SIGUSR1}, lambda i: None, loop=loop)
    pid = os.fork()
    if pid == 0:
        async def child():
            got = []
            get_hub().subscribe({signal.SIGUSR2}, got.append)
            os.kill(os.getpid(), signal.SIGUSR2)
            old.close()  # inherited from the parent: must not touch the child's hub
            async with asyncio.timeout(2):
                while not got:
                    await asyncio.sleep(0.01)
            return len(got)
        try:
            ok = asyncio.run(child()) == 1
        except BaseException as exc:
            print("child failed:", repr(exc), flush=True)
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    old.close(); loop.close()
    print("child exit", os.waitstatus_to_exitcode(status))
    print("READY")
    """
)


def test_closing_an_inherited_subscription_in_a_forked_child_leaves_its_hub_alone() -> None:
    child = run_child(FORK_OLD_SUBSCRIPTION)
    assert "child exit 0" in child.before_ready, child.before_ready
    finish(child)


OVERFLOW = textwrap.dedent(
    """
    import asyncio, os, signal, subprocess, sys, threading, time
    import aiosig._wakeup
    aiosig._wakeup.PIPE_SIZE = 4096  # a small pipe only to keep the burst short
    from aiosig._hub import get_hub

    hub = get_hub()
    reservation = hub.reserve({signal.SIGRTMIN, signal.SIGUSR2})
    ready, result = threading.Event(), {}

    def worker():
        async def run():
            got = []
            sub = hub.subscribe([signal.SIGUSR2], got.append)
            rt = hub.subscribe([signal.SIGRTMIN], lambda i: None)
            ready.set()
            time.sleep(1.0)              # the worker's loop is busy while the burst arrives
            await asyncio.sleep(2.0)
            result["usr2"] = len(got)
            sub.close(); rt.close()
        asyncio.run(run())

    thread = threading.Thread(target=worker); thread.start(); ready.wait(5)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN, signal.SIGUSR2})
    sender = subprocess.Popen([sys.executable, "-c",
        f"import os, time\\nfor _ in range(6000): os.kill({os.getpid()}, 34)\\n"
        f"time.sleep(0.2); os.kill({os.getpid()}, 12)"])
    time.sleep(1.5)                      # the main thread is busy too: no trampoline yet
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGRTMIN, signal.SIGUSR2})
    sender.wait(); thread.join()
    reservation.close()
    print("usr2", result["usr2"])
    print("READY")
    """
)


def test_signal_whose_byte_a_full_pipe_dropped_is_recovered() -> None:
    child = run_child(OVERFLOW, timeout=30)
    assert "usr2 1" in child.before_ready, child.before_ready
    finish(child)


PENDING_UNDER_SIG_IGN = (
    textwrap.dedent(
        """
    import asyncio, os, signal, sys
    import aiosig

    signal.signal(signal.SIGRTMIN, signal.SIG_IGN)
    aiosig.block(signal.SIGRTMIN)

    async def main():
        for value in range(5):
            aiosig.sigqueue(os.getpid(), signal.SIGRTMIN, value)
        info = await aiosig.sigwaitinfo({signal.SIGRTMIN})
        print("aiosig got", info.si_value)
    """
    )
    + RUNNER
    + textwrap.dedent(
        """
    # Restoring SIG_IGN now would make the kernel discard the four still pending.
    left = 0
    while signal.sigtimedwait({signal.SIGRTMIN}, 0) is not None:
        left += 1
    print("still pending", left)
    import aiosig._hub
    aiosig._hub.get_hub().take_back()  # an entry point: the deferred restoration happens
    print("SIG_IGN back", signal.getsignal(signal.SIGRTMIN) == signal.SIG_IGN)
    print("READY")
    """
    )
)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_ending_a_wait_does_not_discard_pending_signals_under_sig_ign(flavour: str) -> None:
    child = run_child(PENDING_UNDER_SIG_IGN, flavour)
    assert "aiosig got 0" in child.before_ready
    assert "still pending 4" in child.before_ready
    assert "SIG_IGN back True" in child.before_ready
    finish(child)


ORPHAN_WORKER_THREAD = textwrap.dedent(
    """
    import asyncio, os, signal, subprocess, sys, threading
    from aiosig._hub import get_hub

    hub = get_hub()
    reservation = hub.reserve({signal.SIGUSR1})
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # only the worker can take it
    got = []

    def worker():
        async def run():
            sub = hub.subscribe([signal.SIGUSR1], got.append)
            sender = f"import os; os.kill({os.getpid()}, {int(signal.SIGUSR1)})"
            subprocess.run([sys.executable, "-c", sender], check=True, timeout=10)
            async with asyncio.timeout(5):
                while not got:
                    await asyncio.sleep(0.01)
            sub.close()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        asyncio.run(run())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    reservation.close()  # the delivery was received: nothing to raise again
    print("survived with", len(got))
    print("READY")
    """
)


def test_a_delivery_received_on_a_worker_loop_is_not_raised_again_at_release() -> None:
    child = run_child(ORPHAN_WORKER_THREAD)
    assert "survived with 1" in child.before_ready
    finish(child)
