"""Scripts in a fresh interpreter, signalled for real (``aiosig.testing``).

Theory of operation
-------------------
What a signal does to a process for good (ending it, leaving a disposition or the wakeup fd
changed, an exit status decided after atexit) can only be tested in a process of its own.

Rule 1 (READY handshake): the script prints a line ``READY`` once its handlers are in place;
only then may anyone signal it, or the signal would meet the default disposition and kill it
too early. The parent reads the raw pipe one byte at a time up to that line, so that nothing
after it is taken from the buffered ``stdout`` that `Script.finish` reads. Every wait has a
deadline, and a script that misses one is killed and reported with its output.

Rule 2 (a clean mask): a blocked mask is inherited through fork and exec, so a script
started from a thread that blocks its signal would never get it. Scripts start with an empty
mask (set in the child between fork and exec), unless ``inherit_mask=True`` asks to test
that inheritance itself.

Rule 3 (senders are processes): ``os.kill`` from the test process is enough to signal a
script. To signal the test process itself as production would (process-directed, with a
sender pid that is not the receiver's), `send_from_another_process` runs ``kill`` in a
separate short-lived interpreter: ``os.kill(os.getpid(), ...)`` delivers to the calling
thread first.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple

__all__ = (
    "DEFAULT_TIMEOUT",
    "Script",
    "ScriptResult",
    "run_script",
    "send_from_another_process",
    "start_script",
)

DEFAULT_TIMEOUT = 10.0
READY = "READY"


class ScriptResult(NamedTuple):
    """How a script ended: ``returncode`` (``-signum`` if a signal killed it), its output."""

    returncode: int
    stdout: str
    stderr: str


class Script(subprocess.Popen[str]):
    """A running script started by `start_script` (a `subprocess.Popen` in text mode).

    Attributes:
        before_ready: What the script printed to stdout before its READY line.
    """

    before_ready: str = ""

    def send(self, signum: int, count: int = 1) -> None:
        """Send `signum` to the script `count` times (``os.kill``)."""
        for _ in range(count):
            self.send_signal(signum)

    def read_line(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait for the script's next line of stdout and return it, without its newline.

        Use it to wait until the script acted on one signal before sending the next: signals
        sent back to back may be handled in any order (Linux runs the handler of the last
        one first), and standard signals of one kind merge.

        Raises:
            AssertionError: No whole line came within `timeout` seconds, or stdout closed
                first (the script is killed then); the message carries its output.
        """
        line, outcome = _read_line(self, time.monotonic() + timeout)
        if outcome == "line":
            return line.decode(errors="replace").removesuffix("\n")
        self.kill()
        returncode, out, err = self.finish()
        what = f"printed no line within {timeout} s" if outcome == "timeout" else "closed stdout"
        raise AssertionError(
            f"the script {what} (returncode {returncode})\n"
            f"--- stdout\n{line.decode(errors='replace')}{out}\n--- stderr\n{err}"
        )

    def finish(self, timeout: float = DEFAULT_TIMEOUT) -> ScriptResult:
        """Wait for the script to exit; return its returncode, stdout after READY and stderr.

        Raises:
            AssertionError: It did not exit within `timeout` seconds (it is killed then); the
                message carries its output.
        """
        try:
            out, err = self.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.communicate(timeout=DEFAULT_TIMEOUT)
            raise AssertionError(
                f"the script did not exit within {timeout} s and was killed\n"
                f"--- stdout\n{self.before_ready}{out}\n--- stderr\n{err}"
            ) from None
        return ScriptResult(self.returncode, out, err)


