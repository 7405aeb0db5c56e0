"""Children with a clean signal mask, and blocking signals for precise delivery.

Theory of operation
-------------------
A blocked signal mask is inherited through fork and exec: a child of a process that blocks
SIGTERM (for precise delivery) would ignore ``kill -TERM`` until it unblocked it itself,
which almost no program does. The helpers here start children with an empty mask.

How: the child resets its mask between fork and exec, through ``preexec_fn`` set to
`EMPTY_SIGMASK`: libc's ``pthread_sigmask`` bound with ctypes to a prebuilt empty set, in a
``functools.partial``, so no Python bytecode of ours runs in the child, no lock is taken, and
the one system call is async-signal-safe (``_platform``, Rule 4). Rejected: unblocking in the
parent around the spawn (a signal arriving in that window would be delivered plainly, or kill
the process under SIG_DFL), and spawning from a helper thread with an empty mask (that thread
becomes a target for process-directed signals while it lives). uvloop needs none of this:
libuv empties the mask in its children itself.

Plain ``subprocess``, ``multiprocessing`` and ``asyncio``'s own subprocess functions do not
do this; use these helpers while you block signals.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from ._hub import check_signal
from ._platform import EMPTY_SIGMASK

__all__ = ("Blocked", "block", "create_subprocess_exec", "create_subprocess_shell", "popen")


def _clean_mask_preexec(user: Callable[[], object] | None) -> Callable[[], object]:
    if user is None:
        return EMPTY_SIGMASK

    def both() -> None:  # the user's own preexec_fn is Python anyway
        EMPTY_SIGMASK()
        user()

    return both


def popen(args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(args, **kwargs)``, with the child's signal mask emptied."""
    kwargs["preexec_fn"] = _clean_mask_preexec(kwargs.get("preexec_fn"))
    return subprocess.Popen(args, **kwargs)


async def create_subprocess_exec(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_exec``, with the child's signal mask emptied."""
    kwargs["preexec_fn"] = _clean_mask_preexec(kwargs.get("preexec_fn"))
    return await asyncio.create_subprocess_exec(*args, **kwargs)


async def create_subprocess_shell(cmd: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """``asyncio.create_subprocess_shell``, with the child's signal mask emptied."""
    kwargs["preexec_fn"] = _clean_mask_preexec(kwargs.get("preexec_fn"))
    return await asyncio.create_subprocess_shell(cmd, **kwargs)


class Blocked:
    """Signals blocked in the calling thread by `block`; ``restore()`` or ``with`` undoes it."""

    def __init__(self, signals: Iterable[int]) -> None:
        self.signals = frozenset(check_signal(s) for s in signals)
        self._previous: set[int] | None = signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)

    def restore(self) -> None:
        """Put back the mask from before `block`; idempotent."""
        if self._previous is not None:
            previous, self._previous = self._previous, None
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def __enter__(self) -> Blocked:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()


def block(*signals: int) -> Blocked:
    """Block `signals` in the calling thread, for precise delivery (sender pid, uid, value).

    Block before starting threads: new threads inherit the mask, and a thread that does not
    block a signal may receive it instead (it then arrives plainly; `threads_not_blocking`
    names such threads). Start children with `popen` / `create_subprocess_exec`.

    Returns:
        A `Blocked`: ``with aiosig.block(SIGTERM): ...`` or ``b = block(...); b.restore()``.
    """
    return Blocked(signals)
