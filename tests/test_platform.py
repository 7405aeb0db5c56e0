"""Tests for aiosig._platform: sigqueue, signalfd and the thread mask audit, with real signals.

Every test that sends a signal to be read from a signalfd runs the receiver in a fresh
interpreter (`run_fresh`): a process-directed signal goes to any thread that leaves it
unblocked, and a real-time signal taken by a stray thread would kill the test run (its default
action is to terminate). pytest-timeout's "thread" method runs a timer thread during every
test; conftest.py starts it with every signal blocked, but without that hook it blocks nothing
(thread_mask_audit names it), and other plugins may start threads of their own. The child has
no other thread, blocks what it reads, and sends its results back pickled on stdout.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import aiosig
from aiosig import _platform
from aiosig._platform import (
    HAVE_SIGNALFD,
    HAVE_SIGQUEUE,
    SFD_CLOEXEC,
    SFD_NONBLOCK,
    SI_MESGQ,
    SI_QUEUE,
    SI_TIMER,
    SIGNALFD_SIGINFO_SIZE,
    parse_signalfd_siginfo,
    read_signalfd,
    signalfd,
    sigqueue,
    thread_mask_audit,
    threads_not_blocking,
)
from aiosig._siginfo import SigInfo

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux bindings")

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0

# Prepended to every child: blocks `signals`, opens a non-blocking signalfd for them, and
# offers `collect(n)` (read n deliveries, each wait bounded) and `emit(obj)` (the result).
PRELUDE = """
import os, pickle, resource, select, signal, subprocess, sys
from aiosig._platform import *

def open_signalfd(*signals):
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    return signalfd(-1, signals, SFD_NONBLOCK | SFD_CLOEXEC)

def collect(fd, n, batch=1024):
    got = []
    while len(got) < n:
        if not select.select([fd], [], [], 10.0)[0]:
            raise TimeoutError(f"{len(got)} of {n} deliveries after 10 s")
        got += read_signalfd(fd, min(batch, n - len(got)))
    return got

def emit(obj):
    sys.stdout.buffer.write(pickle.dumps(obj))
