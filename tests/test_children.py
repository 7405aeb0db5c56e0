"""Children at shutdown: stop signals forwarded, SIGKILL at the end, every child reaped by its
owner with its true status; and, as PID 1 of a real pid namespace, orphans reaped without
stealing the status of a child that asyncio or uvloop waits for.

Every child is a real interpreter that prints READY once its signal handling is in place, in
each of the three forms `Children` takes: a ``subprocess.Popen``, an asyncio ``Process`` and a
bare pid (``os.posix_spawn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from aiosig import _children
from aiosig._children import Child, Children, ZombieReaper
from tests._util import DEFAULT_TIMEOUT, finish, run_child, until

KINDS = ["popen", "process", "pid"]

EXITS_7_ON_TERM = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
print("READY", flush=True)
time.sleep(60)
"""

IGNORES_TERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("READY", flush=True)
time.sleep(60)
"""

DIES_OF_TERM = """
import time
print("READY", flush=True)
time.sleep(60)
"""

# A group leader whose own child (same group) sleeps; the leader exits with 100 + the signal
# that ended its child, so it reports whether the group's signal reached its member too.
LEADS_A_GROUP = """
import signal, subprocess, sys, time
member = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(100 - member.wait()))
print("READY", flush=True)
time.sleep(60)
"""

# A group leader that dies of SIGTERM and leaves a member that ignores it, and prints its pid.
LEAVES_A_MEMBER_BEHIND = """
import subprocess, sys
code = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(60)"
)
member = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
member.stdout.readline()
print(member.pid, flush=True)
print("READY", flush=True)
import time; time.sleep(60)
"""


def _read_ready(fd: int) -> list[str]:
    """Read lines from `fd` up to READY (select-bounded); return the lines before it."""
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    data = b""
    while b"READY\n" not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no READY within {DEFAULT_TIMEOUT} s: {data!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"the child closed its stdout before READY: {data!r}"
            data += chunk
    return data.decode().split("READY\n")[0].splitlines()


class Spawner:
    """Starts children of each kind and kills and reaps whatever a test leaves behind."""

    def __init__(self) -> None:
        self.started: list[Child] = []
        self.before_ready: dict[int, list[str]] = {}
        self._fds: list[int] = []
        self._groups: list[int] = []

    async def __call__(self, kind: str, code: str, *, session: bool = False) -> Child:
        argv = [sys.executable, "-c", textwrap.dedent(code)]
        child: Child
        if kind == "popen":
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=session)
            assert child.stdout is not None
            lines = await asyncio.to_thread(_read_ready, child.stdout.fileno())
        elif kind == "process":
            child = await asyncio.create_subprocess_exec(
                *argv, stdout=subprocess.PIPE, start_new_session=session
            )
            assert child.stdout is not None
            out = await asyncio.wait_for(child.stdout.readuntil(b"READY\n"), DEFAULT_TIMEOUT)
            lines = out.decode().splitlines()[:-1]
        else:
            r, w = os.pipe()
            actions = [(os.POSIX_SPAWN_DUP2, w, 1)]
            child = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setsid=session)
            os.close(w)
            self._fds.append(r)
            lines = await asyncio.to_thread(_read_ready, r)
        self.started.append(child)
        if session:
            self._groups.append(_pid(child))
        self.before_ready[_pid(child)] = lines
        return child

    async def cleanup(self) -> None:
        for pgid in self._groups:  # a member left alive would hold the stdout pipe open
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        for child in self.started:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                if isinstance(child, int):
                    os.kill(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                elif child.returncode is None:
                    child.kill()
                    if isinstance(child, subprocess.Popen):
                        child.wait(DEFAULT_TIMEOUT)
                    else:
                        await asyncio.wait_for(child.wait(), DEFAULT_TIMEOUT)
        for child in self.started:
            if isinstance(child, subprocess.Popen) and child.stdout is not None:
                child.stdout.close()
            elif isinstance(child, asyncio.subprocess.Process):
                with contextlib.suppress(asyncio.IncompleteReadError):
                    await asyncio.wait_for(child.communicate(), DEFAULT_TIMEOUT)
        for fd in self._fds:
            os.close(fd)


def _pid(child: Child) -> int:
    return child if isinstance(child, int) else int(child.pid)


@contextlib.asynccontextmanager
async def spawner() -> AsyncIterator[Spawner]:
    """A `Spawner` whose children are all gone when the block ends."""
    spawn = Spawner()
    try:
        yield spawn
    finally:
        await spawn.cleanup()


def _reaped_by_children(child: Child) -> bool:
    """Whether nobody is left to reap `child` (we must not reap it here to find out)."""
    if not isinstance(child, int):
        return child.returncode is not None
    try:
        os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return False


def _later(seconds: float) -> float:
    return time.monotonic() + seconds


def _within(coro: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any]:
    return asyncio.wait_for(coro, 2 * DEFAULT_TIMEOUT)


@pytest.fixture(params=["pidfd", "pid"])
def handle(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Children tracked by pidfd (Linux 5.3+), or by pid and polling (elsewhere)."""
    if request.param == "pid":
        monkeypatch.setattr(_children, "_have_pidfd", False)
    elif not _children._have_pidfd:
        pytest.skip("this kernel has no pidfd_open")
    return str(request.param)


