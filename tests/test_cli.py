"""The ``aiosig`` command line, run for real: ``python -m aiosig`` in child processes.

Each subcommand is driven the way an operator would: real signals from real processes, real
``/proc``, a real PID 1 in a new pid namespace. Nothing here changes the test process's own
signal state: what must block or ignore a signal is a child.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import tomllib

import pytest

from aiosig._cli._words import describe_code, parse_signal, signal_name
from aiosig._siginfo import SigInfo
from tests._util import DEFAULT_TIMEOUT, ROOT, Child, finish, run_child, send_from_child
from tests.test_shutdown import PID1, _unshare_works

# `python -c` with this code is `python -m aiosig`: run_child then gives the READY handshake.
AIOSIG = "import runpy; runpy.run_module('aiosig', run_name='__main__', alter_sys=True)"
ENV = {**os.environ, "COLUMNS": "80"}


def aiosig(*args: str, timeout: float = 30, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aiosig ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "aiosig", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=ENV,
        **kwargs,  # type: ignore[call-overload]
    )


def start_aiosig(*args: str, prefix: tuple[str, ...] = ()) -> Child:
    """``python -m aiosig ARGS`` running; it (or the command it runs) must print READY."""
    return run_child(AIOSIG, *args, env=ENV, prefix=prefix)


def fits_80_columns(text: str) -> bool:
    return all(len(line) <= 80 for line in text.splitlines())


# ---- all commands -----------------------------------------------------------------------------

COMMANDS = ["demo", "watch", "status", "send", "run"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_shows_an_example_within_80_columns(command: str) -> None:
    done = aiosig(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "example" in done.stdout
    assert f"aiosig {command}" in done.stdout.split("example", 1)[1]
    assert fits_80_columns(done.stdout), done.stdout


BAD_INPUT = {
    "unknown signal name": (["send", "1", "SIGFOO"], "unknown signal 'SIGFOO'"),
    "unknown signal number": (["watch", "99"], "unknown signal '99'"),
    "pid that does not exist": (["send", "99999999", "TERM"], "no process 99999999"),
    "status of no process": (["status", "99999999"], "no process 99999999"),
    "pid that is not a number": (["status", "self"], "invalid int value"),
    "missing pid": (["send"], "the following arguments are required"),
    "missing command": (["run"], "give the command to run after --"),
    "command not found": (["run", "--", "/nonexistent/cmd"], "no such file or directory"),
    "bad grace": (["run", "--grace", "-1", "--", "true"], "above 0"),
    "bad signal map": (["run", "--signal-map", "KILL:TERM", "--", "true"], "cannot be"),
    "value too big": (["send", "1", "RTMIN", "--value", str(2**40)], "does not fit a C int"),
    "bad pid filter in watch": (["watch", "--pid-filter", "x"], "process ids"),
    "uncatchable in watch": (["watch", "KILL"], "SIGKILL cannot be caught by any process"),
    "fault signal in watch": (["watch", "SEGV"], "SIGSEGV is a fault signal"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_on_stderr_and_a_non_zero_status(case: str) -> None:
    args, message = BAD_INPUT[case]
    done = aiosig(*args)
    assert done.returncode != 0
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert fits_80_columns(done.stderr), done.stderr
    assert message in done.stderr
    assert done.stderr.startswith(f"aiosig {args[0]}"), done.stderr


def test_a_command_that_cannot_be_found_exits_127_as_a_shell_does() -> None:
    assert aiosig("run", "--", "/nonexistent/cmd").returncode == 127


USERNS = ("unshare", "--user", "--map-root-user")


def test_no_permission_to_signal_is_one_line_and_non_zero() -> None:
    # A process of another user, signalled from a user namespace where we hold no CAP_KILL
    # over it (as root we could signal anyone).
    probe = subprocess.run([*USERNS, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare --user is not available here")
    target = subprocess.Popen(["sleep", "30"], user=65534)
    try:
        done = subprocess.run(
            [*USERNS, sys.executable, "-m", "aiosig", "send", str(target.pid), "TERM"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
    finally:
        target.kill()
        target.wait()
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"aiosig send: not permitted to signal process {target.pid}: it is another user's"
    ]


def test_the_console_script_aiosig_is_the_command_line() -> None:
    with open(ROOT / "pyproject.toml", "rb") as file:
        scripts = tomllib.load(file)["project"]["scripts"]
    module, _, function = scripts["aiosig"].partition(":")
    code = f"import {module}; print(callable({module}.{function}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "True", done.stderr


# ---- words ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["SIGTERM", "TERM", "term", "15", " Sigterm "])
def test_a_signal_is_named_as_kill_names_it(text: str) -> None:
    assert parse_signal(text) == signal.SIGTERM


def test_real_time_signals_are_named_from_rtmin_and_rtmax() -> None:
    assert parse_signal("RTMIN+2") == parse_signal("SIGRTMIN+2") == signal.SIGRTMIN + 2
    assert parse_signal("RTMAX-1") == signal.SIGRTMAX - 1
    assert signal_name(signal.SIGRTMIN + 2) == "SIGRTMIN+2"
    assert signal_name(signal.SIGRTMAX) == "SIGRTMAX"


def test_si_codes_are_decoded_with_their_payload() -> None:
    queued = SigInfo(signal.SIGUSR1, si_code=-1, si_pid=7, si_uid=0, si_value=42, precise=True)
    assert describe_code(queued) == ("SI_QUEUE", "sigqueue, value 42")
    child = SigInfo(signal.SIGCHLD, si_code=os.CLD_EXITED, si_pid=7, si_status=3, precise=True)
    assert describe_code(child) == ("CLD_EXITED", "child exited with status 3")
    killed = SigInfo(signal.SIGCHLD, si_code=os.CLD_KILLED, si_status=9, precise=True)
    assert describe_code(killed) == ("CLD_KILLED", "child killed by SIGKILL")
    assert describe_code(SigInfo(signal.SIGALRM, si_code=0x80))[0] == "SI_KERNEL"
    assert describe_code(SigInfo(signal.SIGUSR1, si_code=-6))[0] == "SI_TKILL"
    assert describe_code(SigInfo(signal.SIGHUP))[1].startswith("plain delivery")


# ---- watch ------------------------------------------------------------------------------------

SENDER = """\
import os, signal, sys
import aiosig
pid = int(sys.argv[1])
os.kill(pid, signal.SIGUSR1)
aiosig.sigqueue(pid, signal.SIGRTMIN + 1, 42)
sys.stdin.read()  # alive until the test has what it wants: the watch reads our /proc
"""


def start_watch(*args: str) -> subprocess.Popen[str]:
    """``aiosig watch ARGS``, once it said on stderr that it is watching."""
    watch = subprocess.Popen(
        [sys.executable, "-m", "aiosig", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    assert watch.stderr is not None
    ready, _, _ = select.select([watch.stderr], [], [], DEFAULT_TIMEOUT)
    line = watch.stderr.readline() if ready else ""
    if "watching" not in line:
        watch.kill()
        raise AssertionError(f"watch did not start: {line}{watch.communicate()}")
    return watch


def start_sender(pid: int, marker: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SENDER, str(pid), marker],
        stdin=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_watch_reports_the_sender_pid_command_and_sigqueue_value_as_json() -> None:
    watch = start_watch("USR1", "RTMIN+1", "--json", "--count", "2")
    sender = start_sender(watch.pid, "json-marker")
    try:
        returncode, out, err = finish(watch)
    finally:
        sender.communicate("", timeout=DEFAULT_TIMEOUT)
    assert returncode == 0, err
    seen = {entry["signal"]: entry for entry in map(json.loads, out.splitlines())}
    assert set(seen) == {"SIGUSR1", "SIGRTMIN+1"}
    for entry in seen.values():
        assert entry["pid"] == sender.pid
        assert entry["uid"] == os.getuid()
        assert entry["cmdline"][-1] == "json-marker"
        assert entry["precise"] is True
    assert (seen["SIGUSR1"]["code"], seen["SIGUSR1"]["value"]) == ("SI_USER", None)
    assert (seen["SIGRTMIN+1"]["code"], seen["SIGRTMIN+1"]["value"]) == ("SI_QUEUE", 42)


def test_watch_prints_one_line_per_delivery_naming_the_sender_within_80_columns() -> None:
    watch = start_watch("--count", "2")  # every signal but SIGINT
    sender = start_sender(watch.pid, "text-marker")
    try:
        returncode, out, err = finish(watch)
    finally:
        sender.communicate("", timeout=DEFAULT_TIMEOUT)
    assert returncode == 0, err
    lines = sorted(out.splitlines(), key=lambda line: "SIGRTMIN" in line)
    assert len(lines) == 2, out
    assert f"SIGUSR1 kill from pid {sender.pid} " in lines[0]
    assert f"SIGRTMIN+1 sigqueue, value 42 from pid {sender.pid} " in lines[1]
    assert fits_80_columns(out)


def test_watch_ends_quietly_on_sigint() -> None:
    watch = start_watch()
    send_from_child(watch.pid, signal.SIGINT)
    returncode, out, err = finish(watch)
    assert (returncode, out, err) == (130, "", "")


def test_watch_ends_quietly_when_its_reader_goes_away() -> None:
    watch = start_watch()  # `aiosig watch | head -1`, after head exited
    assert watch.stdout is not None
    watch.stdout.close()
    send_from_child(watch.pid, signal.SIGUSR1)
    assert watch.wait(DEFAULT_TIMEOUT) == 0
    assert watch.stderr is not None
    with watch.stderr:
        assert watch.stderr.read() == ""


def test_watch_pid_filter_leaves_out_other_senders() -> None:
    watch = start_watch("USR2", "HUP", "--json", "--count", "1", "--pid-filter", "1,2")
    send_from_child(watch.pid, signal.SIGUSR2)  # not from pid 1 or 2: left out
    time.sleep(0.2)
    assert watch.poll() is None
    watch.kill()
    _, out, _ = finish(watch)
    assert out == ""


# ---- status -----------------------------------------------------------------------------------

STATE = """\
import signal, threading
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
signal.signal(signal.SIGHUP, lambda *a: None)
def worker():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN + 3})
    threading.Event().wait()
