"""Platform bindings: what the stdlib's `signal` and `os` lack, in one module.

Theory of operation
-------------------

Rule 1: this module binds, it does not decide. It exposes `sigqueue`, `signalfd` and a
decoder for what a signalfd yields, an audit of per-thread signal masks, and `EMPTY_SIGMASK`,
a call that empties the calling thread's mask, for a forked child to make before exec. It
owns no signal state: nothing here installs a handler, touches the wakeup fd or changes a mask
on its own. Which signals go to a signalfd, and when, is the precise source's business; when
a child's mask is emptied, the spawn helpers'.

Rule 2: sizes come from the ABI that owns them, never from guesses.

- ``sigset_t`` belongs to libc (128 bytes on glibc and musl, on every architecture; the
  kernel reads only its first ``_NSIG / 8`` bytes). We never lay out its bits ourselves:
  libc's ``sigemptyset``/``sigaddset`` fill a buffer of libc's size, so libc's own idea of
  which signals are valid (glibc rejects its internal 32 and 33) applies.
- ``union sigval`` (int or pointer) is passed to ``sigqueue`` by value. ctypes cannot pass a
  union by value, but on every Linux ABI (x86_64, aarch64, i386, ...) an int-or-pointer union
  travels exactly like an integer of pointer size: we fill the union in ctypes and pass its
  bytes reread as ``size_t``, so the endianness and the width are the platform's.
- ``struct signalfd_siginfo`` is a fixed 128-byte kernel ABI, identical on every
  architecture: it is decoded with `struct`, native byte order, no alignment.
- ``SFD_NONBLOCK`` and ``SFD_CLOEXEC`` are defined by the kernel as ``O_NONBLOCK`` and
  ``O_CLOEXEC``, whose values do differ between architectures: we take them from `os`.

Rule 3: where the stdlib has a twin, errors are the stdlib's (the converters live in
``aiosig._convert``). `sigqueue` converts its pid as `os.kill` does and its signal number as
`signal.pthread_kill` does (TypeError, OverflowError for what does not fit, and the kernel's
EINVAL for a signal number out of range); a sigset is converted the way
`signal.pthread_sigmask` converts one. The one new error is EAGAIN from
``sigqueue``, which the kernel returns when the receiving user's queue of real-time signals
(RLIMIT_SIGPENDING) is full: the stdlib message "Resource temporarily unavailable" tells
nobody what to do, so ours names the limit. Measured on Linux 6.x: root does not bypass it.

Rule 4: `EMPTY_SIGMASK` runs no Python code: it is meant for ``preexec_fn``, between fork
and exec, in a child where only the forking thread survived and every lock another thread
held at the fork stays held. It is a ``functools.partial`` (a C type) of libc's
``pthread_sigmask`` bound with ctypes (a C type too) and a sigset_t emptied once, at import:
a call converts three prebuilt arguments and makes one system call. It is bound through
``PyDLL``, which keeps the GIL across the call: the child does not even release and retake
it. Rejected: ``signal.pthread_sigmask``, which is Python code in ``Lib/signal.py`` (it turns
the old mask into enums) and whose C half runs any Python signal handler that became pending
once the mask changed. Where libc cannot be bound, that C half is the fallback. (CPython runs
the ``os.register_at_fork`` hooks in the child before any ``preexec_fn``: that much Python
runs whatever the ``preexec_fn`` is.)

Rule 5: running out of file descriptors gets a message that says what to do. EMFILE and
ENFILE from a descriptor aiosig needs to receive signals (the hub's pipe, a dup of the wakeup
fd's previous owner, a signalfd) become `no_descriptor_left`: the same errno, the limit named.

Rule 6: the signalfd hazard is visible, not assumed away. A signalfd only sees a signal that
every thread blocks; a thread that leaves it unblocked takes it instead. `thread_mask_audit`
reads ``/proc/self/task/*/status`` so the precise source can name such threads. Threads that
exit during the scan are skipped: the audit is a snapshot, and a dead thread blocks nothing.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import importlib
import operator
import os
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import starmap
from types import ModuleType

from aiosig import _convert
from aiosig._siginfo import SigInfo, as_signal

__all__ = (
    "C_SIGNAL",
    "EMPTY_SIGMASK",
    "HAVE_SIGNALFD",
    "HAVE_SIGQUEUE",
    "SFD_CLOEXEC",
    "SFD_NONBLOCK",
    "SIGNALFD_SIGINFO_SIZE",
    "SI_MESGQ",
    "SI_QUEUE",
    "SI_TIMER",
    "ThreadMask",
    "from_struct_siginfo",
    "no_descriptor_left",
    "parse_signalfd_siginfo",
    "read_signalfd",
    "set_default_action",
    "signalfd",
    "signals_held",
    "sigqueue",
    "start_with_signals_blocked",
    "thread_mask_audit",
    "threads_not_blocking",
)

_LINUX = sys.platform.startswith("linux")

# si_code values for which the kernel carries a sigval (include/uapi/asm-generic/siginfo.h).
SI_QUEUE = -1
SI_TIMER = -2
SI_MESGQ = -3
_SIGVAL_CODES = frozenset((SI_QUEUE, SI_TIMER, SI_MESGQ))

SFD_NONBLOCK: int = os.O_NONBLOCK
SFD_CLOEXEC: int = os.O_CLOEXEC

SIGNALFD_SIGINFO_SIZE = 128

# glibc and musl both define sigset_t as 1024 bits; c_ulong elements give it libc's alignment.
_SIGSET_BYTES = 128


class _SigsetT(ctypes.Array[ctypes.c_ulong]):
    _type_ = ctypes.c_ulong
    _length_ = _SIGSET_BYTES // ctypes.sizeof(ctypes.c_ulong)


class _Sigval(ctypes.Union):
    _fields_ = (("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p))


_libc = ctypes.CDLL(None, use_errno=True)
_sigqueue = getattr(_libc, "sigqueue", None) if _LINUX else None
_signalfd = getattr(_libc, "signalfd", None) if _LINUX else None
_sigemptyset = getattr(_libc, "sigemptyset", None)
_sigaddset = getattr(_libc, "sigaddset", None)

if _sigqueue is not None:
    _sigqueue.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t)
    _sigqueue.restype = ctypes.c_int
if _signalfd is not None and _sigemptyset is not None and _sigaddset is not None:
    _signalfd.argtypes = (ctypes.c_int, ctypes.POINTER(_SigsetT), ctypes.c_int)
    _signalfd.restype = ctypes.c_int
    _sigemptyset.argtypes = (ctypes.POINTER(_SigsetT),)
    _sigemptyset.restype = ctypes.c_int
    _sigaddset.argtypes = (ctypes.POINTER(_SigsetT), ctypes.c_int)
    _sigaddset.restype = ctypes.c_int
else:
    _signalfd = None

HAVE_SIGQUEUE: bool = _sigqueue is not None
HAVE_SIGNALFD: bool = _signalfd is not None


# The C half of the stdlib's signal module. Its Python wrappers turn every result into enums
# (``signal.getsignal`` costs 50x more, 2.5 µs, through the wrapper), and aiosig calls some of
# these on every wakeup: the reader's checks, forwarding to a pipe.
C_SIGNAL: ModuleType = importlib.import_module("_signal")


def _empty_sigmask() -> Callable[[], object]:
    """Bind `EMPTY_SIGMASK` (Rule 4)."""
    c_sigmask = getattr(ctypes.PyDLL(None), "pthread_sigmask", None)
    if c_sigmask is None or _sigemptyset is None:
        return functools.partial(C_SIGNAL.pthread_sigmask, int(signal.SIG_SETMASK), ())
    sigset_p = ctypes.POINTER(_SigsetT)
    c_sigmask.argtypes = (ctypes.c_int, sigset_p, sigset_p)
    c_sigmask.restype = ctypes.c_int
    empty = _SigsetT()
    _sigemptyset(empty)
    return functools.partial(c_sigmask, int(signal.SIG_SETMASK), empty, None)


EMPTY_SIGMASK: Callable[[], object] = _empty_sigmask()
"""Empty the calling thread's signal mask with one system call and no Python code (Rule 4)."""

