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
identity lets the hub restore the number later only if it still names the same file. The
dup goes into a *spare* descriptor that `Chains.reserve` opened beforehand (``dup2`` onto a
descriptor we hold cannot fail for want of one): the hub reserves before it takes the fd,
so running out of descriptors (EMFILE) refuses the subscription while everything is still
as it was, instead of leaving the previous owner deaf. Each entry made reserves the next
spare at once, for an owner that takes the fd without asking (a theft the reader adopts).

Rule 3: forwarding never blocks and never raises: a full target drops the bytes (EAGAIN), a
dead one (EPIPE, EBADF, ECONNRESET) ends forwarding to it. Nor does it raise SIGPIPE, which
a write to a pipe or socket with no reader left sends to the writing thread, and which kills
a process that restored its default action (command-line tools do). The file type is read
once, when the entry is made:

- a socket (asyncio's and uvloop's self-pipes are socketpairs) gets ``send`` with
  ``MSG_NOSIGNAL | MSG_DONTWAIT``: no signal and no wait (measured: 0.15 us more than
  ``os.write``, on a forward that costs 2.9 us with the peer's read);
- a pipe has no such flag: the write runs with SIGPIPE blocked in the calling thread, and a
  SIGPIPE the write raised is taken back (``sigwait``) before the mask is restored, unless
  one was pending already (the user blocks SIGPIPE), which ours merged with. The two mask
  changes cost 1.2 us per forward (measured: 2.8 us instead of 1.5 us, with the read), only
  while a pipe is among the previous owners. Rejected: polling for POLLERR before the write
  (the reader can go between the poll and the write), and skipping the guard while SIGPIPE
  is ignored (a C library can change that behind Python's back);
- anything else (a regular file, a character device, an eventfd) never raises SIGPIPE.

Rule 4: the chain is a stack, and bytes go to every live entry. Without aiosig, a uvloop run
takes the fd and gives the previous one back when it ends; a user fd set before the run is
deaf meanwhile. With aiosig, each owner that took the fd is pushed, and every one still alive
hears every signal: nobody goes deaf, and an owner that closed its fd (uvloop at the end of
each run) drops out at the first write. The top entry is what the user sees as the wakeup fd
and what the hub restores.

What is forwarded is what the owners would have heard without aiosig: CPython writes a byte
only for a signal with a Python-level handler, so the bytes of a signal that aiosig holds in
front of SIG_DFL or SIG_IGN are not forwarded (``Dispositions.silent``). An owner that
handles a signal (asyncio's or uvloop's ``add_signal_handler``, a user's own handler) has
installed a Python handler for it, which the trampoline chains to, so it hears every byte it
would have. Measured: forwarding every byte to a uvloop run's self-pipe cost about 4 us per
delivery (the send, and uvloop waking up to read a byte it then ignores), 20 % of a round
trip.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import stat
import sys
import termios
from collections.abc import Callable

from ._platform import C_SIGNAL, no_descriptor_left

__all__ = ("Chain", "Chains", "SelfPipe")

# 1 MiB holds 1 Mi deliveries: enough for any burst of real-time signals the kernel will queue
# by default (RLIMIT_SIGPENDING is typically ~ 100k per user).
PIPE_SIZE = 1 << 20


# Forwarding to a socket (Rule 3); MSG_NOSIGNAL does not exist everywhere (macOS).
_NOSIGNAL: int = getattr(socket, "MSG_NOSIGNAL", 0)
_SEND_FLAGS = _NOSIGNAL | socket.MSG_DONTWAIT
_SIGPIPE = signal.SIGPIPE
_SIGPIPE_ONLY = (_SIGPIPE,)
# The C functions behind signal's Python wrappers, which turn every result into enums.
_sigmask: Callable[[int, tuple[int, ...] | set[int]], set[int]] = C_SIGNAL.pthread_sigmask
_sigpending: Callable[[], set[int]] = C_SIGNAL.sigpending
_sigwait: Callable[[tuple[int, ...]], int] = C_SIGNAL.sigwait


def _fstat(fd: int) -> os.stat_result | None:
    try:
        return os.fstat(fd)
    except OSError:
        return None


def _file_id(fd: int) -> tuple[int, int] | None:
    st = _fstat(fd)
    return None if st is None else (st.st_dev, st.st_ino)


def _write_without_sigpipe(fd: int, data: bytes) -> int:
    """``os.write``, with the SIGPIPE that a pipe with no reader raises taken back (Rule 3)."""
    previous = _sigmask(signal.SIG_BLOCK, _SIGPIPE_ONLY)
    try:
        # Unblocked until now, nothing could be pending for this thread (it would have been
        # delivered): a SIGPIPE pending after the write is then the write's own.
        theirs = _SIGPIPE in previous and _SIGPIPE in _sigpending()
        try:
            return os.write(fd, data)
        except BrokenPipeError:
            # Thread-directed, so sigwait takes it before any process-directed one.
            if not theirs and _SIGPIPE in _sigpending():
                _sigwait(_SIGPIPE_ONLY)
            raise
    finally:
        _sigmask(signal.SIG_SETMASK, previous)


class SelfPipe:
    """A non-blocking, close-on-exec pipe sized for bursts."""

    def __init__(self) -> None:
        """Raises: OSError: `no_descriptor_left`, or what else ``pipe`` raises."""
        try:
            self.r, self.w = (
                os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC) if hasattr(os, "pipe2") else _pipe()
            )
        except OSError as exc:
            raise no_descriptor_left(exc) from None
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
    r, w = os.pipe()  # non-inheritable already (PEP 446)
    os.set_blocking(r, False)
    os.set_blocking(w, False)
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

    def __init__(self, fd: int, warn_on_full_buffer: bool = True, spare: int = -1) -> None:
        """Chain to `fd`; its dup goes into `spare` (a descriptor of ours) if not -1.

        Never raises: a target that cannot be dup'ed (closed meanwhile, or no descriptor
        left without a spare) is dead from the start.
        """
        self.fd = fd
        self.warn_on_full_buffer = warn_on_full_buffer
        self.dropped = 0
        self._id: tuple[int, int] | None = None
        self._dup = -1
        self._sock: socket.socket | None = None
        self._guarded = False
        st = _fstat(fd) if fd >= 0 else None
        if st is None:
            return
        self._id = (st.st_dev, st.st_ino)
        with contextlib.suppress(OSError):
            self._dup = os.dup2(fd, spare, inheritable=False) if spare >= 0 else os.dup(fd)
        if self._dup >= 0:
            self._choose_write(st.st_mode)

    def _choose_write(self, mode: int) -> None:
        """Decide once how to write without SIGPIPE (Rule 3)."""
        if stat.S_ISSOCK(mode) and _NOSIGNAL:
            sock = None
            try:
                sock = socket.socket(fileno=self._dup)
                if sock.gettimeout() is not None:  # socket.setdefaulttimeout: send would poll
                    sock.settimeout(0.0)
            except OSError:
                if sock is not None:
                    sock.detach()  # the dup stays ours, for guarded writes
            else:
                self._sock = sock
                return
        self._guarded = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)

    @property
    def alive(self) -> bool:
        """False once a write found the target gone (or there never was one)."""
        return self._dup >= 0

    def holds(self, fd: int) -> bool:
        """True if `fd` is this entry's dup."""
        return fd >= 0 and fd == self._dup

    def forward(self, data: bytes) -> None:
        """Write the bytes to the previous owner; drop them if it is full or gone."""
        if self._dup < 0 or not data:
            return
        try:
            if self._sock is not None:
                sent = self._sock.send(data, _SEND_FLAGS)
            elif self._guarded:
                sent = _write_without_sigpipe(self._dup, data)
            else:
                sent = os.write(self._dup, data)
        except (BlockingIOError, InterruptedError):
            self.dropped += len(data)
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EBADF, errno.ECONNRESET, errno.ENOTCONN):
                self.close()
            else:
                self.dropped += len(data)
        else:
            self.dropped += len(data) - sent

    def still_there(self) -> bool:
        """True while forwarding works and ``fd`` still names the same file."""
        return self.fd < 0 or (self.alive and self.still_same_file())

    def still_same_file(self) -> bool:
        """True if ``fd`` still names the file it named when the chain was made."""
        return self.fd < 0 or (self._id is not None and _file_id(self.fd) == self._id)

    def close(self) -> None:
        """Stop forwarding and release the dup."""
        if self._dup >= 0:
            sock, self._sock = self._sock, None
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.close()
                else:
                    os.close(self._dup)
            self._dup = -1