threading.Thread(target=worker, daemon=True, name="worker").start()
print("READY")
threading.Event().wait()
"""


def test_status_shows_a_blocked_signal_as_blocked_and_an_ignored_one_as_ignored() -> None:
    child = run_child(STATE)
    try:
        text = aiosig("status", str(child.pid))
        data = aiosig("status", str(child.pid), "--json", "--threads")
    finally:
        child.kill()
        finish(child)
    assert text.returncode == 0, text.stderr
    rows: dict[str, list[str]] = {}
    label = ""
    for line in text.stdout.splitlines()[1:]:
        label = line[:21].strip() or label  # a wrapped row goes on without its label
        rows.setdefault(label, []).extend(line[21:].split())
    assert "SIGUSR1" in rows["blocked"]
    assert "SIGUSR2" in rows["ignored"] and "SIGUSR2" not in rows["blocked"]
    assert "SIGHUP" in rows["caught"]
    assert text.stdout.startswith(f"process {child.pid} (python")
    assert fits_80_columns(text.stdout)
    process, *threads = map(json.loads, data.stdout.splitlines())
    assert "SIGUSR1" in process["blocked"] and "SIGUSR2" in process["ignored"]
    assert len(threads) == process["threads"] == 2
    worker = next(t for t in threads if t["tid"] != child.pid)
    assert "SIGRTMIN+3" in worker["blocked"] and "SIGUSR1" in worker["blocked"]
    main = next(t for t in threads if t["tid"] == child.pid)
    assert "SIGRTMIN+3" not in main["blocked"]


# ---- send -------------------------------------------------------------------------------------

PRECISE = """\
import asyncio, signal, aiosig
SIG = signal.SIGRTMIN + 2
async def main():
    async with aiosig.open_signal_receiver(SIG) as receiver:
        print("READY")
        info = await anext(receiver)
        print(info.si_code, info.si_value, info.si_pid, info.precise)
