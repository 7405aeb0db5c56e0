"""Child processes at shutdown: forward the stop signal, SIGKILL at the end, reap; PID 1's zombies.

Theory of operation
-------------------
Rule 1 (a child is reaped by its owner): whoever started a child may be waiting for its
status: ``Popen.wait()``/``communicate()``, ``asyncio``'s child watcher (a thread blocked in
``waitpid(pid)``, or a pidfd reader), uvloop's libuv (its SIGCHLD handler calls
``waitpid(pid, WNOHANG)`` for each of its processes, and a status taken from under it means
its ``Process.wait()`` never returns). So `Children` reaps each kind through its owner: a
``Popen`` with ``poll()`` (which sets ``returncode``), an asyncio ``Process`` by awaiting its
``wait()``, and only a bare pid with a wait call of its own. A child reaped elsewhere first
(``ChildProcessError``) is simply gone.

Rule 2 (a pidfd pins the process): on Linux each registered child gets a pidfd
(``os.pidfd_open``) when it is added, after checking that it is still an unreaped child of
ours. Signals go through ``signal.pidfd_send_signal`` and a bare pid is reaped with
``waitid(P_PIDFD)``, so neither can reach a stranger that was given the pid again after the
child was reaped. The pidfd becomes readable when the child exits, which `Children.wait`
learns from ``loop.add_reader`` instead of polling. Without pidfds (other systems, kernels
before 5.3), pids are signalled and polled every `POLL_INTERVAL` seconds.

Rule 3 (a process group lives while a live process is in it): with ``group=True`` signals go
to the child's group (``killpg``), which may outlive its leader (a shell's workers). The
group is done when its leader is reaped and no live process in ``/proc`` has that group id;
while one does, the id cannot be given to anyone else, so ``killpg`` reaches only that group.

Rule 4 (thread-safe, no loop needed for signalling): `Children.signal` and `Children.kill_now`
may be called from any thread; the deadline thread calls ``kill_now`` with the main thread
wedged. A lock guards the registry and every use of a pidfd (so none is used after close).
It is never held across anything that blocks; ``kill_now`` waits for it a bounded time, then
signals from a snapshot anyway (a closed pidfd then fails with EBADF, which is ignored).

Rule 5 (PID 1 reaps orphans, never someone else's child): as PID 1 of a pid namespace every
orphan of the namespace becomes our child, and its zombie stays until we reap it. A
`ZombieReaper` sweeps from a loop timer every `SWEEP_INTERVAL` seconds. It never calls
``waitpid(-1)``, which would take the status of any child, including those Rule 1's owners
wait for. It asks ``waitid(P_ALL, WNOHANG | WNOWAIT)`` whether any child is a zombie at all
(consuming nothing), then finds our zombie children in ``/proc`` (ppid is us, state ``Z``)
and reaps one only when it is not kept (a registered child: `Children` reaps it) and was
already a zombie in a sweep of an earlier tick at least `SETTLE` seconds before, with the same
start time (a pid given to a new process is a new zombie). Code that waits for its own child
reaps it within milliseconds of its exit, so what stays a zombie across two ticks is an
orphan.

  Why two timer ticks and not just one second: the owners that reap from the loop (asyncio's
  pidfd watcher, libuv's SIGCHLD handler) do it when the loop polls for I/O. Two ticks of a
  timer are always separated by an I/O poll (asyncio moves due timers to the ready queue only
  after ``select``; libuv runs timers before its I/O poll, and a timer re-armed from its own
  callback fires in a later iteration). A zombie seen at tick k was therefore offered to its
  owner before tick k+1 even when the loop was wedged for longer than `SETTLE` in between.
  A sweep called by hand may run in the same loop iteration as a tick, before or after it: it
  records what it sees as seen at the next tick, and reaps only what was seen before the
  latest tick.

  Rejected: a SIGCHLD handler (it changes a process-wide disposition, makes system calls in
  other threads fail with EINTR, and libuv installs its own for uvloop's subprocesses);
  ``waitpid(-1)`` (steals statuses: asyncio then logs "Unknown child process pid", reports
  255, and uvloop's ``Process.wait()`` hangs for ever).

  uvloop: safe with this mechanism. libuv reaps only the pids of its own processes, on its
  SIGCHLD handler's wakeup, in the I/O poll that separates two ticks, so it always comes
  first; orphans it never reaps are left to us. (DESIGN.md's "uvloop owns SIGCHLD" refusal is
  about subscribing to SIGCHLD, which this module never does.)

  Known limit: a child whose owner only polls (``Popen.poll()``, ``multiprocessing``'s
  ``is_alive()``) and does so more than `SETTLE` seconds after its exit, while no one waits
  for it, is taken for an orphan: its status is reaped here and the owner sees the child gone
  (``Popen`` then reports returncode 0). Register such children with `Children` (kept), or
  wait for them. Linux only (pid namespaces, ``/proc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = ("POLL_INTERVAL", "SETTLE", "SWEEP_INTERVAL", "Child", "Children", "ZombieReaper")

Child: TypeAlias = int | subprocess.Popen[Any] | asyncio.subprocess.Process
"""What `Children` takes: a pid of a child of ours, a ``Popen`` or an asyncio ``Process``."""

POLL_INTERVAL = 0.02
"""Seconds between checks of a child whose exit no pidfd announces."""

REAP_AFTER_KILL = 1.0
"""Seconds `Children.stop` waits to reap the children it killed with SIGKILL."""

SWEEP_INTERVAL = 1.0
"""Seconds between two sweeps of a `ZombieReaper`."""

SETTLE = 1.0
"""Seconds a zombie must have been one before a `ZombieReaper` takes it for an orphan."""

KILL_NOW_LOCK_WAIT = 0.2
"""Seconds `Children.kill_now` waits for the registry's lock before signalling without it."""

