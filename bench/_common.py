"""What every scenario shares: loops, peers, signal-state checks, statistics.

Each measurement runs in a fresh worker process (see ``run.py``), so that process-wide signal
state, the aiosig hub and the allocator start clean every time. A worker still checks that
the mechanism it measured left the dispositions, the wakeup fd and the signal mask as it
found them, and reports what changed: that is part of what is being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

PEER = Path(__file__).with_name("_peer.py")
TIMEOUT = 30.0  # every wait in a worker gives up after this long
_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})


# ---- loops ---------------------------------------------------------------------------------


def have(module: str) -> bool:
    """True if `module` can be imported."""
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def run_on(loop: str, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run the coroutine function `main` on ``asyncio``, ``uvloop`` or ``trio``."""
    if loop == "trio":
        import trio

        return trio.run(main)
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


# ---- signal state --------------------------------------------------------------------------


def signal_state() -> dict[str, Any]:
    """Dispositions, wakeup fd and mask of the main thread (call between loop runs only)."""
    dispositions = {
        s: signal.getsignal(s) for s in sorted(signal.valid_signals()) if s not in _UNCATCHABLE
    }
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd)
    mask = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, ()))
    return {"dispositions": dispositions, "wakeup_fd": fd, "mask": mask}


def state_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Name what differs between two `signal_state` snapshots."""
    out = []
    for s, was in before["dispositions"].items():
        now = after["dispositions"].get(s)
        if now is not was and now != was:
            out.append(f"{signal_name(s)}: {was!r} -> {now!r}")
    if before["wakeup_fd"] != after["wakeup_fd"]:
        out.append(f"wakeup fd: {before['wakeup_fd']} -> {after['wakeup_fd']}")
    if before["mask"] != after["mask"]:
        out.append(f"mask: {sorted(before['mask'])} -> {sorted(after['mask'])}")
    return out


def signal_name(signum: int) -> str:
    """``SIGUSR1``, or ``SIGRTMIN+3`` for a real-time signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"


NOTES: list[str] = []  # state problems found inside a worker, reported with its result


@contextlib.contextmanager
def disposition(signum: int, handler: Any) -> Iterator[None]:
    """Set a disposition for the duration (a safety net for late signals), then restore it.

    Whatever the mechanism measured inside left in its place is noted in `NOTES` first, so
    that restoring the original cannot hide a mechanism that failed to restore this one.
    """
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        left = signal.signal(signum, previous)
        if left is not handler and left != handler:
            NOTES.append(f"{signal_name(signum)} left as {left!r}, was {handler!r}")


def drain_pending(signums: set[int]) -> int:
    """Consume signals left pending (blocked) so that unblocking them delivers nothing."""
    n = 0
    while signal.sigtimedwait(signums, 0) is not None:
        n += 1
    return n


# ---- peers ---------------------------------------------------------------------------------


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; else nothing)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)


class Peer:
    """A `_peer.py` process, started with a READY handshake and always reaped."""

    def __init__(self, *args: object) -> None:
        argv = [sys.executable, str(PEER), str(args[0]), str(os.getpid()), *map(str, args[1:])]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, close_fds=True
        )
        self.pid = self.proc.pid
        try:
            line = self._readline(TIMEOUT)
        except BaseException:
            self.stop()
            raise
        if line.strip() != "READY":
            self.stop()
            raise RuntimeError(f"peer did not say READY: {line!r}")

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"peer {self.pid} said nothing for {timeout} s")
        return self.proc.stdout.readline()

    def go(self) -> None:
        """Tell a flooder to start."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finished(self) -> bool:
        """True once the peer exited."""
        return self.proc.poll() is not None

    def report(self) -> str:
        """The flooder's DONE line (waits for it, with a timeout)."""
        return self._readline(TIMEOUT).strip()

    def stop(self) -> None:
        """End the peer: SIGTERM, then SIGKILL; reap it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- statistics and memory -----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The `q`-th percentile (0-100), nearest rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def ns_per(start: int, count: int) -> float:
    """Nanoseconds per item since `start` (a perf_counter_ns reading)."""
    return (time.perf_counter_ns() - start) / max(count, 1)