_EAGAIN_MESSAGE = (
    "the kernel's queue of real-time signals for the receiving user is full "
    "(RLIMIT_SIGPENDING); raise the limit or let the receiver catch up"
)


_NO_DESCRIPTOR_LEFT = {
    errno.EMFILE: "the process reached its limit (RLIMIT_NOFILE); close some files or raise "
    "the limit (ulimit -n)",
    errno.ENFILE: "the system reached its limit (fs.file-max); close some files or raise it",
}


def no_descriptor_left(exc: OSError) -> OSError:
    """Return `exc` with what to do, if it means no file descriptor was left (Rule 5).

    The errno is kept (EMFILE or ENFILE); any other error is returned unchanged.
    """
    advice = _NO_DESCRIPTOR_LEFT.get(exc.errno or 0)
    if advice is None:
        return exc
    return OSError(exc.errno, f"no file descriptor left to receive signals with: {advice}")


def _linux_only(feature: str, instead: str) -> NotImplementedError:
    return NotImplementedError(f"{feature} is Linux-only; on {sys.platform}, {instead}.")


def _errno_error() -> OSError:
    # OSError(errno, strerror) picks the subclass itself (ESRCH -> ProcessLookupError...).
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


def sigqueue(pid: int, sig: int, value: int = 0) -> None:
    """Send signal `sig` to process `pid` with the integer payload `value` (``sival_int``).

    The receiver sees ``si_code == SI_QUEUE``, the sender's pid and uid, and `value` as
    ``si_value``. Real-time signals queue: each send is one delivery, in order.

    Args:
        pid: The receiving process; must fit a pid_t.
        sig: The signal number; 0 checks that `pid` exists and may be signalled.
        value: The payload; must fit a C int.

    Raises:
        TypeError: An argument is not an integer.
        OverflowError: An argument does not fit its C type.
        OSError: From the kernel, as `os.kill` raises it: ProcessLookupError (ESRCH),
            PermissionError (EPERM), EINVAL for an invalid signal number, and
            BlockingIOError (EAGAIN) when the receiving user's RLIMIT_SIGPENDING is reached.
        NotImplementedError: Not on Linux.
    """
    pid = _convert.parse_int(pid)  # as os.kill converts its pid_t
    sig = _convert.c_int(sig)  # as signal.pthread_kill converts its signalnum
    sigval = _Sigval(sival_int=_convert.c_int(value))
    if _sigqueue is None:
        raise _linux_only("sigqueue", "send with os.kill (no payload)")
    if _sigqueue(pid, sig, ctypes.c_size_t.from_buffer(sigval).value) == 0:
        return
    if ctypes.get_errno() == errno.EAGAIN:
        raise OSError(errno.EAGAIN, _EAGAIN_MESSAGE)
    raise _errno_error()


