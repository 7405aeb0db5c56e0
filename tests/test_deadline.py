"""The hard deadline: a wedged process is reported and ended at the deadline, from a thread.

Every test that arms a deadline does it in a fresh interpreter (the process ends, by design),
with real stuck code: ``time.sleep(3600)`` in a coroutine, a task that swallows
CancelledError. The child prints its deadline (``time.monotonic()``, a clock shared by every
process on Linux) before READY, so the test can tell how late the process ended.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from aiosig._deadline import ExitStatus
from tests._util import Child, finish, run_child

FLAVOURS = ["asyncio", "uvloop"]

# The bound for ending a wedged process: "within 0.5 s of" the deadline.
WITHIN = 0.5

PRELUDE = textwrap.dedent(
    """
    import asyncio, os, signal, sys, threading, time
    from aiosig._deadline import Deadline, ExitStatus

    factory = None
    if len(sys.argv) > 1:
        factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop

    def arm(delay, status, loop=None):
        deadline = Deadline(time.monotonic() + delay, status, loop=loop)
        print(f"deadline={deadline.when!r}")
        return deadline

    def run(main):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    """
)

SLEEPS_IN_A_COROUTINE = """
async def main():
    arm(1.0, ExitStatus(signum=signal.SIGTERM), asyncio.get_running_loop())
    print("READY")
    time.sleep(3600)

run(main)
"""

SWALLOWS_CANCELLATION = """
async def swallow():
    while True:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            pass

async def main():
    stuck = asyncio.create_task(swallow(), name="stuck-task")
    await asyncio.sleep(0.01)
    arm(1.0, ExitStatus(signum=signal.SIGTERM), asyncio.get_running_loop())
    print("READY")
    while True:  # a shutdown that keeps asking, as a runner's would
        stuck.cancel()
        await asyncio.sleep(0.05)

run(main)
"""


def frame_line(code: str, source: str, function: str) -> str:
    """The report's frame line for the line of `code` that holds `source` (``-c``: no text)."""
    (number,) = [n for n, line in enumerate(code.splitlines(), 1) if line.strip() == source]
    return f'File "<string>", line {number}, in {function}\n'


def deadline_of(child: Child) -> float:
    lines = [line for line in child.before_ready.splitlines() if line.startswith("deadline=")]
    assert len(lines) == 1, child.before_ready
    return float(lines[0].removeprefix("deadline="))


def ended_late(child: Child) -> tuple[int, str, float]:
    """Wait for the child; return its returncode, its stderr and how late after its deadline."""
    returncode, _, err = finish(child)
    return returncode, err, time.monotonic() - deadline_of(child)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_deadline_ends_a_coroutine_stuck_in_time_sleep_by_death_from_its_signal(
    flavour: str,
) -> None:
    code = PRELUDE + SLEEPS_IN_A_COROUTINE
    child = run_child(code, flavour)
    returncode, err, late = ended_late(child)
    assert returncode == -signal.SIGTERM, err
    assert 0 <= late < WITHIN, late
    assert "deadline passed" in err and "death by SIGTERM" in err
    main_thread = err.split("Thread 'MainThread'")[1].split("\nTask ")[0]
    assert main_thread.endswith(frame_line(code, "time.sleep(3600)", "main")), err
    assert "Task 'Task-1'" in err  # the running task is listed too


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_deadline_names_a_task_that_swallows_cancellation_with_its_stack(flavour: str) -> None:
    code = PRELUDE + SWALLOWS_CANCELLATION
    child = run_child(code, flavour)
    returncode, err, late = ended_late(child)
    assert returncode == -signal.SIGTERM, err
    assert 0 <= late < WITHIN, late
    stuck = err.split("Task 'stuck-task'")[1].split("\nTask ")[0]
    assert stuck.startswith(", cancellation requested "), stuck
    assert frame_line(code, "await asyncio.sleep(1)", "swallow") in stuck, err