_LOG = logging.getLogger("aiosig")
# False once the kernel (or a seccomp filter) refused pidfd_open: pids are used from then on.
_have_pidfd = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:  # gone (or not ours to ask about)
        return None


@dataclass(eq=False)
class _Entry:
    """One registered child: what owns its status, how to signal it, whether it is reaped."""

    child: Child
    pid: int
    group: bool
    pidfd: int | None
    rewrite: Mapping[int, int] = field(default_factory=dict)  # what `Children.signal` sends
    returncode: int | None = None
    reaped: bool = False
    waiter: asyncio.Task[int] | None = field(default=None, repr=False)

    def describe(self) -> str:
        what = f"process group {self.pid}" if self.group else f"child process {self.pid}"
        if isinstance(self.child, subprocess.Popen):
            return f"{what} ({self.child.args!r})"
        return what


class Children:
    """The child processes a shutdown stops: stop signals forwarded, SIGKILL at the end, all reaped.

    A registered child is signalled by `signal` and `kill_now`, and reaped by `wait` and
    `stop`, each through its owner (module header, Rule 1), so a ``Popen`` or an asyncio
    ``Process`` ends with its ``returncode`` set; for a bare pid, ask `returncode`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self._returncodes: dict[int, int] = {}  # of bare pids reaped here

    def add(
        self, child: Child, *, group: bool = False, rewrite: Mapping[int, int] | None = None
    ) -> None:
        """Register `child`; a child that has already exited is fine (nothing to do).

        Args:
            child: A pid of a child of this process, a ``subprocess.Popen`` or an
                ``asyncio.subprocess.Process``.
            group: Signal the child's process group instead of the child alone; the child
                must lead its own group.
            rewrite: The signal `signal` sends this child instead of a given one (SIGQUIT
                for SIGTERM: nginx's graceful stop); 0 sends nothing. SIGKILL is never
                rewritten.

        Raises:
            TypeError: `child` is none of the three.
            ValueError: `group` is true but the child does not lead its own process group.
        """
        pid = _pid_of(child)
        unreaped, pidfd = _open_if_unreaped(child, pid)
        if not unreaped:
            return  # exited and reaped already (or never ours): nothing to stop
        if group and not _leads_its_group(pid):
            _close(pidfd)
            raise ValueError(
                f"process {pid} does not lead its own process group; start it with "
                "start_new_session=True (or process_group=0) to stop its group, or add it "
                "without group=True"
            )
        with self._lock:
            old = self._entries.pop(pid, None)
            self._entries[pid] = _Entry(child, pid, group, pidfd, dict(rewrite or {}))
        if old is not None:
            self._close_entry(old)

    def discard(self, child: Child) -> None:
        """Stop tracking `child` (its pid or its object); unknown children are ignored."""
        pid = _pid_of(child)
        with self._lock:
            entry = self._entries.pop(pid, None)
        if entry is not None:
            self._close_entry(entry)

    def signal(self, signum: int, *, from_terminal: bool = False) -> None:
        """Send `signum` (or what the child's ``rewrite`` says) to every registered child.

        Safe from any thread. A child that has just exited is skipped silently (ESRCH).
        With `from_terminal` (the kernel sent it: a terminal's Ctrl-C, Ctrl-\\ or hangup
        goes to the whole foreground process group), a child in our own process group got it
        already and is skipped: one Ctrl-C must not reach it twice.
        """
        ours = os.getpgrp() if from_terminal else None
        with self._lock:
            for entry in list(self._entries.values()):
                if ours is not None and not entry.group and _process_group(entry.pid) == ours:
                    continue
                instead = signum if signum == signal.SIGKILL else entry.rewrite.get(signum, signum)
                if instead != 0:
                    _send(entry, instead)

    def kill_now(self) -> None:
        """SIGKILL every registered child (or group); safe from any thread, needs no loop."""
        locked = self._lock.acquire(timeout=KILL_NOW_LOCK_WAIT)
        try:
            for entry in list(self._entries.values()):
                with contextlib.suppress(OSError):  # a pidfd closed meanwhile (unlocked)
                    _send(entry, signal.SIGKILL)
        finally:
            if locked:
                self._lock.release()

    def returncode(self, child: Child) -> int | None:
        """The exit status of `child` once reaped (``-signum`` if a signal ended it), else None."""
        pid = _pid_of(child)
        if isinstance(child, int):
            return self._returncodes.get(pid)
        return child.returncode

    def __len__(self) -> int:
        """The number of registered children not yet known to be reaped (groups: and empty)."""
        return len(self._entries)

    def __contains__(self, pid: object) -> bool:
        """Whether `pid` is a registered child (a `ZombieReaper`'s ``keep``)."""
        return pid in self._entries

    async def wait(self, until: float) -> list[int]:
        """Reap children as they exit, until all have or ``time.monotonic()`` reaches `until`.

        Args:
            until: The end of the wait, on the ``time.monotonic()`` clock.

        Returns:
            The pids of the registered children (or groups) still alive, in the order added.
        """
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._collect()
                with self._lock:
                    left = list(self._entries.values())
                remaining = until - time.monotonic()
                if not left or remaining <= 0:
                    return [entry.pid for entry in left]
                await self._next_exit(loop, left, remaining)
        finally:
            with self._lock:
                left = list(self._entries.values())
            for entry in left:
                if entry.waiter is not None:
                    entry.waiter.cancel()
                    entry.waiter = None

    async def stop(self, until: float) -> None:
        """End a shutdown: wait until `until`, SIGKILL whoever is left, and reap them.

        Each child killed is logged on the ``aiosig`` logger, and so is any that could not be
        reaped within `REAP_AFTER_KILL` seconds of its SIGKILL.

        Args:
            until: The deadline, on the ``time.monotonic()`` clock.
        """
        if not await self.wait(until):
            return
        with self._lock:
            left = list(self._entries.values())
            for entry in left:
                _send(entry, signal.SIGKILL)
        for entry in left:
            _LOG.warning("%s was still running at the deadline: killed (SIGKILL)", entry.describe())
        still = set(await self.wait(time.monotonic() + REAP_AFTER_KILL))
        for entry in left:
            if entry.pid in still:
                _LOG.error(
                    "%s survived SIGKILL for %.1f s (stuck in the kernel?): not reaped",
                    entry.describe(),
                    REAP_AFTER_KILL,
                )

    def _collect(self) -> None:
        """Reap each exited child through its owner; drop those that are done (Rule 1, 3)."""
        with self._lock:
            entries = list(self._entries.values())
        done = [entry for entry in entries if self._reap(entry)]
        with self._lock:
            for entry in done:
                if self._entries.get(entry.pid) is entry:
                    del self._entries[entry.pid]
        for entry in done:
            self._close_entry(entry)

    def _reap(self, entry: _Entry) -> bool:
        if not entry.reaped:
            child = entry.child
            if isinstance(child, subprocess.Popen):
                entry.reaped = child.poll() is not None
            elif isinstance(child, asyncio.subprocess.Process):
                entry.reaped = child.returncode is not None
            else:
                with self._lock:  # the pidfd must not be closed under us
                    entry.reaped, entry.returncode = _reap_pid(entry.pid, entry.pidfd)
                if entry.reaped and entry.returncode is not None:
                    self._returncodes[entry.pid] = entry.returncode
        return entry.reaped and not (entry.group and _group_has_live_members(entry.pid))

    async def _next_exit(
        self, loop: asyncio.AbstractEventLoop, left: list[_Entry], timeout: float
    ) -> None:
        """Sleep until one of `left` may have exited, or `timeout` seconds."""
        news: asyncio.Future[None] = loop.create_future()

        def wake(*_: object) -> None:
            if not news.done():
                news.set_result(None)

        readers: list[int] = []
        poll = False
        for entry in left:
            if entry.reaped:
                poll = True  # a group's members: no pidfd for them
            elif isinstance(entry.child, asyncio.subprocess.Process):
                if entry.waiter is None:  # its owner reaps it: only await that
                    entry.waiter = asyncio.ensure_future(entry.child.wait())
                entry.waiter.add_done_callback(wake)
            elif entry.pidfd is not None and not _readable(entry.pidfd):
                loop.add_reader(entry.pidfd, wake)
                readers.append(entry.pidfd)
            else:
                poll = True  # no pidfd, or exited and its owner has not reaped it yet
        try:
            await asyncio.wait([news], timeout=min(timeout, POLL_INTERVAL) if poll else timeout)
        finally:
            for fd in readers:
                loop.remove_reader(fd)
            for entry in left:
                if entry.waiter is not None:
                    entry.waiter.remove_done_callback(wake)

    def _close_entry(self, entry: _Entry) -> None:
        with self._lock:
            pidfd, entry.pidfd = entry.pidfd, None
        _close(pidfd)
        if entry.waiter is not None:
            entry.waiter.cancel()
            entry.waiter = None


class ZombieReaper:
    """As PID 1 of a pid namespace, reap orphaned zombies without stealing statuses others wait for.

    See the module header (Rule 5) for why this is safe on asyncio and uvloop, and its limit.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, keep: Callable[[int], bool]) -> None:
        """Prepare a reaper for `loop`; `start` it.

        Args:
            loop: The loop whose timer drives the sweeps.
            keep: ``keep(pid)`` is true for a child that someone else reaps (a registered
                child): it is never reaped here.
        """
        self._loop = loop
        self._keep = keep
        self._tick = 0
        # pid: (start time, the tick it was first seen at or before, when)
        self._seen: dict[int, tuple[int, int, float]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Sweep every `SWEEP_INTERVAL` seconds from the loop's timer; idempotent."""
        if self._timer is None:
            self._timer = self._loop.call_later(SWEEP_INTERVAL, self._on_timer)

    def close(self) -> None:
        """Stop sweeping; idempotent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._seen.clear()

    def sweep(self) -> list[int]:
        """Reap the zombies that are safe to reap now (module header, Rule 5).

        Returns:
            The pids reaped.
        """
        return self._sweep(self._tick + 1)  # by hand: as if from the next tick

    def _on_timer(self) -> None:
        self._timer = self._loop.call_later(SWEEP_INTERVAL, self._on_timer)
        self._tick += 1
        try:
            self._sweep(self._tick)
        except Exception as exc:  # the loop's handler reports it; the next tick tries again
            self._loop.call_exception_handler(
                {"message": "aiosig could not reap zombie processes", "exception": exc}
            )

    def _sweep(self, stamp: int) -> list[int]:
        if not _any_zombie_child():
            self._seen.clear()
            return []
        now = time.monotonic()
        seen: dict[int, tuple[int, int, float]] = {}
        reaped: list[int] = []
        for pid, start in _zombie_children():
            if self._keep(pid):
                continue
            before = self._seen.get(pid)
            if before is None or before[0] != start:
                seen[pid] = (start, stamp, now)
            elif before[1] < self._tick and now - before[2] >= SETTLE:
                if _reap_zombie(pid, start):
                    reaped.append(pid)
            else:
                seen[pid] = before
        self._seen = seen
        return reaped


def _pid_of(child: object) -> int:
    if isinstance(child, (subprocess.Popen, asyncio.subprocess.Process)):
        return int(child.pid)
    if isinstance(child, int) and not isinstance(child, bool) and child > 0:
        return child
    if isinstance(child, int) and not isinstance(child, bool):
        raise ValueError(f"a child's pid is a positive int, not {child}")
    raise TypeError(
        "a child is a pid (int), a subprocess.Popen or an asyncio.subprocess.Process, "
        f"not {type(child).__name__}"
    )


def _returncode_of(child: Child) -> int | None:
    return None if isinstance(child, int) else child.returncode


def _open_if_unreaped(child: Child, pid: int) -> tuple[bool, int | None]:
    """Whether `child` is an unreaped child of ours, and a pidfd for it where there are any.

    The pidfd is opened first and the check made through it, so both are about one process
    (Rule 2).
    """
    if _returncode_of(child) is not None:
        return False, None
    pidfd = _pidfd_open(pid)
    if pidfd == _GONE:
        return False, None
    try:
        if pidfd is None:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        else:
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped meanwhile, or never a child of ours
        _close(pidfd)
        return False, None
    return True, pidfd


_GONE = -1


def _pidfd_open(pid: int) -> int | None:
    """A pidfd for `pid`; `_GONE` if no such process; None where pidfds are not available."""
    global _have_pidfd
    if not _have_pidfd:
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return _GONE
    except OSError as exc:
        # ENOSYS: a kernel before 5.3; EPERM: a seccomp filter that predates the call.
        if exc.errno not in (errno.ENOSYS, errno.EPERM):
            raise
        _have_pidfd = False
        return None


def _leads_its_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return True  # gone: there is nothing to signal, so nothing to refuse


def _send(entry: _Entry, signum: int) -> None:
    """Signal one entry; the caller holds the lock (or has given up on it: kill_now)."""
    try:
        if entry.group:
            if not entry.reaped or _group_has_live_members(entry.pid):
                os.killpg(entry.pid, signum)
        elif entry.pidfd is not None:
            signal.pidfd_send_signal(entry.pidfd, signum)
        elif not entry.reaped and _returncode_of(entry.child) is None:
            os.kill(entry.pid, signum)
    except ProcessLookupError:
        pass  # exited just now


def _reap_pid(pid: int, pidfd: int | None) -> tuple[bool, int | None]:
    """Reap a bare pid if it exited: (reaped, returncode); returncode None if reaped elsewhere."""
    try:
        if pidfd is not None:
            result = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
            if result is None:
                return False, None
            exited = result.si_code == os.CLD_EXITED
            return True, result.si_status if exited else -result.si_status
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True, None  # someone else reaped it
    return (True, os.waitstatus_to_exitcode(status)) if reaped else (False, None)


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _proc_stats() -> Iterator[tuple[int, str, int, int, int]]:
    """(pid, state, ppid, pgrp, start time) of every process in ``/proc``."""
    with os.scandir("/proc") as it:
        names = [entry.name for entry in it if entry.name.isdigit()]
    for name in names:
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue  # exited meanwhile
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        yield int(name), fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19])


def _group_has_live_members(pgid: int) -> bool:
    """Whether a process that has not exited is in group `pgid` (Rule 3)."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    return any(pgrp == pgid and state not in "ZX" for _, state, _, pgrp, _ in _proc_stats())


def _any_zombie_child() -> bool:
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False  # no children at all


def _zombie_children() -> list[tuple[int, int]]:
    me = os.getpid()
    return [
        (pid, start) for pid, state, ppid, _, start in _proc_stats() if ppid == me and state == "Z"
    ]


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


def _reap_zombie(pid: int, start: int) -> bool:
    """Reap zombie `pid` if it is still the one that started at `start`; True if reaped here."""
    try:
        pidfd = _pidfd_open(pid)
    except OSError as exc:  # EINVAL: the pid is now a thread's, not a process's
        if exc.errno == errno.EINVAL:
            return False
        raise
    if pidfd == _GONE:
        return False
    if pidfd is None:
        try:
            return os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:
            return False
    try:
        if _start_time(pid) != start:  # the pidfd pins a process; is it the one we saw?
            return False
        try:
            return os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG) is not None
        except ChildProcessError:
            return False
    finally:
        os.close(pidfd)
