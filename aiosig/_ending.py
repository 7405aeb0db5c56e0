"""The exit status of a stopped service: decided once by ``aiosig.run``, applied last.

Theory of operation
-------------------
Rule 1 (the parent must see what happened). A service stopped by SIGTERM should look, to the
process that started it, like a process SIGTERM ended: ``WIFSIGNALED`` with ``WTERMSIG`` 15,
the way a program without handlers ends and the way a shell reports it (``$?`` = 143). Exiting
0 tells an orchestrator the job completed; exiting 1 tells it the job failed. So after a
signal-triggered shutdown, `status_after_signal` decides death by that signal.

Rule 2 (but ``finally`` blocks and atexit handlers first). Re-raising the signal from inside
the loop (uvicorn's way) ends the process before any ``finally`` block or atexit handler
runs. ``aiosig.run`` raises ``SystemExit(128 + n)`` instead, so the stack unwinds and the
interpreter starts its exit; the decision is recorded here (`decide`), and `_apply`, an
atexit handler, ends the process with the signal's default action once the other atexit
handlers ran.

Rule 3 (registered when aiosig is imported, which DESIGN.md accepts: it touches no signal
state). atexit handlers run last-registered-first, so `_apply`, whose place `_process_hooks` takes
at the first ``import aiosig`` (this module itself loads later, on first use), runs after
every handler the application registers later. Handlers registered before that import would
be cut off by the signal; the standard library's usual one, ``logging.shutdown`` (registered
when ``logging`` is first imported, which ``asyncio`` does), is run here first, so log
records are flushed and files closed. No later hook exists in Python: after atexit the
interpreter is being torn down.

Rule 4 (where re-raising cannot work). The init process of a pid namespace (PID 1 in a
container) is immune to default-action signals, even its own: there the status is the code
128 + n, which ``SystemExit`` already gives, and nothing is recorded. The same holds for an
application that asked for a code (``exit_status="code"``) or for 0 (``exit_status="zero"``).

Rule 5 (fork): a child forgets its parent's decision; `_apply` checks the pid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Literal

from . import _process_hooks
from ._deadline import ExitStatus, end_process

__all__ = ("ExitStatusMode", "decide", "forget", "status_after_signal")

ExitStatusMode = Literal["signal", "code", "zero"]
EXIT_STATUS_MODES: tuple[ExitStatusMode, ...] = ("signal", "code", "zero")

_decided: tuple[int, ExitStatus] | None = None  # (the deciding process, how it ends)


def status_after_signal(signum: int, mode: ExitStatusMode) -> ExitStatus:
    """How the process ends after a shutdown started by `signum` (Rules 1 and 4)."""
    if mode == "zero":
        return ExitStatus(code=0)
    if mode == "code" or os.getpid() == 1:
        return ExitStatus(code=128 + signum)
    return ExitStatus(signum=signum)


def decide(status: ExitStatus) -> None:
    """Record that the process, once its atexit handlers ran, ends with `status` (Rule 2).

    An exit code needs no recording: ``SystemExit`` carries it.
    """
    global _decided
    if status.signum is not None:
        _decided = (os.getpid(), status)


def forget() -> None:
    """Drop a decision (a later ``aiosig.run`` in the same process decides afresh)."""
    global _decided
    _decided = None


def _apply() -> None:
    decided = _decided
    if decided is None or decided[0] != os.getpid():
        return  # Rule 5: decided by the parent of this fork
    logging.shutdown()  # Rule 3: registered before us, so it would not run after us
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to do
                stream.flush()
    end_process(decided[1])


_process_hooks.at_exit("exit status", _apply)