with aiosig.block(SIG):
    asyncio.run(main())
"""


def test_send_with_a_value_is_seen_by_a_precise_receiver() -> None:
    child = run_child(PRECISE)
    sender = subprocess.Popen(
        [sys.executable, "-m", "aiosig", "send", str(child.pid), "RTMIN+2", "--value", "7"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    said, _ = sender.communicate(timeout=DEFAULT_TIMEOUT)
    returncode, out, err = finish(child)
    assert sender.returncode == 0
    assert said.startswith(f"queued SIGRTMIN+2 with value 7 to {child.pid} (python")
    assert returncode == 0, err
    assert out.split() == ["-1", "7", str(sender.pid), "True"]


@pytest.mark.parametrize("name", ["SIGTERM", "TERM", "15"])
def test_send_takes_a_name_a_short_name_or_a_number(name: str) -> None:
    child = run_child("print('READY'); import time; time.sleep(60)")
    done = aiosig("send", str(child.pid), name)
    returncode, _, _ = finish(child)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"sent SIGTERM to {child.pid} ")
    assert returncode == -signal.SIGTERM


# ---- run --------------------------------------------------------------------------------------


def supervised(body: str, *options: str, prefix: tuple[str, ...] = ()) -> Child:
    """``aiosig run OPTIONS -- python -c BODY``, once BODY printed READY."""
    return start_aiosig("run", *options, "--", sys.executable, "-c", body, prefix=prefix)


ON_SIGNAL = """\
import signal, sys, time
def stop(signum, frame):
    print("child got", signal.Signals(signum).name, flush=True)
    sys.exit(3)
for name in sys.argv[1:]:
    signal.signal(getattr(signal, name), stop)