def _sigset(signals: frozenset[int]) -> _SigsetT:
    """Build a libc sigset_t of valid signal numbers (see `aiosig._convert.sigset`)."""
    assert _sigemptyset is not None and _sigaddset is not None
    sigset = _SigsetT()
    _sigemptyset(sigset)
    for signum in signals:
        if _sigaddset(sigset, signum) != 0:
            raise _errno_error()
    return sigset


def signalfd(fd: int, sigset: Iterable[int], flags: int = SFD_CLOEXEC) -> int:
    """Create a signalfd for `sigset`, or with `fd` not -1, change the set of an existing one.

    The signals must also be blocked (in every thread) for the signalfd to receive them.
    As with `os.eventfd`, the default flags make the descriptor non-inheritable.

    Args:
        fd: -1 for a new descriptor, or a signalfd to update.
        sigset: Signal numbers, converted as `signal.pthread_sigmask` converts them.
        flags: ``SFD_NONBLOCK`` and ``SFD_CLOEXEC``, or-ed; only used for a new descriptor.

    Returns:
        The descriptor: the new one, or `fd`.

    Raises:
        ValueError: A signal number is out of range.
        OSError: From the kernel (EBADF, EINVAL for bad flags or a non-signalfd `fd`), or
            `no_descriptor_left`.
        NotImplementedError: Not on Linux.
    """
    if _signalfd is None:
        raise _linux_only("signalfd", "signals arrive by the plain (wakeup fd) path")
    mask = _sigset(_convert.sigset(sigset, stacklevel=2))
    result: int = _signalfd(_convert.c_int(fd), mask, _convert.c_int(flags))
    if result < 0:
        raise no_descriptor_left(_errno_error())
    return result


