"""Real processes for tests: a child with a READY handshake, and a separate signal sender.

Anything that changes process-wide signal state for good runs in a fresh interpreter. The
child prints a line ``READY`` once its handlers are in place; only then may the test signal
it, or the signal would hit the default disposition and kill it. Every wait has a deadline.

Children start with an empty signal mask whatever the test has blocked (a blocked mask is
inherited through fork and exec, and a child that blocks the test's signal never gets it);
pass ``inherit_mask=True`` to test that inheritance itself.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = (
    "DEFAULT_TIMEOUT",
    "Child",
    "finish",
    "kill_leftover_children",
    "run_child",
    "send",
    "send_from_child",
    "until",
)

DEFAULT_TIMEOUT = 10.0

# The repository root, so that a child imports this checkout's aiosig even when it is not
# installed.
ROOT = Path(__file__).resolve().parent.parent

# Children started since the last `kill_leftover_children`, so that none outlives its test.
_live: list[Child] = []


class Child(subprocess.Popen[str]):
    """A child started by `run_child`; ``before_ready`` is what it printed before READY."""

    before_ready: str = ""


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ if env is None else env)
    paths = [str(ROOT), *filter(None, merged.get("PYTHONPATH", "").split(os.pathsep))]
    merged["PYTHONPATH"] = os.pathsep.join(paths)
    merged["PYTHONUNBUFFERED"] = "1"
    return merged


def _unblock_all_signals() -> None:
    # Runs in the forked child before exec (preexec_fn): one system call, no locks taken.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def run_child(
    code: str,
    *args: str,
    timeout: float = DEFAULT_TIMEOUT,
    env: dict[str, str] | None = None,
    inherit_mask: bool = False,
    prefix: tuple[str, ...] = (),
) -> Child:
    """Start ``sys.executable -c code *args`` and wait until it prints a line ``READY``.

    Args:
        code: The child's program. It must print ``READY`` (a line of its own) when it is
            ready to be signalled; stdout is unbuffered, so no flush is needed.
        *args: Extra arguments, seen by the child as ``sys.argv[1:]``.
        timeout: Seconds to wait for READY.
        env: The child's environment (default: ours); the checkout root is put on PYTHONPATH.
        inherit_mask: Keep the caller's blocked signals in the child (default: unblock all).
        prefix: A command that runs the interpreter (``("unshare", "--pid", ...)``).

    Returns:
        The running child, a `subprocess.Popen` in text mode with stdout and stderr piped.

    Raises:
        AssertionError: The child exited before READY, or did not print it in time (it is
            killed then); the message carries its output.
    """
    child = Child(
        [*prefix, sys.executable, "-c", code, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(env),
        preexec_fn=None if inherit_mask else _unblock_all_signals,
    )
    _live.append(child)
    outcome = _read_until_ready(child, time.monotonic() + timeout)
    if outcome != "ready":
        if outcome == "timeout":
            child.kill()
            what = f"did not print READY within {timeout} s"
        else:
            what = "closed its stdout (exited?) before printing READY"
        returncode, out, err = finish(child)
        raise AssertionError(
            f"child {what} (returncode {returncode})\n"
            f"--- stdout\n{child.before_ready}{out}\n--- stderr\n{err}"
        )
    return child


def _read_until_ready(child: Child, deadline: float) -> str:
    """Read whole lines from the child's stdout up to READY; return "ready", "eof" or "timeout".

    What came before is left in ``child.before_ready``. Reads the raw fd one byte at a time so
    that nothing after READY is taken from the buffered ``child.stdout`` that `finish` reads.
    """
    assert child.stdout is not None
    fd = child.stdout.fileno()
    seen = bytearray()
    line_start = 0
    outcome = "timeout"
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], remaining)[0]:
            continue
        byte = os.read(fd, 1)
        if not byte:
            outcome = "eof"
            break
        seen += byte
        if byte == b"\n":
            if seen[line_start:].strip() == b"READY":
                del seen[line_start:]
                outcome = "ready"
                break
            line_start = len(seen)
    child.before_ready = seen.decode(errors="replace")
    return outcome


def finish(proc: subprocess.Popen[str], timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str, str]:
    """Wait for a child of `run_child` to exit; return (returncode, rest of stdout, stderr).

    The returncode is negative (``-signum``) when a signal killed the child. "Rest of stdout"
    is what the child printed after READY (for a child that never got there, everything).

    Raises:
        AssertionError: The child did not exit within `timeout` (it is killed then).
    """
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=DEFAULT_TIMEOUT)
        before = getattr(proc, "before_ready", "")
        raise AssertionError(
            f"child did not exit within {timeout} s; killed\n"
            f"--- stdout\n{before}{out}\n--- stderr\n{err}"
        ) from None
    return proc.returncode, out, err


_SENDER = """\
import os, sys
pid, signum, count = map(int, sys.argv[1:])
for _ in range(count):
    os.kill(pid, signum)
"""


def send_from_child(
    pid: int, signum: int, count: int = 1, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Send `signum` to `pid` `count` times from a separate process; return once it exited.

    The deliveries then carry the sender's pid (``si_pid``) and are process-directed, as in
    production, unlike ``os.kill(os.getpid(), ...)`` which the kernel delivers to the
    calling thread first.

    Raises:
        AssertionError: The sender failed or did not finish within `timeout`.
    """
    try:
        result = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _SENDER, str(pid), str(int(signum)), str(count)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"signal sender did not finish within {timeout} s") from None
    if result.returncode != 0:
        raise AssertionError(f"signal sender failed ({result.returncode}): {result.stderr}")


def kill_leftover_children() -> list[int]:
    """Kill and reap every `run_child` child still running; return their pids."""
    leftovers = [child for child in _live if child.poll() is None]
    _live.clear()
    for child in leftovers:
        child.kill()
    for child in leftovers:
        child.communicate(timeout=DEFAULT_TIMEOUT)
    return [child.pid for child in leftovers]


async def send(signum: int, count: int = 1) -> None:
    """`send_from_child` to this process, without blocking the running loop."""
    await asyncio.to_thread(send_from_child, os.getpid(), signum, count)


async def until(predicate: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT) -> None:
    """Poll `predicate` on the loop until it is true; TimeoutError after `timeout`."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