def test_deadline_with_an_exit_code_exits_with_it_when_brought_forward() -> None:
    child = run_child(
        PRELUDE
        + textwrap.dedent(
            """
            deadline = arm(60.0, ExitStatus(code=7))
            soon = time.monotonic() + 0.3
            assert deadline.bring_forward(soon) == soon == deadline.when
            assert deadline.bring_forward(soon + 100) == soon  # never later
            print("READY")
            # A buffered stdout: what it holds is flushed before the process ends.
            sys.stdout = open(sys.stdout.fileno(), "w", closefd=False, buffering=1 << 16)
            print("in a big buffer")
            time.sleep(3600)
            """
        )
    )
    returncode, out, err = finish(child)
    assert returncode == 7, err
    assert "exit code 7" in err
    assert "in a big buffer" in out


def test_disarmed_deadline_ends_its_thread_and_the_process_lives() -> None:
    child = run_child(
        PRELUDE
        + textwrap.dedent(
            """
            deadline = arm(0.3, ExitStatus(signum=signal.SIGTERM))
            print("READY")
            assert deadline.disarm() is True
            assert deadline.disarm() is True  # idempotent
            assert deadline._thread.is_alive() is False
            assert [t.name for t in threading.enumerate()] == ["MainThread"]
            time.sleep(0.6)  # past the deadline
            print("alive")
            """
        )
    )
    returncode, out, err = finish(child)
    assert (returncode, out, err) == (0, "alive\n", "")


def test_deadline_kills_by_signal_that_every_thread_blocks_and_python_handles() -> None:
    # A precise-delivery user blocks SIGTERM everywhere, and aiosig's trampoline handles it:
    # the deadline must still end the process by death from SIGTERM.
    child = run_child(
        PRELUDE
        + textwrap.dedent(
            """
            signal.signal(signal.SIGTERM, lambda *args: print("handler ran"))
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            arm(0.3, ExitStatus(signum=signal.SIGTERM))
            print("READY")
            time.sleep(3600)
            """
        )
    )
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert "handler ran" not in out


def _pid_namespaces_permitted() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--pid", "--fork", "--mount-proc", "true"]
    return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0


LAUNCH_AS_PID_1 = """
import os, sys
command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", sys.argv[1]]
os.execvp(command[0], command)
"""


def test_deadline_as_pid_1_exits_128_plus_the_signal() -> None:
    if not _pid_namespaces_permitted():
        pytest.skip("unshare --pid --fork --mount-proc is not installed or not permitted here")
    code = PRELUDE + textwrap.dedent(
        """
        assert os.getpid() == 1
        arm(0.3, ExitStatus(signum=signal.SIGTERM))
        print("READY")
        time.sleep(3600)
        """
    )
    child = run_child(LAUNCH_AS_PID_1, code)
    returncode, _, err = finish(child)
    assert returncode == 128 + signal.SIGTERM, err
    assert "death by SIGTERM" in err  # decided as death by SIGTERM; had as its shell status


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, TypeError),
        ({"signum": 15, "code": 0}, TypeError),
        ({"signum": signal.SIGCHLD}, ValueError),  # ignored by default: no death to be had
        ({"signum": signal.SIGTSTP}, ValueError),  # stops, does not end
        ({"signum": 0}, ValueError),
        ({"code": 256}, ValueError),
        ({"code": True}, TypeError),
    ],
)
def test_exit_status_refuses_an_ending_it_cannot_have(
    kwargs: dict[str, int], error: type[Exception]
) -> None:
    with pytest.raises(error):
        ExitStatus(**kwargs)


def test_exit_status_says_what_a_shell_shows() -> None:
    assert ExitStatus(signum=signal.SIGTERM).shell_status == 143
    assert ExitStatus(code=3).shell_status == 3
    assert ExitStatus(signum=signal.SIGRTMIN + 1).describe().startswith("death by signal ")