def _unblock_all_signals() -> None:
    # Between fork and exec (preexec_fn): one system call, no lock taken (Rule 2).
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def start_script(
    script: str | os.PathLike[str],
    *args: str,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    inherit_mask: bool = False,
    prefix: Iterable[str] = (),
) -> Script:
    """Start a Python script in a fresh interpreter and wait until it prints ``READY``.

    Args:
        script: The program's source (a ``str``, run with ``python -c``), or the path of a
            file (a ``pathlib.Path`` or another ``os.PathLike``).
        *args: Its arguments (``sys.argv[1:]``).
        timeout: Seconds to wait for the line ``READY``.
        env: Its environment (default: this process's); ``PYTHONUNBUFFERED=1`` is added, so
            the script needs no flush after printing READY.
        inherit_mask: Keep the blocked signals of the calling thread (default: block none).
        prefix: A command that runs the interpreter, as in ``("unshare", "--pid", "--fork")``.

    Returns:
        The running script, with stdout and stderr piped.

    Raises:
        AssertionError: It exited before READY, or did not print it within `timeout` (it is
            killed then); the message carries its output.
    """
    program = ["-c", script] if isinstance(script, str) else [os.fspath(script)]
    child = Script(
        [*prefix, sys.executable, *program, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        preexec_fn=None if inherit_mask else _unblock_all_signals,
    )
    try:
        outcome = _read_until_ready(child, time.monotonic() + timeout)
    except BaseException:  # Ctrl-C, a test timeout: no script outlives the wait for it
        child.kill()
        child.communicate()
        raise
    if outcome != "ready":
        if outcome == "timeout":
            child.kill()
            what = f"did not print READY within {timeout} s"
        else:
            what = "closed its stdout (exited?) before printing READY"
        returncode, out, err = child.finish()
        raise AssertionError(
            f"the script {what} (returncode {returncode})\n"
            f"--- stdout\n{child.before_ready}{out}\n--- stderr\n{err}"
        )
    return child


def _read_until_ready(child: Script, deadline: float) -> str:
    """Read whole lines up to READY (Rule 1); return "ready", "eof" or "timeout"."""
    seen = bytearray()
    while True:
        line, outcome = _read_line(child, deadline)
        if outcome == "line" and line.strip() == READY.encode():
            outcome = "ready"
        else:
            seen += line
        if outcome != "line":
            child.before_ready = seen.decode(errors="replace")
            return outcome


def _read_line(child: Script, deadline: float) -> tuple[bytes, str]:
    """One line of stdout, read a byte at a time (Rule 1), and "line", "eof" or "timeout"."""
    assert child.stdout is not None
    fd = child.stdout.fileno()
    line = bytearray()
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], remaining)[0]:
            continue
        byte = os.read(fd, 1)
        if not byte:
            return bytes(line), "eof"
        line += byte
        if byte == b"\n":
            return bytes(line), "line"
    return bytes(line), "timeout"


def run_script(
    script: str | os.PathLike[str],
    *args: str,
    send: Iterable[int] = (),
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> ScriptResult:
    """Start a script, send it `send` (in order) once it is READY, and wait for it to exit.

    Args:
        script: As for `start_script`: source, or the path of a file.
        *args: Its arguments.
        send: The signals to send it, one ``os.kill`` each, right after READY. Sent back to
            back, they may be handled in any order: to wait for each, use `start_script`
            and `Script.read_line`.
        timeout: Seconds to wait for READY, and then again for the exit.
        env: As for `start_script`.

    Returns:
        Its returncode (``-signum`` if a signal killed it), stdout after READY and stderr.

    Raises:
        AssertionError: READY or the exit did not come in time (the script is killed), or
            it exited before READY.
    """
    child = start_script(script, *args, timeout=timeout, env=env)
    try:
        for signum in send:
            child.send(signum)
    except BaseException:
        child.kill()
        child.finish()
        raise
    return child.finish(timeout)


_SENDER = """\
import os, sys
pid, signum, count = map(int, sys.argv[1:])
for _ in range(count):
    os.kill(pid, signum)
"""


def send_from_another_process(
    pid: int, signum: int, count: int = 1, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Send `signum` to `pid` `count` times from a new process; return once it exited.

    Use it to signal the test process itself as production would (Rule 3): the deliveries
    are process-directed and carry the sender's pid (``si_pid``).

    Raises:
        AssertionError: The sender failed or did not finish within `timeout` seconds.
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
        raise AssertionError(f"the signal sender did not finish within {timeout} s") from None
    if result.returncode != 0:
        raise AssertionError(f"the signal sender failed ({result.returncode}): {result.stderr}")
