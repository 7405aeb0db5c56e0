"""aiosig.run's graceful shutdown, in fresh interpreters sent real signals, on both loops.

Every test runs an application in a child process (the process ends, by design), waits for
its READY, signals it from outside, and checks how it ended: the parent's view of the exit
status (death by the signal, or a code), what it printed and in which order, and what the
``aiosig`` logger said. Times are read on the monotonic clock, which every process shares.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from tests._util import Child, finish, run_child, send_from_child

FLAVOURS = ["asyncio", "uvloop"]

PRELUDE = textwrap.dedent(
    """
    import asyncio, atexit, logging, os, signal, sys, threading, time
    import aiosig

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop

    def say(*words):
        print(*words, flush=True)
    """
)


def start(body: str, flavour: str, **kwargs: object) -> Child:
    return run_child(PRELUDE + textwrap.dedent(body), flavour, **kwargs)  # type: ignore[arg-type]


def lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line]


IDLE = """
atexit.register(say, "atexit")

async def main():
    try:
        say("READY")
        await asyncio.sleep(3600)
    finally:
        say("finally")

aiosig.run(main(), grace=5, loop_factory=factory)
say("not reached")
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sigterm_to_an_idle_app_dies_of_sigterm_after_finally_then_atexit(flavour: str) -> None:
    child = start(IDLE, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert lines(out) == ["finally", "atexit"], err
    assert "SIGTERM: shutting down" in err


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sigint_first_press_says_so_on_stderr_without_logging_configured(flavour: str) -> None:
    body = IDLE.replace("atexit.register", "logging.getLogger().handlers.clear()\natexit.register")
    child = start(body, flavour)
    send_from_child(child.pid, signal.SIGINT)
    returncode, _, err = finish(child)
    assert returncode == -signal.SIGINT, err
    assert "SIGINT: shutting down" in err and "the next SIGINT or SIGTERM" in err
    assert "KeyboardInterrupt" not in err


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10
    )
    return probe.returncode == 0


PID1 = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")


def _namespace_init(unshare: Child) -> int:
    """The host pid of the interpreter that runs as PID 1 under `unshare --fork`."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{unshare.pid}/task/{unshare.pid}/children") as f:
            found = f.read().split()
        if found:
            return int(found[0])
        time.sleep(0.01)
    raise AssertionError("unshare started no child")


@pytest.mark.skipif(not _unshare_works(), reason="unshare --pid needs root (or user namespaces)")
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sigterm_to_pid_1_exits_143_after_finally_then_atexit(flavour: str) -> None:
    body = IDLE.replace('say("READY")', 'say("pid", os.getpid()); say("READY")')
    child = start(body, flavour, prefix=PID1)
    assert "pid 1" in child.before_ready
    send_from_child(_namespace_init(child), signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == 143, err
    assert lines(out) == ["finally", "atexit"], err


# ---- the grace budget and the deadline -------------------------------------------------------

IN_FLIGHT = """
async def request():
    await asyncio.sleep(0.5)  # the work of one request, in flight when SIGTERM comes
    say("request done")

async def main():
    say("READY")
    await aiosig.shield(request())