@pytest.mark.asyncio
async def test_a_stop_signal_reaches_each_kind_of_child_and_it_is_reaped_with_its_status(
    handle: str,
) -> None:
    async with spawner() as spawn:
        children = Children()
        started = [await spawn(kind, EXITS_7_ON_TERM) for kind in KINDS]
        for child in started:
            children.add(child)
        assert len(children) == 3
        children.signal(signal.SIGTERM)
        assert await _within(children.wait(_later(DEFAULT_TIMEOUT))) == []
        assert len(children) == 0
        for child in started:
            assert _reaped_by_children(child), child
            assert children.returncode(child) == 7, child


@pytest.mark.asyncio
async def test_a_terminal_signal_skips_children_of_our_own_group_which_got_it_already(
    handle: str,
) -> None:
    # A terminal's Ctrl-C goes to the whole foreground group: forwarding it to a child in our
    # own process group would deliver it twice.
    async with spawner() as spawn:
        children = Children()
        ours = await spawn("process", EXITS_7_ON_TERM)
        own_group = await spawn("process", LEADS_A_GROUP, session=True)
        children.add(ours)
        children.add(own_group, group=True)
        children.signal(signal.SIGTERM, from_terminal=True)
        assert await _within(children.wait(_later(1.0))) == [ours.pid]
        assert children.returncode(own_group) == 100 + signal.SIGTERM
        children.signal(signal.SIGTERM)  # from a process: every child gets it
        assert await _within(children.wait(_later(DEFAULT_TIMEOUT))) == []
        assert children.returncode(ours) == 7


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_stop_signal_reaches_every_process_of_a_registered_group(
    kind: str, handle: str
) -> None:
    async with spawner() as spawn:
        children = Children()
        leader = await spawn(kind, LEADS_A_GROUP, session=True)
        children.add(leader, group=True)
        children.signal(signal.SIGTERM)
        assert await _within(children.wait(_later(DEFAULT_TIMEOUT))) == []
        assert children.returncode(leader) == 100 + signal.SIGTERM  # its member got it too


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_stop_kills_a_child_that_ignores_sigterm_at_the_deadline_and_reaps_it(
    kind: str, handle: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with spawner() as spawn:
        children = Children()
        child = await spawn(kind, IGNORES_TERM)
        children.add(child)
        children.signal(signal.SIGTERM)
        until = _later(0.5)
        with caplog.at_level(logging.WARNING, logger="aiosig"):
            await _within(children.stop(until))
        assert time.monotonic() >= until  # it was given the whole grace period
        assert children.returncode(child) == -signal.SIGKILL
        assert _reaped_by_children(child)
        assert len(children) == 0
        (record,) = caplog.records
        assert record.getMessage().startswith(f"child process {_pid(child)}")
        assert record.getMessage().endswith("was still running at the deadline: killed (SIGKILL)")


@pytest.mark.asyncio
async def test_stop_kills_what_is_left_of_a_group_whose_leader_exited() -> None:
    async with spawner() as spawn:
        children = Children()
        leader = await spawn("popen", LEAVES_A_MEMBER_BEHIND, session=True)
        (member,) = map(int, spawn.before_ready[_pid(leader)])
        children.add(leader, group=True)
        children.signal(signal.SIGTERM)
        assert await _within(children.wait(_later(0.5))) == [_pid(leader)]  # the member lives on
        assert children.returncode(leader) == -signal.SIGTERM
        await _within(children.stop(_later(0)))
        assert len(children) == 0
        assert _state(member) in (None, "Z")  # gone, or dead and waiting for its new parent


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read()
    except FileNotFoundError:
        return None
    return stat[stat.rfind(")") + 2]


@pytest.mark.asyncio
async def test_kill_now_from_another_thread_kills_every_child() -> None:
    async with spawner() as spawn:
        children = Children()
        started = [await spawn(kind, IGNORES_TERM) for kind in KINDS]
        for child in started:
            children.add(child)
        killer = threading.Thread(target=children.kill_now)
        killer.start()
        killer.join(DEFAULT_TIMEOUT)
        assert await _within(children.wait(_later(DEFAULT_TIMEOUT))) == []
        assert [children.returncode(c) for c in started] == [-signal.SIGKILL] * 3


@pytest.mark.asyncio
async def test_a_discarded_child_is_no_longer_signalled() -> None:
    async with spawner() as spawn:
        children = Children()
        kept = await spawn("popen", EXITS_7_ON_TERM)
        discarded = await spawn("popen", DIES_OF_TERM)  # would die at once of a SIGTERM
        children.add(kept)
        children.add(discarded)
        children.discard(discarded)
        children.signal(signal.SIGTERM)
        assert await _within(children.wait(_later(DEFAULT_TIMEOUT))) == []
        assert isinstance(discarded, subprocess.Popen)
        assert discarded.poll() is None


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_a_child_that_already_exited_and_was_reaped_is_accepted_and_ignored(
    kind: str,
) -> None:
    async with spawner() as spawn:
        child = await spawn(kind, DIES_OF_TERM)
        if isinstance(child, int):
            os.kill(child, signal.SIGTERM)
            os.waitpid(child, 0)
        else:
            child.terminate()
            await _within(child.wait() if kind == "process" else asyncio.to_thread(child.wait))
        children = Children()
        children.add(child)
        assert len(children) == 0
        assert await _within(children.wait(_later(DEFAULT_TIMEOUT))) == []


@pytest.mark.parametrize(
    ("child", "error"),
    [("1234", TypeError), (12.0, TypeError), (True, TypeError), (None, TypeError), (0, ValueError)],
)
def test_add_refuses_what_is_not_a_child(child: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        Children().add(child)


def test_add_with_group_refuses_a_child_that_does_not_lead_its_own_group() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        children = Children()
        with pytest.raises(ValueError, match=r"start_new_session=True \(or process_group=0\)"):
            children.add(child, group=True)
        assert len(children) == 0
    finally:
        child.kill()
        child.wait(DEFAULT_TIMEOUT)


def _waitable(pid: int) -> bool:
    """Whether `pid` is a zombie child of ours that nobody has reaped (it is not reaped here)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False


@pytest.mark.asyncio
async def test_the_zombie_reaper_reaps_a_zombie_left_for_two_sweeps_unless_it_is_kept() -> None:
    true = [sys.executable, "-c", "pass"]
    orphan_like = subprocess.Popen(true)  # nobody waits for it
    kept = subprocess.Popen(true)
    for child in (orphan_like, kept):
        await until(lambda child=child: _waitable(child.pid))  # exited: a zombie now
    reaper = ZombieReaper(asyncio.get_running_loop(), keep=lambda pid: pid == kept.pid)
    assert reaper.sweep() == []  # a zombie seen for the first time is left to its owner
    reaper.start()
    try:
        await until(lambda: not _waitable(orphan_like.pid))
    finally:
        reaper.close()
    assert _waitable(kept.pid)
    assert kept.wait(DEFAULT_TIMEOUT) == 0
    assert orphan_like.wait(DEFAULT_TIMEOUT) == 0  # the limit: Popen reads "gone" as 0


# ---- PID 1 -------------------------------------------------------------------------------


def _pid_namespaces_permitted() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--pid", "--fork", "--mount-proc", "true"]
    return subprocess.run(probe, capture_output=True, timeout=DEFAULT_TIMEOUT).returncode == 0


LAUNCH_AS_PID_1 = """
import os, sys
command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", *sys.argv[1:]]
os.execvp(command[0], command)
"""

AS_PID_1 = """
import asyncio, os, sys, time
from aiosig._children import ZombieReaper

factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
assert os.getpid() == 1, os.getpid()
print("READY")

def state(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return None
    return stat[stat.rfind(")") + 2]

def zombies():
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and state(p) == "Z"]

def orphan_that_exits():
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            time.sleep(0.3)
            os._exit(3)
        os._exit(0)
    os.waitpid(middle, 0)

async def main():
    reaper = ZombieReaper(asyncio.get_running_loop(), keep=lambda pid: False)
    reaper.start()
    # Our own child, awaited while the sweeps run, and an orphan that exits meanwhile.
    own = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(2.5); raise SystemExit(7)"
    )
    orphan_that_exits()
    print("own", await asyncio.wait_for(own.wait(), 10))
    # A child that exits while the loop is wedged, seen as a zombie by two sweeps more than
    # a second apart within that wedge: its owner has not had the loop yet, so it is not
    # an orphan.
    late = await asyncio.create_subprocess_exec(sys.executable, "-c", "raise SystemExit(5)")
    deadline = time.monotonic() + 10
    while state(late.pid) not in ("Z", None) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("swept", reaper.sweep())
    time.sleep(1.5)
    print("swept", reaper.sweep())
    print("late", await asyncio.wait_for(late.wait(), 10))
    deadline = time.monotonic() + 10
    while zombies() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    print("zombies", zombies())
    reaper.close()

with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
"""


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_as_pid_1_orphans_are_reaped_and_awaited_children_keep_their_status(
    flavour: str,
) -> None:
    if not _pid_namespaces_permitted():
        pytest.skip("unshare --pid --fork --mount-proc is not installed or not permitted here")
    child = run_child(LAUNCH_AS_PID_1, AS_PID_1, flavour)
    returncode, out, err = finish(child, timeout=30)
    assert returncode == 0, err
    assert out.splitlines() == ["own 7", "swept []", "swept []", "late 5", "zombies []"], err


def test_a_rewrite_table_changes_what_signal_sends_but_never_sigkill() -> None:
    quits = run_child(EXITS_7_ON_TERM)
    dropped = run_child(EXITS_7_ON_TERM)
    children = Children()
    children.add(quits, rewrite={signal.SIGQUIT: signal.SIGTERM, signal.SIGKILL: 0})
    children.add(dropped, rewrite={signal.SIGTERM: 0})
    children.signal(signal.SIGQUIT)  # SIGTERM for the first; the second dies of SIGQUIT
    assert finish(quits)[0] == 7
    assert finish(dropped)[0] == -signal.SIGQUIT
    ignored = run_child(EXITS_7_ON_TERM)
    children.add(ignored, rewrite={signal.SIGTERM: 0, signal.SIGKILL: signal.SIGTERM})
    children.signal(signal.SIGTERM)  # dropped
    time.sleep(0.1)
    assert ignored.poll() is None
    children.signal(signal.SIGKILL)
    assert finish(ignored)[0] == -signal.SIGKILL