print("READY", flush=True)
time.sleep(60)
"""


def test_run_forwards_sigterm_to_the_child_and_exits_with_its_code() -> None:
    run = start_aiosig("run", "--", sys.executable, "-c", ON_SIGNAL, "SIGTERM")
    send_from_child(run.pid, signal.SIGTERM)
    returncode, out, err = finish(run)
    assert out == "child got SIGTERM\n", err
    assert returncode == 3


def test_run_forwards_control_signals_without_stopping() -> None:
    run = start_aiosig("run", "--", sys.executable, "-c", ON_SIGNAL, "SIGHUP", "SIGUSR2")
    send_from_child(run.pid, signal.SIGUSR2)
    returncode, out, err = finish(run)
    assert out == "child got SIGUSR2\n", err
    assert returncode == 3


def test_run_rewrites_signals_with_signal_map() -> None:
    run = start_aiosig(
        "run", "--signal-map", "TERM:USR1", "--", sys.executable, "-c", ON_SIGNAL, "SIGUSR1"
    )
    send_from_child(run.pid, signal.SIGTERM)
    returncode, out, err = finish(run)
    assert out == "child got SIGUSR1\n", err
    assert returncode == 3


SLEEPER = "print('READY', flush=True); import time; time.sleep(60)"


def test_run_exits_143_when_the_child_dies_of_sigterm() -> None:
    run = supervised(SLEEPER)
    send_from_child(run.pid, signal.SIGTERM)
    returncode, _, err = finish(run)
    assert returncode == 143, err


def test_run_passes_on_the_childs_own_exit_code() -> None:
    done = aiosig("run", "--", sys.executable, "-c", "import sys; sys.exit(7)")
    assert done.returncode == 7, done.stderr


def test_run_kills_a_child_that_ignores_sigterm_after_the_grace_period() -> None:
    stubborn = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + SLEEPER
    run = supervised(stubborn, "--grace", "1", "-v")
    send_from_child(run.pid, signal.SIGTERM)
    returncode, _, err = finish(run)
    assert returncode == 128 + signal.SIGKILL, err
    assert "was still running at the deadline: killed (SIGKILL)" in " ".join(err.split())


GROUP = """\
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", '''
import signal, sys, time
def stop(*_):
    print("worker got SIGTERM", flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("READY", flush=True)
time.sleep(60)
'''])
worker.wait()
"""


def test_run_process_group_signals_the_whole_group() -> None:
    run = supervised(textwrap.dedent(GROUP), "--process-group")
    send_from_child(run.pid, signal.SIGTERM)
    returncode, out, err = finish(run)
    assert "worker got SIGTERM" in out, err
    assert returncode == 128 + signal.SIGTERM  # the worker's parent died of it


ORPHAN = """\
import os, sys, time
reading, writing = os.pipe()
middle = os.fork()
if middle == 0:  # a daemon's double fork: the grandchild is orphaned, adopted by PID 1
    grandchild = os.fork()
    if grandchild == 0:
        time.sleep(0.2)
        os._exit(0)
    os.write(writing, str(grandchild).encode())
    os._exit(0)
os.waitpid(middle, 0)
grandchild = int(os.read(reading, 100))
print("grandchild's parent", open(f"/proc/{grandchild}/stat").read().split()[3], flush=True)
deadline = time.monotonic() + 10
while os.path.exists(f"/proc/{grandchild}") and time.monotonic() < deadline:
    time.sleep(0.1)
if os.path.exists(f"/proc/{grandchild}"):
    print("still there:", open(f"/proc/{grandchild}/stat").read(), flush=True)
    sys.exit(1)
print("no zombie remains", flush=True)
"""


@pytest.mark.skipif(not _unshare_works(), reason="unshare --pid needs root (or user namespaces)")
def test_run_as_pid_1_reaps_an_orphaned_grandchild() -> None:
    done = subprocess.run(
        [*PID1, sys.executable, "-m", "aiosig", "run", "--", sys.executable, "-c", ORPHAN],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.stdout.splitlines() == ["grandchild's parent 1", "no zombie remains"], done.stderr
    assert done.returncode == 0


# ---- demo -------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_demo_runs_to_completion_and_shows_every_part(flavour: str) -> None:
    done = aiosig("demo", *(["--uvloop"] if flavour == "uvloop" else []))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    for expected in (
        "SIGUSR1 kill from pid",
        "SIGRTMIN+1 sigqueue, value 42 from pid",
        "SIGHUP plain delivery",
        "await aiosig.alarm(0.25): SIGALRM",
        "tick 3",
        "aiosig.run: SIGTERM from pid",
        "main: cancelled",
        "task 'heartbeat': cancelled",
        "hook _close_connections",
        "shutdown finished",
        "exit status 0",
    ):
        assert expected in out, out
    assert fits_80_columns(out), out