class signals_held:
    """Hold every signal in the calling thread for the duration of a ``with`` block.

    Deliveries that arrive meanwhile stay pending and run as soon as the block ends, so no
    Python-level handler (a trampoline, ``default_int_handler``'s KeyboardInterrupt) runs
    between two steps of a state change. Costs ~2 µs a block (one system call each way, a
    prebuilt set: ``signal.pthread_sigmask`` builds sets of enums and costs 75 µs). Nesting
    is free: only the outermost block in a thread touches the mask. Without libc's
    ``pthread_sigmask`` it does nothing.
    """

    __slots__ = ("_old",)
    _depth = threading.local()

    def __init__(self) -> None:
        self._old: _SigsetT | None = None

    def __enter__(self) -> None:
        depth = getattr(self._depth, "n", 0)
        if depth == 0 and _pthread_sigmask is not None:
            old = _SigsetT()
            _pthread_sigmask(signal.SIG_BLOCK, ctypes.byref(_FULL_SET), ctypes.byref(old))
            try:
                # A signal whose C-level handler already ran has its Python handler still to
                # come, at the next check of the interpreter: make that check happen here,
                # before the block starts, rather than in the middle of it.
                _pending_handlers_run_here()
            except BaseException:
                _pthread_sigmask(signal.SIG_SETMASK, ctypes.byref(old), None)
                raise
            self._old = old
        self._depth.n = depth + 1

    def __exit__(self, *exc: object) -> None:
        self._depth.n -= 1
        old, self._old = self._old, None
        if old is not None and _pthread_sigmask is not None:
            _pthread_sigmask(signal.SIG_SETMASK, ctypes.byref(old), None)


def _pending_handlers_run_here() -> None:
    """Nothing: calling a Python function is where CPython runs pending signal handlers."""


_pthread_sigmask = getattr(_libc, "pthread_sigmask", None)
_sigfillset = getattr(_libc, "sigfillset", None)
_FULL_SET = _SigsetT()
if _pthread_sigmask is not None and _sigfillset is not None:
    _pthread_sigmask.argtypes = (ctypes.c_int, ctypes.POINTER(_SigsetT), ctypes.POINTER(_SigsetT))
    _pthread_sigmask.restype = ctypes.c_int
    _sigfillset.argtypes = (ctypes.POINTER(_SigsetT),)
    _sigfillset.restype = ctypes.c_int
    _sigfillset(ctypes.byref(_FULL_SET))  # libc leaves out its internal signals (32, 33)
else:
    _pthread_sigmask = None


