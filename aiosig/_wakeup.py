"""The hub's self-pipe and the chain to the wakeup fd's previous owner.

Theory of operation
-------------------
A process has one wakeup fd (``signal.set_wakeup_fd``): CPython's C-level handler writes the
signal number there, one byte per delivery. asyncio, uvloop and other libraries all want it.
aiosig takes it with a pipe of its own and *forwards* every byte it reads to whoever held
the fd before (the "chain"), so they keep hearing their signals.

Rule 1: the pipe is never closed while the process runs (only in a forked child). uvloop
restores, at the end of every run, the fd it found at the start; if that was ours and we had
closed it, CPython would write signal bytes into whatever file reuses the number.

Rule 2: the chain is a ``dup`` of the previous owner's fd, with the original number and its
(st_dev, st_ino) kept beside it. Forwarding to the dup cannot hit a reused number, and the
identity lets the hub restore the number later only if it still names the same file.

Rule 3: forwarding never blocks and never raises: a full target drops the bytes (EAGAIN), a
dead one (EPIPE, EBADF, ECONNRESET) ends forwarding to it.

Rule 4: the chain is a stack, and bytes go to every live entry. Without aiosig, a uvloop run
takes the fd and gives the previous one back when it ends; a user fd set before the run is
deaf meanwhile. With aiosig, each owner that took the fd is pushed, and every one still alive
hears every signal: nobody goes deaf, and an owner that closed its fd (uvloop at the end of
each run) drops out at the first write. The top entry is what the user sees as the wakeup fd
and what the hub restores.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import termios

__all__ = ("Chain", "Chains", "SelfPipe")

# 1 MiB holds 1 Mi deliveries: enough for any burst of real-time signals the kernel will queue
# by default (RLIMIT_SIGPENDING is typically ~ 100k per user).
PIPE_SIZE = 1 << 20


def _file_id(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class SelfPipe:
    """A non-blocking, close-on-exec pipe sized for bursts."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC) if hasattr(os, "pipe2") else _pipe()
        self.capacity = _grow(self.w)

    def drain(self, limit: int = 65536) -> bytes:
        """Read what is in the pipe now, `limit` bytes at most.

        A bounded read lets the loop run consumers between reads, so a burst is handed over
        as fast as it is taken instead of overflowing their buffers in one callback; the
        reader is level-triggered and comes back for the rest.
        """
        try:
            return os.read(self.r, limit)
        except (BlockingIOError, InterruptedError):
            return b""

    def backlog(self) -> int:
        """How many bytes are waiting in the pipe (0 where the OS cannot tell)."""
        try:
            buf = fcntl.ioctl(self.r, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int.from_bytes(buf, sys.byteorder)

    def wake(self) -> None:
        """Write a null byte: a wakeup that is not a signal (CPython never writes 0).

        Safe in a signal handler: one non-blocking write, and a full pipe already means a
        wakeup is pending.
        """
        with contextlib.suppress(OSError):
            os.write(self.w, b"\0")

    def close(self) -> None:
        """Close both ends (only ever in a forked child, see Rule 1)."""
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    for fd in (r, w):
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)
    return r, w


def _grow(fd: int) -> int:
    """Grow the pipe to PIPE_SIZE where the OS allows; return the capacity we got."""
    setsz = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsz is None or sys.platform != "linux":
        return 65536
    for size in (PIPE_SIZE, _max_pipe_size()):
        try:
            return fcntl.fcntl(fd, setsz, size)
        except OSError:
            continue
    return 65536


def _max_pipe_size() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65536


class Chain:
    """The fd that held the wakeup slot before aiosig, kept as a dup for forwarding.

    Attributes:
        fd: The number the previous owner used (-1 for none): what a user sees and what
            the hub restores.
        warn_on_full_buffer: The flag to restore it with (the stdlib cannot report the
            previous owner's flag, so the default applies unless a user set it through
            aiosig.core).
    """

    def __init__(self, fd: int, warn_on_full_buffer: bool = True) -> None:
        self.fd = fd
        self.warn_on_full_buffer = warn_on_full_buffer
        self._id = _file_id(fd) if fd >= 0 else None
        self._dup = -1
        if self._id is not None:
            with contextlib.suppress(OSError):
                self._dup = os.dup(fd)
                os.set_inheritable(self._dup, False)
        self.dropped = 0

    @property
    def alive(self) -> bool:
        """False once a write found the target gone (or there never was one)."""
        return self._dup >= 0

    def forward(self, data: bytes) -> None:
        """Write the bytes to the previous owner; drop them if it is full or gone."""
        if self._dup < 0 or not data:
            return
        try:
            os.write(self._dup, data)
        except (BlockingIOError, InterruptedError):
            self.dropped += len(data)
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EBADF, errno.ECONNRESET, errno.ENOTCONN):
                self.close()
            else:
                self.dropped += len(data)

    def still_there(self) -> bool:
        """True while forwarding works and ``fd`` still names the same file."""
        return self.fd < 0 or (self.alive and self.still_same_file())

    def still_same_file(self) -> bool:
        """True if ``fd`` still names the file it named when the chain was made."""
        return self.fd < 0 or (self._id is not None and _file_id(self.fd) == self._id)

    def close(self) -> None:
        """Stop forwarding and release the dup."""
        if self._dup >= 0:
            with contextlib.suppress(OSError):
                os.close(self._dup)
            self._dup = -1


class Chains:
    """The stack of previous owners (Rule 4)."""

    def __init__(self) -> None:
        self._stack: list[Chain] = []

    @property
    def top(self) -> Chain:
        """The most recent owner still there: what the user sees and what the hub restores.

        An owner whose fd was closed (uvloop at the end of a run) is dropped here, so the one
        below it is back on top, as it would be without aiosig.
        """
        while self._stack and not self._stack[-1].still_there():
            self._stack.pop().close()
        return self._stack[-1] if self._stack else _NONE

    def push(self, fd: int) -> None:
        """`fd` took the wakeup slot: forward to it too (it moves to the top if known)."""
        for i, chain in enumerate(self._stack):
            if chain.fd == fd and chain.still_same_file():
                self._stack.append(self._stack.pop(i))
                return
        self._stack.append(Chain(fd))

    def replace_top(self, fd: int, warn_on_full_buffer: bool) -> int:
        """The user set the wakeup fd: `fd` replaces the top; return the top's old number."""
        old = self.top.fd
        if self._stack:
            self._stack.pop().close()
        self._stack.append(Chain(fd, warn_on_full_buffer))
        return old

    def forward(self, data: bytes) -> None:
        """Write `data` to every live owner; forget the dead ones."""
        for chain in self._stack:
            chain.forward(data)
        if not all(chain.alive or chain.fd < 0 for chain in self._stack):
            self._stack = [c for c in self._stack if c.alive or c.fd < 0]

    def close(self) -> None:
        """Release every dup and forget the stack."""
        for chain in self._stack:
            chain.close()
        self._stack = []


_NONE = Chain(-1)
