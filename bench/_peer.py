"""The other process of a measurement: a responder (ping-pong) and a flooder (throughput).

Theory of operation
-------------------
The process being measured (a benchmark worker) runs the event loop and the mechanism under
test; this peer is the same for every mechanism, so its share of each number is a constant.
It is deliberately minimal: stdlib only, no event loop, no aiosig (its ``sigqueue`` is the
libc call aiosig.sigqueue wraps, made directly so that the sender is as fast as it can be).

Why another process and not a thread doing ``os.kill``/``pthread_kill``: a sender thread in
the measured process needs the GIL to send and to take its timestamps, so every sample would
include GIL hand-offs with the loop thread (up to the 5 ms switch interval when the loop is
busy), and the thread would be one more candidate for process-directed signals. A separate
process shares nothing with the loop but the kernel, which is also how signals really arrive
(``kill``, systemd, a container runtime). Both timestamps of a round trip are taken in the
measured process, so no clocks are compared across processes.

Both peers die with their parent (``PR_SET_PDEATHSIG``) and give up on their own after a
timeout, so a benchmark that is killed or wedged leaves nothing behind.

Usage: ``python _peer.py respond PARENT PING PONG IDLE_S``
       ``python _peer.py flood PARENT SIGNO COUNT MODE STALL_S`` (MODE: sigqueue or kill)
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
import time

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with(parent: int) -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(3)


def respond(parent: int, ping: int, pong: int, idle_s: float) -> None:
    """Answer every `ping` with a `pong` to `parent`; stop on SIGTERM or after `idle_s` idle.

    ``sigtimedwait`` on a blocked signal is the cheapest way Python has to wait for one: the
    interpreter sleeps in the kernel and no handler runs.
    """
    wanted = {ping, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_SETMASK, wanted)
    print("READY", flush=True)
    wait, kill = signal.sigtimedwait, os.kill
    while True:
        info = wait(wanted, idle_s)
        if info is None or info.si_signo != ping:
            return
        kill(parent, pong)


def flood(parent: int, signo: int, count: int, mode: str, stall_s: float) -> None:
    """Send `count` signals to `parent` as fast as possible, once told ``go`` on stdin.

    ``sigqueue`` fails with EAGAIN when the parent's user has RLIMIT_SIGPENDING signals
    queued; the flooder then yields and retries, so every send it counts was queued by the
    kernel and ``counted / sent`` measures the receiver alone. ``kill`` cannot report that
    (the kernel then merges the signal silently), which is why it is not the default.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    send = _libc.sigqueue
    send.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t)
    kill = os.kill
    sent = eagain = 0
    start = time.perf_counter_ns()
    stalled_since = 0.0
    while sent < count:
        if mode == "kill":
            kill(parent, signo)
            sent += 1
            continue
        if send(parent, signo, 0) == 0:
            sent += 1
            stalled_since = 0.0
            continue
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            break
        eagain += 1
        now = time.monotonic()
        if not stalled_since:
            stalled_since = now
        elif now - stalled_since > stall_s:
            break  # the parent stopped taking signals: report what was sent
        os.sched_yield()
    elapsed = time.perf_counter_ns() - start
    print(f"DONE {sent} {eagain} {elapsed}", flush=True)


def main(argv: list[str]) -> None:
    role, parent = argv[0], int(argv[1])
    _die_with(parent)
    if role == "respond":
        respond(parent, int(argv[2]), int(argv[3]), float(argv[4]))
    elif role == "flood":
        flood(parent, int(argv[2]), int(argv[3]), argv[4], float(argv[5]))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