class Chains:
    """The stack of previous owners (Rule 4)."""

    def __init__(self) -> None:
        self._stack: list[Chain] = []
        self._spare = -1  # a descriptor held for the next entry's dup (Rule 2)

    def reserve(self) -> None:
        """Hold a descriptor for the next entry's dup, so that making it cannot fail (Rule 2).

        Raises:
            OSError: `no_descriptor_left` (EMFILE, ENFILE); nothing changed then.
        """
        if self._spare < 0:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise no_descriptor_left(exc) from None

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
        self._stack.append(self._entry(fd, True))

    def replace_top(self, fd: int, warn_on_full_buffer: bool) -> int:
        """The user set the wakeup fd: `fd` replaces the top; return the top's old number."""
        old = self.top.fd
        if self._stack:
            self._stack.pop().close()
        self._stack.append(self._entry(fd, warn_on_full_buffer))
        return old

    def _entry(self, fd: int, warn_on_full_buffer: bool) -> Chain:
        spare, self._spare = self._spare, -1
        chain = Chain(fd, warn_on_full_buffer, spare)
        if not chain.holds(spare):  # nothing to dup (-1, or closed meanwhile): keep it
            self._spare = spare
        # The next owner may take the fd without asking (a theft): have its spare ready. If
        # none can be had now, the hub's next reserve, before it takes the fd, says so.
        with contextlib.suppress(OSError):
            self.reserve()
        return chain

    @property
    def listening(self) -> bool:
        """True if there is anyone to forward to (the read skips the copy otherwise)."""
        for chain in self._stack:  # noqa: SIM110 (a loop, not any(): this runs on every read)
            if chain.alive:
                return True
        return False

    def forward(self, data: bytes) -> None:
        """Write `data` to every live owner; forget the dead ones."""
        for chain in self._stack:
            chain.forward(data)
        if not all(chain.alive or chain.fd < 0 for chain in self._stack):
            self._stack = [c for c in self._stack if c.alive or c.fd < 0]

    def close(self) -> None:
        """Release every dup and the spare, and forget the stack."""
        for chain in self._stack:
            chain.close()
        self._stack = []
        if self._spare >= 0:
            with contextlib.suppress(OSError):
                os.close(self._spare)
            self._spare = -1


_NONE = Chain(-1)