def start_with_signals_blocked(thread: threading.Thread) -> None:
    """Start `thread` with every signal blocked in it.

    A new thread inherits its creator's mask. With every signal blocked, the kernel never
    picks the thread for a process-directed signal (which would take it from a precise
    receiver, or wake the wrong thread).
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _bind_c_signal() -> Callable[[int, int | None], object] | None:
    # libc's signal(), not sigaction(): no struct whose layout differs between architectures.
    c_signal = getattr(_libc, "signal", None)
    if c_signal is not None:
        c_signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        c_signal.restype = ctypes.c_void_p
    return c_signal


_c_signal = _bind_c_signal()


def set_default_action(signum: int) -> bool:
    """Set `signum`'s disposition to SIG_DFL at the C level, from any thread.

    For a thread that must end the process by a signal while the main thread is stuck
    (``signal.signal`` works in the main thread only). Python's own record of the handler is
    left as it was: the process is about to die. Returns False where libc has no
    ``signal`` (SIGKILL and SIGSTOP are refused by the kernel, and are the default anyway).
    """
    if _c_signal is None:
        return False
    _c_signal(signum, int(signal.SIG_DFL))
    return True


# struct signalfd_siginfo (include/uapi/linux/signalfd.h). Unpacked: u32 ssi_signo,
# s32 ssi_errno, s32 ssi_code, u32 ssi_pid, u32 ssi_uid, u32 ssi_band, s32 ssi_status,
# s32 ssi_int. Skipped ("x"): s32 ssi_fd and u32 ssi_tid before ssi_band, u32 ssi_overrun and
# u32 ssi_trapno before ssi_status, then ssi_ptr, ssi_utime, ssi_stime, ssi_addr (u64 each)
# and 48 bytes of later fields and padding. Skipping costs nothing and halves the tuple.
_SIGNALFD_SIGINFO = struct.Struct("=IiiII8xI8xii32x48x")
assert _SIGNALFD_SIGINFO.size == SIGNALFD_SIGINFO_SIZE

# as_signal once per number, not per delivery (measured: the enum lookup is 0.4 us).
_SIGNO = {signo: as_signal(signo) for signo in range(1, signal.NSIG)}
_SIGCHLD = signal.SIGCHLD
_BAND_SIGNALS = frozenset((signal.SIGIO, getattr(signal, "SIGPOLL", signal.SIGIO)))


def _decode(
    signo: int, err: int, code: int, pid: int, uid: int, band: int, status: int, value: int | None
) -> SigInfo:
    """Map siginfo fields (in signalfd_siginfo order) to a precise SigInfo."""
    return SigInfo(
        si_signo=_SIGNO.get(signo, signo),
        si_code=code,
        si_errno=err,
        si_pid=pid,
        si_uid=uid,
        si_status=status if signo == _SIGCHLD else None,
        si_band=band if signo in _BAND_SIGNALS else None,
        si_value=value if code in _SIGVAL_CODES else None,
        precise=True,
    )


def parse_signalfd_siginfo(buf: bytes) -> SigInfo:
    """Decode one ``struct signalfd_siginfo`` (`SIGNALFD_SIGINFO_SIZE` bytes) into a SigInfo.

    si_status is kept for SIGCHLD only, si_band for SIGPOLL/SIGIO only, and si_value
    (``ssi_int``) for SI_QUEUE, SI_TIMER and SI_MESGQ only; other fields are always kept.

    Raises:
        struct.error: `buf` is not exactly `SIGNALFD_SIGINFO_SIZE` bytes.
    """
    return _decode(*_SIGNALFD_SIGINFO.unpack(buf))


def read_signalfd(fd: int, max_count: int) -> list[SigInfo]:
    """Read up to `max_count` deliveries from a non-blocking signalfd in one ``read``.

    Returns:
        The deliveries in the kernel's order (real-time signals in the order sent), or an
        empty list when none is pending.

    Raises:
        ValueError: `max_count` is less than 1.
        OSError: From ``read``.
    """
    if max_count < 1:
        raise ValueError("max_count must be at least 1")
    try:
        data = os.read(fd, max_count * SIGNALFD_SIGINFO_SIZE)
    except BlockingIOError:
        return []
    return list(starmap(_decode, _SIGNALFD_SIGINFO.iter_unpack(data)))


def from_struct_siginfo(info: signal.struct_siginfo) -> SigInfo:
    """Convert what `signal.sigwaitinfo`/`signal.sigtimedwait` return into a SigInfo.

    The mapping is `parse_signalfd_siginfo`'s. The stdlib's struct has no payload field,
    so si_value is always None.
    """
    return _decode(
        info.si_signo,
        info.si_errno,
        info.si_code,
        info.si_pid,
        info.si_uid,
        info.si_band,
        info.si_status,
        None,
    )


@dataclass(frozen=True, slots=True)
class ThreadMask:
    """The signal mask of one thread of this process, as ``/proc`` reported it.

    Attributes:
        tid: The kernel thread id (`threading.get_native_id` of that thread).
        name: The kernel's name for the thread (``comm``: the program's name unless set).
        python_name: The `threading.Thread` name for that tid, or None for threads that
            Python did not start (C libraries) or that have not registered yet.
        blocked: The blocked signal numbers.
    """

    tid: int
    name: str
    python_name: str | None
    blocked: frozenset[int]


def _read_task(tid: int) -> tuple[str, frozenset[int]] | None:
    """Return (comm, blocked) for a thread of this process, or None if it has exited."""
    base = f"/proc/self/task/{tid}"
    try:
        with open(f"{base}/status", encoding="ascii") as status:
            sigblk = next(line for line in status if line.startswith("SigBlk:"))
        with open(f"{base}/comm", encoding="utf-8", errors="replace") as comm:
            name = comm.read().rstrip("\n")
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        # The thread exited between the listing and the reads (ENOENT or ESRCH).
        return None
    bits = int(sigblk.split(":", 1)[1], 16)
    return name, frozenset(n for n in range(1, bits.bit_length() + 1) if bits >> (n - 1) & 1)


def thread_mask_audit() -> list[ThreadMask]:
    """List every thread of this process with the signals it blocks, from ``/proc``.

    Threads that exit during the scan are left out.

    Raises:
        NotImplementedError: Not on Linux.
        OSError: ``/proc`` is not mounted.
    """
    if not _LINUX:
        raise _linux_only("thread_mask_audit", "no per-thread masks can be read")
    python_names = {t.native_id: t.name for t in threading.enumerate()}
    masks = []
    for tid in sorted(int(entry) for entry in os.listdir("/proc/self/task")):
        task = _read_task(tid)
        if task is not None:
            masks.append(ThreadMask(tid, task[0], python_names.get(tid), task[1]))
    return masks


def threads_not_blocking(signals: Iterable[int]) -> list[ThreadMask]:
    """Name the threads that leave at least one of `signals` unblocked.

    A signalfd (or `signal.sigwaitinfo`) only sees a process-directed signal that every
    thread blocks: any thread listed here can take such a signal first.

    Raises:
        TypeError: A signal is not an integer.
        NotImplementedError: Not on Linux.
    """
    wanted = frozenset(operator.index(s) for s in signals)
    return [mask for mask in thread_mask_audit() if not wanted <= mask.blocked]