"""


def run_fresh(code: str, timeout: float = TIMEOUT) -> Any:
    """Run PRELUDE + `code` in a fresh interpreter and return what it emitted."""
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return pickle.loads(proc.stdout)


def raised(fn: Any, *args: Any) -> tuple[type[BaseException], str]:
    """Return the type and message of what fn(*args) raises."""
    with pytest.raises(BaseException) as info:
        fn(*args)
    return type(info.value), str(info.value)


# ---- feature flags and constants ----------------------------------------------------------


def test_linux_has_both_features_and_kernel_flag_values() -> None:
    assert HAVE_SIGQUEUE and HAVE_SIGNALFD
    assert SFD_NONBLOCK == os.O_NONBLOCK
    assert SFD_CLOEXEC == os.O_CLOEXEC
    assert SIGNALFD_SIGINFO_SIZE == 128


# ---- sigqueue -----------------------------------------------------------------------------


def test_sigqueue_to_self_is_read_from_signalfd_with_sender_uid_code_and_value() -> None:
    infos, pid, uid = run_fresh("""
        fd = open_signalfd(signal.SIGRTMIN)
        sigqueue(os.getpid(), signal.SIGRTMIN, 42)
        emit((collect(fd, 1), os.getpid(), os.getuid()))
    """)
    assert infos == [
        SigInfo(
            si_signo=signal.SIGRTMIN,
            si_code=SI_QUEUE,
            si_errno=0,
            si_pid=pid,
            si_uid=uid,
            si_value=42,
            precise=True,
        )
    ]
    # Python 3.11's Signals has SIGRTMIN and SIGRTMAX as members (not SIGRTMIN+1...).
    assert infos[0].si_signo is signal.Signals.SIGRTMIN


def test_sigqueue_value_keeps_its_sign_and_the_c_int_extremes() -> None:
    values = [-1, -(2**31), 2**31 - 1, 0]
    infos = run_fresh(f"""
        fd = open_signalfd(signal.SIGRTMIN)
        for value in {values!r}:
            sigqueue(os.getpid(), signal.SIGRTMIN, value)
        emit(collect(fd, {len(values)}))
    """)
    assert [info.si_value for info in infos] == values


def test_sigqueue_from_another_process_carries_that_process_pid() -> None:
    infos, sender_pid = run_fresh("""
        fd = open_signalfd(signal.SIGRTMIN)
        sender = subprocess.run(
            [sys.executable, "-c",
             "import os, signal; from aiosig._platform import sigqueue; "
             "sigqueue(os.getppid(), signal.SIGRTMIN, 7); print(os.getpid())"],
            capture_output=True, check=True, timeout=20, text=True)
        emit((collect(fd, 1), int(sender.stdout)))
    """)
    (info,) = infos
    assert info.si_pid == sender_pid
    assert info.si_code == SI_QUEUE
    assert info.si_value == 7


def test_ten_thousand_queued_signals_arrive_in_order_exactly_once() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_SIGPENDING)
    # Sent in batches that are read back before the next, so at most `batch` are pending:
    # RLIMIT_SIGPENDING counts every pending signal of the user, not only ours.
    batch = max(1, min(1000, soft // 4))
    infos, seconds = run_fresh(f"""
        import time
        fd = open_signalfd(signal.SIGRTMIN)
        got, start = [], time.perf_counter()
        for first in range(0, 10_000, {batch}):
            for value in range(first, min(first + {batch}, 10_000)):
                sigqueue(os.getpid(), signal.SIGRTMIN, value)
            got += collect(fd, min({batch}, 10_000 - first))
        seconds = time.perf_counter() - start
        got += read_signalfd(fd, 16)  # anything extra would be a duplicate
        emit((got, seconds))
    """)
    assert [info.si_value for info in infos] == list(range(10_000))
    assert {info.si_signo for info in infos} == {signal.SIGRTMIN}
    print(f"10,000 sigqueue + signalfd reads in {seconds * 1000:.1f} ms")


def test_sigqueue_names_rlimit_sigpending_when_the_queue_is_full() -> None:
    # Measured: root does not bypass RLIMIT_SIGPENDING for real-time signals (the kernel
    # only overrides it for kernel-generated standard signals), so no setuid is needed.
    sent, error = run_fresh("""
        import resource
        resource.setrlimit(resource.RLIMIT_SIGPENDING, (8, 8))
        fd = open_signalfd(signal.SIGRTMIN)
        sent = 0
        try:
            while sent < 1000:
                sigqueue(os.getpid(), signal.SIGRTMIN, sent)
                sent += 1
            emit((sent, None))
        except OSError as exc:
            emit((sent, exc))
    """)
    assert isinstance(error, BlockingIOError)
    assert error.errno == errno.EAGAIN
    assert "RLIMIT_SIGPENDING" in str(error)
    assert sent <= 8


@pytest.mark.parametrize("sig", [0xDEAD, -1, 65, 2**31, 2**40, -(2**40), None, "x", 1.5])
def test_sigqueue_rejects_a_bad_signal_as_pthread_kill_does(sig: Any) -> None:
    # Neither call sends anything: both fail in argument conversion or with EINVAL.
    expected = raised(signal.pthread_kill, threading.get_ident(), sig)
    assert raised(sigqueue, os.getpid(), sig) == expected


@pytest.mark.parametrize("pid", [2**31, -(2**31) - 1, None, "x", 1.5])
def test_sigqueue_rejects_a_bad_pid_as_os_kill_does(pid: Any) -> None:
    assert raised(sigqueue, pid, 0) == raised(os.kill, pid, 0)


@pytest.mark.parametrize(
    ("value", "error"), [(2**31, OverflowError), (-(2**31) - 1, OverflowError), ("x", TypeError)]
)
def test_sigqueue_rejects_a_value_that_does_not_fit_a_c_int(value: Any, error: type) -> None:
    with pytest.raises(error):
        sigqueue(os.getpid(), 0, value)


def test_sigqueue_signal_zero_checks_existence_like_os_kill() -> None:
    sigqueue(os.getpid(), 0)  # exists: nothing is sent, nothing is raised
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait(timeout=TIMEOUT)
    assert raised(sigqueue, child.pid, 0) == raised(os.kill, child.pid, 0)
    assert raised(sigqueue, child.pid, 0)[0] is ProcessLookupError


def test_sigqueue_raises_permission_error_as_os_kill_does() -> None:
    results = run_fresh("""
        os.setuid(65534)  # nobody may not signal init
        def err(fn):
            try:
                fn(1, 0)
            except OSError as exc:
                return type(exc), str(exc)
        emit((err(sigqueue), err(os.kill)))
    """)
    ours, stdlib = results
    assert ours == stdlib
    assert ours[0] is PermissionError


# ---- signalfd -----------------------------------------------------------------------------


@contextmanager
def closing_fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def test_signalfd_is_non_inheritable_by_default_and_empty_reads_return_nothing() -> None:
    # Nothing is blocked or sent: the descriptor just has nothing to read.
    with closing_fd(signalfd(-1, {signal.SIGRTMIN}, SFD_NONBLOCK | SFD_CLOEXEC)) as fd:
        assert not os.get_inheritable(fd)
        assert read_signalfd(fd, 8) == []
        assert signalfd(fd, {signal.SIGUSR1, signal.SIGRTMIN}) == fd
        with pytest.raises(ValueError, match="max_count"):
            read_signalfd(fd, 0)
    with closing_fd(signalfd(-1, [signal.SIGRTMIN])) as fd:
        assert not os.get_inheritable(fd)


@pytest.mark.parametrize("bad", [{0}, {65}, {2**40}, {"x"}, 5])
def test_signalfd_rejects_a_bad_sigset_as_pthread_sigmask_does(bad: Any) -> None:
    # pthread_sigmask validates the whole set before it touches the mask.
    expected = raised(signal.pthread_sigmask, signal.SIG_BLOCK, bad)
    assert raised(signalfd, -1, bad, SFD_CLOEXEC) == expected


def test_signalfd_warns_on_glibc_internal_signal_as_pthread_sigmask_does() -> None:
    internal = 32  # glibc's SIGCANCEL: valid for the kernel, refused by sigaddset
    with pytest.warns(RuntimeWarning, match="invalid signal number 32"):
        fd = signalfd(-1, {internal})
    os.close(fd)


def test_signalfd_on_a_descriptor_that_is_not_a_signalfd_raises_einval() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as info:
            signalfd(r, {signal.SIGUSR1})
        assert info.value.errno == errno.EINVAL
    finally:
        os.close(r)
        os.close(w)


def test_signalfd_with_no_descriptor_left_keeps_emfile_and_names_the_limit() -> None:
    err, message = run_fresh("""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = {int(n) for n in os.listdir("/proc/self/fd")}
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(used), hard))
        try:
            signalfd(-1, ())
        except OSError as exc:
            emit((exc.errno, str(exc)))
    """)
    assert err == errno.EMFILE
    assert "RLIMIT_NOFILE" in message


def test_signalfd_reports_sigchld_exit_status() -> None:
    infos, pid = run_fresh("""
        fd = open_signalfd(signal.SIGCHLD)
        child = subprocess.Popen(["sh", "-c", "exit 3"])
        child.wait(timeout=20)
        emit((collect(fd, 1), child.pid))
    """)
    (info,) = infos
    assert info.si_signo is signal.SIGCHLD
    assert info.si_code == os.CLD_EXITED
    assert (info.si_pid, info.si_status, info.si_value, info.si_band) == (pid, 3, None, None)


def test_signalfd_reports_sigio_band() -> None:
    infos = run_fresh(f"""
        import fcntl
        fd = open_signalfd(signal.SIGIO)
        r, w = os.pipe()
        fcntl.fcntl(r, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(r, {fcntl.F_SETSIG}, signal.SIGIO)  # F_SETSIG: full siginfo with the band
        fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
        os.write(w, b"x")
        emit(collect(fd, 1))
    """)
    (info,) = infos
    assert info.si_signo is signal.SIGIO
    assert info.si_band is not None and info.si_band & 0x1  # POLLIN
    assert info.si_status is None and info.si_value is None


def test_from_struct_siginfo_maps_sigtimedwait_result_without_value() -> None:
    info, pid = run_fresh("""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})
        sigqueue(os.getpid(), signal.SIGRTMIN, 5)
        emit((from_struct_siginfo(signal.sigtimedwait({signal.SIGRTMIN}, 10.0)), os.getpid()))
    """)
    assert info == SigInfo(
        si_signo=signal.SIGRTMIN, si_code=SI_QUEUE, si_errno=0, si_pid=pid, si_uid=os.getuid(),
        precise=True,
    )  # fmt: skip


# ---- decoding -----------------------------------------------------------------------------

_LAYOUT = struct.Struct("=IiiIIiIIIIiiQQQQ48x")  # the full kernel layout, written out


def encode(signo: int, code: int, *, pid: int = 10, status: int = 3, band: int = 65) -> bytes:
    """A struct signalfd_siginfo with every mapped field set to something recognisable."""
    return _LAYOUT.pack(signo, 0, code, pid, 1000, -1, 0, band, 0, 0, status, 99, 99, 0, 0, 0)


@pytest.mark.parametrize(
    ("signo", "code", "status", "band", "value"),
    [
        (signal.SIGCHLD, os.CLD_KILLED, 3, None, None),
        (signal.SIGIO, 1, None, 65, None),
        (signal.SIGUSR1, 0, None, None, None),
        (signal.SIGUSR1, SI_QUEUE, None, None, 99),
        (signal.SIGALRM, SI_TIMER, None, None, 99),
        (signal.SIGRTMIN + 1, SI_MESGQ, None, None, 99),
    ],
)
def test_parse_keeps_status_band_and_value_only_where_the_kernel_defines_them(
    signo: int, code: int, status: int | None, band: int | None, value: int | None
) -> None:
    info = parse_signalfd_siginfo(encode(signo, code))
    assert (info.si_status, info.si_band, info.si_value) == (status, band, value)
    assert (info.si_signo, info.si_code, info.si_pid, info.si_uid) == (signo, code, 10, 1000)
    assert info.precise


def test_parse_gives_plain_int_for_unnamed_realtime_signals() -> None:
    signo = parse_signalfd_siginfo(encode(signal.SIGRTMIN + 1, SI_QUEUE)).si_signo
    assert type(signo) is int and signo == signal.SIGRTMIN + 1


def test_parse_refuses_a_short_buffer() -> None:
    with pytest.raises(struct.error):
        parse_signalfd_siginfo(bytes(SIGNALFD_SIGINFO_SIZE - 1))


# ---- thread mask audit --------------------------------------------------------------------


@contextmanager
def blocked_in_this_thread(*signals: int) -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def test_thread_mask_audit_names_the_thread_that_unblocks_and_forgets_it_once_ended() -> None:
    stop = threading.Event()
    unblocked = threading.Event()

    def unblocker() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})
        unblocked.set()
        stop.wait(TIMEOUT)

    with blocked_in_this_thread(signal.SIGUSR2):
        inheritor = threading.Thread(target=stop.wait, args=(TIMEOUT,), name="inheritor")
        stray = threading.Thread(target=unblocker, name="stray")
        try:
            inheritor.start()
            stray.start()
            assert unblocked.wait(TIMEOUT)
            audit = {mask.tid: mask for mask in thread_mask_audit()}
            offenders = {mask.tid for mask in threads_not_blocking([signal.SIGUSR2])}
        finally:
            stop.set()
            inheritor.join(TIMEOUT)
            stray.join(TIMEOUT)
        # join() returns when Python is done with the thread; the OS thread runs its last C
        # steps a moment longer and stays listed in /proc until then.
        deadline = time.monotonic() + TIMEOUT
        while (after := {mask.tid for mask in thread_mask_audit()}) and time.monotonic() < deadline:
            if stray.native_id not in after:
                break
            time.sleep(0.005)

    assert stray.native_id is not None and inheritor.native_id is not None
    assert stray.native_id in offenders
    assert inheritor.native_id not in offenders
    assert threading.get_native_id() not in offenders
    assert signal.SIGUSR2 in audit[threading.get_native_id()].blocked
    assert signal.SIGUSR2 in audit[inheritor.native_id].blocked
    assert audit[stray.native_id].python_name == "stray"
    assert audit[threading.get_native_id()].tid == os.getpid()  # the main thread's tid is the pid
    assert stray.native_id not in after


def test_thread_mask_audit_survives_threads_exiting_during_the_scan() -> None:
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            workers = [threading.Thread(target=lambda: None) for _ in range(8)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(TIMEOUT)

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        for _ in range(200):
            assert threading.get_native_id() in {mask.tid for mask in thread_mask_audit()}
    finally:
        stop.set()
        churner.join(TIMEOUT)
    assert _platform._read_task(2**22 + 1) is None  # above pid_max's ceiling: never a tid


def test_thread_mask_audit_reads_the_mask_bits_as_signal_numbers() -> None:
    wanted = {signal.SIGUSR1, signal.SIGRTMIN + 2, signal.SIGRTMAX}
    with blocked_in_this_thread(*wanted):
        (me,) = [m for m in thread_mask_audit() if m.tid == threading.get_native_id()]
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert me.blocked == {int(s) for s in mask}
    assert wanted <= me.blocked


# ---- a child's signal mask ------------------------------------------------------------------

CHILD_SLEEPS = "import time; print('up', flush=True); time.sleep(30)"


def _sigblk(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("SigBlk:"))
    return int(line.split(":", 1)[1], 16)


def test_popen_child_starts_with_an_empty_mask_and_dies_of_sigterm_the_parent_blocks() -> None:
    with aiosig.block(signal.SIGTERM):
        child = aiosig.popen([sys.executable, "-c", CHILD_SLEEPS], stdout=subprocess.PIPE)
        assert child.stdout is not None
        with child.stdout:
            assert child.stdout.readline() == b"up\n"
            assert _sigblk(os.getpid()) != 0  # the parent's own mask, read the same way
            assert _sigblk(child.pid) == 0
            child.terminate()
            assert child.wait(TIMEOUT) == -signal.SIGTERM


# The forked child runs CPython's at-fork hooks (Python code, whatever the preexec_fn); a hook
# registered last marks their end. Anything profiled after it ran in the preexec_fn.
PREEXEC_PROFILE = """
import aiosig
popen = aiosig.popen  # loaded first: the modules it loads register fork hooks of their own

parent = os.getpid()
r, w = os.pipe()
hooks_done = False

def last_hook():
    global hooks_done
    hooks_done = True

def profile(frame, event, arg):
    if os.getpid() != parent and hooks_done and frame.f_code is not last_hook.__code__:
        name = getattr(arg, "__qualname__", "") if event.startswith("c_") else ""
        line = f"{event} {frame.f_code.co_filename}:{frame.f_code.co_name} {name}\\n"
        os.write(w, line.encode())

os.register_at_fork(after_in_child=last_hook)
sys.setprofile(profile)
child = popen([sys.executable, "-c", "pass"])
sys.setprofile(None)
os.close(w)
child.wait(20)
seen = b""
while chunk := os.read(r, 4096):
    seen += chunk
emit(seen.decode().splitlines())
"""


def test_popen_empties_the_childs_mask_without_running_python_code_in_it() -> None:
    assert run_fresh(PREEXEC_PROFILE) == []