aiosig.run(main(), grace=5, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_shielded_request_in_flight_completes_during_the_grace_period(flavour: str) -> None:
    child = start(IN_FLIGHT, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert "request done" in out, err


STUCK = {
    "waits for a thread that never returns": """
async def main():
    say("READY")
    await asyncio.to_thread(time.sleep, 3600)
""",
    "swallows CancelledError": """
async def main():
    say("READY")
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
""",
    "calls time.sleep(3600)": """
async def main():
    say("READY")
    time.sleep(3600)
""",
}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("how", sorted(STUCK))
def test_stuck_main_ends_at_the_deadline_with_its_stack_reported(how: str, flavour: str) -> None:
    body = STUCK[how] + "\naiosig.run(main(), grace=1.5, loop_factory=factory)\n"
    child = start(body, flavour)
    sent = time.monotonic()
    send_from_child(child.pid, signal.SIGTERM)
    returncode, _, err = finish(child)
    late = time.monotonic() - (sent + 1.5)
    assert returncode == -signal.SIGTERM, err
    assert -0.05 < late < 0.5, (late, err)
    stuck = f"Thread '{flavour}_0'" if "thread" in how else "Task 'main'"  # the executor's
    assert "deadline passed" in err and stuck in err, err


# ---- escalation ------------------------------------------------------------------------------

HOOKS_AND_SLOW_MAIN = """
@aiosig.on_shutdown(critical=True)
async def critical():
    say("critical hook")

@aiosig.on_shutdown
async def ordinary():
    say("ordinary hook")

async def main():
    try:
        say("READY")
        await asyncio.sleep(3600)
    finally:
        say("main cleaning up slowly")
        await aiosig.shield(asyncio.sleep(30))

aiosig.run(main(), grace=20, fast_grace=1, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_second_stop_signal_takes_the_fast_path_with_critical_hooks_only(flavour: str) -> None:
    child = start(HOOKS_AND_SLOW_MAIN, flavour)
    sent = time.monotonic()
    send_from_child(child.pid, signal.SIGTERM)
    time.sleep(0.5)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    took = time.monotonic() - sent
    assert returncode == -signal.SIGTERM, err
    assert "critical hook" in out and "ordinary hook" not in out, (out, err)
    assert took < 0.5 + 1 + 0.5, err  # the fast budget, not the 20 s grace
    assert "fast shutdown" in err and "skipped" in err


WEDGED_HOOK = """
@aiosig.on_shutdown(critical=True, timeout=60)
def wedged():
    say("hook wedged")
    time.sleep(3600)

async def main():
    say("READY")
    await asyncio.sleep(3600)

aiosig.run(main(), grace=60, fast_grace=30, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_third_stop_signal_ends_the_process_at_once_with_the_loop_wedged(flavour: str) -> None:
    child = start(WEDGED_HOOK, flavour)
    assert child.stdout is not None
    send_from_child(child.pid, signal.SIGTERM)
    assert child.stdout.readline().strip() == "hook wedged"
    send_from_child(child.pid, signal.SIGTERM)
    time.sleep(0.2)
    sent = time.monotonic()
    send_from_child(child.pid, signal.SIGTERM)
    returncode, _, err = finish(child, timeout=5)
    assert returncode == -signal.SIGTERM, err
    assert time.monotonic() - sent < 1.0
    assert "third stop signal" in err


# ---- hooks -----------------------------------------------------------------------------------

THREE_HOOKS = """
@aiosig.on_shutdown
async def h1():
    say("H1")

@aiosig.on_shutdown
async def h2():
    say("H2")
    raise ValueError("h2 failed")

@aiosig.on_shutdown(timeout=0.3)
async def h3():
    say("H3")
    await asyncio.sleep(3600)

async def main():
    say("READY")
    await asyncio.sleep(3600)

aiosig.run(main(), grace=5, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_hooks_run_last_first_and_every_outcome_is_reported(flavour: str) -> None:
    child = start(THREE_HOOKS, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert lines(out) == ["H3", "H2", "H1"]
    assert "ValueError: h2 failed" in err  # the traceback
    summary = next(line for line in err.splitlines() if "shutdown hooks:" in line)
    assert "h3 timed out" in summary and "h2 raised" in summary and "h1 ok" in summary


# ---- the drain and the shutdown-requested event ----------------------------------------------

DRAIN = """
async def watcher():
    shutdown = aiosig.current_shutdown()
    reason = await shutdown.wait()
    say(f"requested {time.monotonic()} {reason.signal} {shutdown.step} {shutdown.remaining():.1f}")

async def main():
    asyncio.ensure_future(watcher())
    try:
        say("READY")
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        say(f"cancelled {time.monotonic()}")
        raise

aiosig.run(main(), grace=5, drain=1.0, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_drain_sets_the_event_at_once_and_cancels_main_a_second_later(flavour: str) -> None:
    child = start(DRAIN, flavour)
    sent = time.monotonic()
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    requested, cancelled = lines(out)
    _, when, signum, step, left = requested.split()
    assert (int(signum), step) == (signal.SIGTERM, "draining")
    assert float(when) - sent < 0.3 and 4.0 <= float(left) <= 5.0
    assert 0.9 <= float(cancelled.split()[1]) - float(when) < 1.5, out


# ---- exit statuses ---------------------------------------------------------------------------

ENDINGS = {
    "raises": ("async def main():\n    raise ValueError('boom')\n", 1, "ValueError: boom"),
    "sys.exit(3)": ("async def main():\n    sys.exit(3)\n", 3, ""),
    "returns": ("async def main():\n    return 7\n", 0, ""),
}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("how", sorted(ENDINGS))
def test_main_ending_by_itself_gives_its_own_exit_status_after_the_hooks(
    how: str, flavour: str
) -> None:
    code, status, in_err = ENDINGS[how]
    body = f"""
@aiosig.on_shutdown
def hook():
    say("hook")

{code}
say("READY")
result = aiosig.run(main(), grace=5, loop_factory=factory)
say("returned", result)
"""
    child = start(body, flavour)
    returncode, out, err = finish(child)
    assert returncode == status, err
    assert "hook" in out and in_err in err
    if how == "returns":
        assert "returned 7" in out


REQUESTED = """
async def main():
    say("READY")
    await asyncio.sleep(0.1)
    aiosig.request_shutdown("maintenance window")
    await asyncio.sleep(3600)

result = aiosig.run(main(), grace=5, loop_factory=factory)
say("returned", result)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_request_shutdown_from_code_stops_with_exit_0(flavour: str) -> None:
    child = start(REQUESTED, flavour)
    returncode, out, err = finish(child)
    assert returncode == 0, err
    assert "returned None" in out and "maintenance window" in err


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(("mode", "expected"), [("code", 143), ("zero", 0)])
def test_exit_status_option_turns_a_stop_into_a_code(
    mode: str, expected: int, flavour: str
) -> None:
    body = IDLE.replace("grace=5", f"grace=5, exit_status={mode!r}")
    child = start(body, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == expected, err
    assert lines(out) == ["finally", "atexit"], err


# ---- reload, log reopening, signals left alone -----------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1])
def test_without_reload_or_reopen_logs_sighup_and_sigusr1_keep_their_default(
    signum: int, flavour: str
) -> None:
    child = start(IDLE, flavour)
    send_from_child(child.pid, signum)
    returncode, out, err = finish(child)
    assert returncode == -signum, err
    assert out == ""  # no finally: the default action, as without aiosig


RELOAD = """
running = 0

async def reload():
    global running
    running += 1
    say(f"reload start {running}")
    await asyncio.sleep(0.2)
    running -= 1
    say("reload end")

async def main():
    say("READY")
    await asyncio.sleep(3600)

aiosig.run(main(), grace=5, reload=reload, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_burst_of_sighups_reloads_once_or_twice_never_overlapping(flavour: str) -> None:
    child = start(RELOAD, flavour)
    send_from_child(child.pid, signal.SIGHUP, count=10)
    time.sleep(0.8)
    assert child.poll() is None
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    starts = [line for line in lines(out) if line.startswith("reload start")]
    assert 1 <= len(starts) <= 2, out
    assert all(line == "reload start 1" for line in starts), out


FAILING_RELOAD = """
def reload():
    raise OSError("config file is gone")

async def main():
    say("READY")
    await asyncio.sleep(3600)

aiosig.run(main(), grace=5, reload=reload, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_failing_reload_is_logged_and_the_service_lives(flavour: str) -> None:
    child = start(FAILING_RELOAD, flavour)
    send_from_child(child.pid, signal.SIGHUP)
    time.sleep(0.3)
    assert child.poll() is None
    send_from_child(child.pid, signal.SIGTERM)
    returncode, _, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert "reload failed" in err and "config file is gone" in err


REOPEN = """
import pathlib
path = pathlib.Path(sys.argv[2])
handler = logging.FileHandler(path)
log = logging.getLogger("app")
log.addHandler(handler)

async def main():
    log.warning("before")
    say("READY")
    await aiosig.current_shutdown().wait()
    log.warning("after")

aiosig.run(main(), grace=5, reopen_logs=True, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_reopen_logs_on_sigusr1_after_a_rotation(flavour: str, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "app.log")
    child = run_child(PRELUDE + textwrap.dedent(REOPEN), flavour, path)
    os.rename(path, path + ".1")
    send_from_child(child.pid, signal.SIGUSR1)
    time.sleep(0.3)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, _, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    with open(path + ".1") as old, open(path) as new:
        assert "before" in old.read() and new.read().strip() == "after"


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"grace": 0}, ValueError, "grace must be a finite number"),
        ({"grace": float("inf")}, ValueError, "grace must be a finite number"),
        ({"grace": "5"}, TypeError, "grace must be a number"),
        ({"drain": -1}, ValueError, "drain must be"),
        ({"drain": 5, "grace": 5}, ValueError, "drain .* must be shorter than grace"),
        ({"fast_grace": 0}, ValueError, "fast_grace must be"),
        ({"reload": 3}, TypeError, "reload must be callable"),
        ({"reopen_logs": 1}, TypeError, "reopen_logs must be True or False"),
        ({"exit_status": "death"}, ValueError, "exit_status must be one of"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    import aiosig

    async def main() -> None:
        raise AssertionError("ran")

    with pytest.raises(error, match=match):
        aiosig.run(main(), **kwargs)  # type: ignore[arg-type]


def test_outside_aiosig_run_the_shutdown_functions_say_what_to_do() -> None:
    import aiosig

    with pytest.raises(RuntimeError, match=r"start the program with aiosig\.run"):
        aiosig.current_shutdown()
    with pytest.raises(RuntimeError, match=r"request_shutdown\(\) needs a running aiosig\.run"):
        aiosig.request_shutdown("x")
    with pytest.raises(TypeError, match="reason must be a str"):
        aiosig.request_shutdown(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        aiosig.on_shutdown(timeout=0)
    with pytest.raises(TypeError, match="must be callable"):
        aiosig.on_shutdown(3)  # type: ignore[call-overload]


# ---- sd_notify -------------------------------------------------------------------------------


class NotifyListener:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, path: str) -> None:
        import socket

        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.received: list[tuple[float, str]] = []

    def collect(self, until: float) -> list[tuple[float, str]]:
        import select

        while (left := until - time.monotonic()) > 0:
            if select.select([self.sock], [], [], left)[0]:
                self.received.append((time.monotonic(), self.sock.recv(4096).decode()))
        return self.received

    def first(self, key: str, timeout: float = 5.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, message in self.received:
                if key in message.splitlines():
                    return when, message
            self.collect(min(deadline, time.monotonic() + 0.01))
        raise AssertionError(f"no {key} among {self.received}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: os.PathLike[str]) -> NotifyListener:
    found = NotifyListener(os.path.join(tmp_path, "notify"))
    yield found  # type: ignore[misc]
    found.close()


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


NOTIFYING = """
import socket

@aiosig.on_shutdown
def hook():  # says so on the notification socket too: datagrams keep their order
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"HOOK=1", os.environ["TEST_SOCKET"])

async def reload():
    await asyncio.sleep(0.1)

async def main():
    aiosig.notify_ready("serving")
    say("READY")
    await asyncio.sleep(3600)

aiosig.run(main(), grace=5, reload=reload, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sd_notify_ready_reloading_and_stopping_before_any_hook(
    flavour: str, listener: NotifyListener
) -> None:
    env = env_with(NOTIFY_SOCKET=listener.path, TEST_SOCKET=listener.path)
    child = start(NOTIFYING, flavour, env=env)
    assert "READY=1" in listener.first("READY=1")[1] and "STATUS=serving" in listener.received[0][1]
    reload_sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    os.kill(child.pid, signal.SIGHUP)
    _, reloading = listener.first("RELOADING=1")
    usec = int(next(a for a in reloading.splitlines() if a.startswith("MONOTONIC_USEC="))[15:])
    assert reload_sent <= usec < reload_sent + 2_000_000
    listener.collect(time.monotonic() + 0.4)
    after = [m for _, m in listener.received if "READY=1" in m.splitlines()]
    assert len(after) == 2, listener.received  # start-up, then the end of the reload
    sent = time.monotonic()
    os.kill(child.pid, signal.SIGTERM)
    stopping_at, stopping = listener.first("STOPPING=1")
    _, hook = listener.first("HOOK=1")
    returncode, _, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert stopping_at - sent < 0.05, stopping_at - sent
    messages = [message for _, message in listener.received]
    assert messages.index(stopping) < messages.index(hook)


WEDGING = """
async def main():
    say("READY")
    await asyncio.sleep(0.6)
    time.sleep(1.0)  # the loop is wedged: no WATCHDOG=1 may go out
    await asyncio.sleep(0.6)

aiosig.run(main(), grace=5, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_watchdog_pets_every_half_interval_and_stops_while_the_loop_is_wedged(
    flavour: str, listener: NotifyListener
) -> None:
    env = env_with(NOTIFY_SOCKET=listener.path, WATCHDOG_USEC="200000")
    child = start(WEDGING, flavour, env=env)
    listener.collect(time.monotonic() + 2.5)
    returncode, _, err = finish(child)
    assert returncode == 0, err
    pets = [when for when, message in listener.received if message == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pets)]
    assert len(pets) >= 6, listener.received
    assert max(gaps) >= 0.9  # the wedge
    assert sorted(gaps)[len(gaps) // 2] < 0.2  # otherwise every 0.1 s


# ---- stop signals ----------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_signal_taken_out_of_stop_signals_keeps_its_meaning(flavour: str) -> None:
    body = IDLE.replace("grace=5", "grace=5, stop_signals={signal.SIGTERM}")
    child = start(body, flavour)
    send_from_child(child.pid, signal.SIGINT)  # asyncio.Runner's Ctrl-C: KeyboardInterrupt
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGINT and "KeyboardInterrupt" in err
    assert lines(out)[0] == "finally"


def test_stop_signals_and_reload_cannot_share_a_signal() -> None:
    import aiosig

    async def main() -> None:
        raise AssertionError("ran")

    with pytest.raises(ValueError, match="SIGHUP cannot both stop the service and serve reload"):
        aiosig.run(main(), stop_signals={signal.SIGHUP}, reload=lambda: None)
    with pytest.raises(TypeError, match="stop_signals must be an iterable"):
        aiosig.run(main(), stop_signals=signal.SIGTERM)  # type: ignore[arg-type]


# ---- children --------------------------------------------------------------------------------

CHILDREN = """
import subprocess
procs = {}
SLEEPER = "import time; time.sleep(60)"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring', flush=True); time.sleep(60)"
)

async def main():
    procs["obedient"] = await asyncio.create_subprocess_exec(sys.executable, "-c", SLEEPER)
    procs["stubborn"] = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True
    )
    procs["stubborn"].stdout.readline()  # it ignores SIGTERM from now on
    for proc in procs.values():
        aiosig.add_child(proc)
    say("READY")
    await asyncio.sleep(3600)

try:
    aiosig.run(main(), grace=2, loop_factory=factory)
finally:
    say("obedient", procs["obedient"].returncode, "stubborn", procs["stubborn"].returncode)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_children_get_the_stop_signal_and_one_that_ignores_it_is_killed_at_the_deadline(
    flavour: str,
) -> None:
    child = start(CHILDREN, flavour)
    sent = time.monotonic()
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    took = time.monotonic() - sent
    assert returncode == -signal.SIGTERM, err
    assert lines(out) == [f"obedient {-signal.SIGTERM} stubborn {-signal.SIGKILL}"], err
    assert 1.5 <= took < 2.5, took  # SIGKILL just before the 2 s deadline, not after it
    assert "sending SIGTERM to 2 child processes" in err and "SIGKILL" in err


ORPHANS = """
import subprocess

def zombies():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z":
                found.append(int(entry))
    return found

async def main():
    # An orphan: a shell that starts a sleeper in the background and exits; the sleeper is
    # reparented to us (PID 1) and exits 0.2 s later, a zombie nobody else will reap.
    subprocess.run(["sh", "-c", "sleep 0.2 &"], check=True)
    mine = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.3; exit 7")
    say("READY")
    status = await mine.wait()
    await asyncio.sleep(2.6)  # two sweeps of the reaper
    say("own child", status, "zombies", zombies())
    await asyncio.sleep(3600)

aiosig.run(main(), grace=5, loop_factory=factory)
"""


@pytest.mark.skipif(not _unshare_works(), reason="unshare --pid needs root (or user namespaces)")
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_as_pid_1_orphans_are_reaped_and_own_children_keep_their_status(flavour: str) -> None:
    child = start(ORPHANS, flavour, prefix=PID1)
    assert child.stdout is not None
    assert child.stdout.readline().split() == ["own", "child", "7", "zombies", "[]"]
    send_from_child(_namespace_init(child), signal.SIGTERM)
    returncode, _, err = finish(child)
    assert returncode == 143, err


FAST_SIGNAL = """
@aiosig.on_shutdown(critical=True)
def critical():
    say("critical hook")

@aiosig.on_shutdown
def ordinary():
    say("ordinary hook")

async def main():
    say("READY")
    await asyncio.sleep(3600)

aiosig.run(
    main(), grace=20, fast_signals={signal.SIGQUIT}, exit_status="code", loop_factory=factory
)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_fast_signal_starts_the_fast_path_at_once(flavour: str) -> None:
    child = start(FAST_SIGNAL, flavour)
    send_from_child(child.pid, signal.SIGQUIT)
    returncode, out, err = finish(child)
    assert returncode == 128 + signal.SIGQUIT, err
    assert lines(out) == ["critical hook"], err
    assert "fast shutdown" in err


def test_a_signal_cannot_be_both_a_stop_and_a_fast_signal() -> None:
    import aiosig

    async def main() -> None:
        raise AssertionError("ran")

    with pytest.raises(ValueError, match="cannot be in both stop_signals and fast_signals"):
        aiosig.run(main(), fast_signals={signal.SIGTERM})


def test_a_synthetic_sigterm_shuts_down_in_process_without_deciding_a_death(
    loop_factory: object,
) -> None:
    import aiosig
    from aiosig.testing import deliver

    order: list[str] = []

    async def main() -> None:
        async def hook() -> None:
            order.append("hook")

        aiosig.on_shutdown(hook)
        shutdown = aiosig.current_shutdown()
        asyncio_loop = __import__("asyncio").get_running_loop()
        asyncio_loop.call_soon(deliver, signal.SIGTERM)
        reason = await shutdown.wait()
        order.append(f"requested {reason.signal == signal.SIGTERM} {reason.synthetic}")
        await __import__("asyncio").sleep(3600)

    result = aiosig.run(main(), grace=5, loop_factory=loop_factory)  # type: ignore[arg-type]
    assert result is None
    assert order == ["requested True True", "hook"]


# ---- regressions found in review -------------------------------------------------------------

SHIELD_IN_A_TASK = """
async def work():
    await asyncio.sleep(0.5)
    say("shielded work done")

async def request():  # a request handler's task, not main
    await aiosig.shield(work())

async def main():
    asyncio.ensure_future(request())
    say("READY")
    await asyncio.sleep(3600)

aiosig.run(main(), grace=5, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_shielded_work_in_any_task_finishes_before_it_is_cancelled(flavour: str) -> None:
    child = start(SHIELD_IN_A_TASK, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert "shielded work done" in out, err


HOOK_CANCELLED = """
@aiosig.on_shutdown
def h1():
    say("H1")

@aiosig.on_shutdown
async def h2():  # awaits a task the shutdown cancelled in the step before
    await background

async def main():
    global background
    background = asyncio.ensure_future(asyncio.sleep(3600))
    say("READY")
    await asyncio.sleep(3600)

aiosig.run(main(), grace=5, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_hook_that_raises_cancelled_error_is_reported_and_the_next_runs(flavour: str) -> None:
    child = start(HOOK_CANCELLED, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert lines(out) == ["H1"], err
    assert "h2 raised CancelledError" in err


CRITICAL_HOOK_ON_THE_FAST_PATH = """
@aiosig.on_shutdown(critical=True, timeout=30)
async def slow_critical():
    try:
        await asyncio.sleep(30)
    finally:
        say("critical hook ended")

async def main():
    say("READY")
    await asyncio.sleep(3600)

try:
    aiosig.run(main(), grace=20, fast_grace=1, loop_factory=factory)
finally:
    say("finally")
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_fast_path_shortens_a_critical_hook_so_finally_still_runs(flavour: str) -> None:
    child = start(CRITICAL_HOOK_ON_THE_FAST_PATH, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    time.sleep(0.5)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert lines(out) == ["critical hook ended", "finally"], err
    assert "deadline passed" not in err


STUCK_AFTER_REQUEST = """
async def main():
    say("READY")
    aiosig.request_shutdown("done for today")
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass

aiosig.run(main(), grace=1, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_deadline_ends_a_requested_shutdown_that_hangs_with_exit_1(flavour: str) -> None:
    child = start(STUCK_AFTER_REQUEST, flavour)
    returncode, _, err = finish(child)
    assert returncode == 1, err
    assert "deadline passed" in err and "(exit code 1)" in err


HUP_DURING_SHUTDOWN = """
@aiosig.on_shutdown
async def hook():
    say("hook")
    await asyncio.sleep(0.6)
    say("hook done")

async def main():
    say("READY")
    await asyncio.sleep(3600)

aiosig.run(main(), grace=5, reload=lambda: say("reloaded"), loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sighup_during_the_shutdown_neither_kills_nor_reloads(flavour: str) -> None:
    child = start(HUP_DURING_SHUTDOWN, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    assert child.read_line() == "hook"
    send_from_child(child.pid, signal.SIGHUP)
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert lines(out) == ["hook done"], err
    assert "not reloading: the service is shutting down" in err


LOST_EXCEPTION = """
async def main():
    try:
        say("READY")
        await asyncio.sleep(3600)
    finally:
        raise ValueError("cleanup failed")

aiosig.run(main(), grace=5, loop_factory=factory)
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_exception_main_raises_during_a_signal_shutdown_is_logged(flavour: str) -> None:
    child = start(LOST_EXCEPTION, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, _, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert "main raised during the shutdown" in err and "ValueError: cleanup failed" in err


TWICE = """
async def first():
    say("READY")
    await asyncio.sleep(3600)

async def second():
    await asyncio.sleep(1.5)  # longer than the first run's grace
    return "second done"

try:
    aiosig.run(first(), grace=1, loop_factory=factory)
except SystemExit as exc:
    say("caught", exc.code)
say(aiosig.run(second(), grace=5, loop_factory=factory))
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_second_run_after_a_caught_system_exit_is_not_ended_by_the_first_deadline(
    flavour: str,
) -> None:
    child = start(TWICE, flavour)
    send_from_child(child.pid, signal.SIGTERM)
    returncode, out, err = finish(child)
    assert lines(out) == ["caught 143", "second done"], err
    assert returncode == 0, err
