"""Real processes for tests: a child with a READY handshake, and a separate signal sender.

The mechanism is the library's (``aiosig.testing``: `start_script`, `Script.finish`,
`send_from_another_process`); these are the names the tests were written against, plus what
only this checkout needs: children import this checkout's aiosig, and none outlives its test.

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
import subprocess
from collections.abc import Callable
from pathlib import Path

from aiosig.testing import Script, send_from_another_process, start_script

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

Child = Script


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ if env is None else env)
    paths = [str(ROOT), *filter(None, merged.get("PYTHONPATH", "").split(os.pathsep))]
    merged["PYTHONPATH"] = os.pathsep.join(paths)
    return merged


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
    child = start_script(
        code,
        *args,
        timeout=timeout,
        env=_child_env(env),
        inherit_mask=inherit_mask,
        prefix=prefix,
    )
    _live.append(child)
    return child


def finish(
    proc: Child | subprocess.Popen[str], timeout: float = DEFAULT_TIMEOUT
) -> tuple[int, str, str]:
    """Wait for a child to exit; return (returncode, rest of stdout, stderr).

    A child of `run_child` returns what it printed after READY; any other ``Popen`` in text
    mode with piped output, everything. The returncode is negative (``-signum``) when a
    signal killed the child.

    Raises:
        AssertionError: The child did not exit within `timeout` (it is killed then).
    """
    if isinstance(proc, Script):
        return tuple(proc.finish(timeout))  # type: ignore[return-value]
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=DEFAULT_TIMEOUT)
        what = f"child did not exit within {timeout} s; killed"
        raise AssertionError(f"{what}\n{out}\n{err}") from None
    return proc.returncode, out, err


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
    send_from_another_process(pid, signum, count, timeout)


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
