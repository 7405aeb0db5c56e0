"""Load for the reliability suite: a signal sender process, and random churn of subscribers.

Shared by ``test_races`` (about a thousand random steps per loop flavour) and ``test_soak``
(the same churn for a minute). Both run in a fresh interpreter per loop flavour, which does:

1. start `Sender`: a separate process that sends, until told to stop, bursts of three signals
   to its parent: SIGUSR1 (standard, coalesces), RT_PLAIN (real-time, not blocked: the
   wakeup-fd path) and RT_PRECISE (real-time, blocked: read from a signalfd, each carrying
   its sequence number as the sigqueue value). It reports what it sent, and when it sent its
   last SIGUSR1 (after a quiet stretch, so that the delivery after it is its own);
2. keep a `Tally` receiver open for the whole run: it must count exactly the real-time
   signals sent (the hub owns the wakeup fd throughout), every RT_PRECISE value once and in
   order, no more SIGUSR1 than were sent and one after the last send;
3. meanwhile `Churn` opens and closes receivers, adds and removes handlers, starts and
   cancels waits, at moments a seeded ``random.Random`` picks, and checks what each of them
   is handed;
4. `Leaks` compares fds, threads, dispositions, the wakeup fd, the mask and what the hub
   holds before and after.

Nothing is mocked: real signals from a real process, on real loops.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiosig
from aiosig._hub import get_hub

__all__ = (
    "ALARMS",
    "RT_PLAIN",
    "RT_PRECISE",
    "SIGNALS",
    "Churn",
    "Leaks",
    "Sender",
    "Tally",
    "burst",
    "loop_factory",
    "run_checked",
    "send_main",
    "start_burst",
)

RT_PLAIN = signal.SIGRTMIN + 1
RT_PRECISE = signal.SIGRTMIN + 2
SIGNALS = (signal.SIGUSR1, RT_PLAIN, RT_PRECISE)
# Alarms join the churn: started, cancelled at random moments (often after their expiry
# fired but before the loop read it), or awaited to expiry. An expiry of aiosig's own timer
# must never reach the user's disposition (SIG_DFL would kill the process).
ALARMS = True
_QUIET_BEFORE_LAST_USR1 = 0.05  # s without SIGUSR1 before the last one: its delivery is its own


def loop_factory(flavour: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """``asyncio.new_event_loop`` or ``uvloop.new_event_loop``."""
    if flavour == "asyncio":
        return asyncio.new_event_loop
    import uvloop

    return uvloop.new_event_loop


# ---- the sender (a separate process) ---------------------------------------------------------


def _retrying(send: Callable[[], None]) -> None:
    while True:
        try:
            send()
            return
        except BlockingIOError:  # the receiving user's RLIMIT_SIGPENDING: not a loss
            time.sleep(0.001)


def send_main() -> None:
    """The sender's program: ``send_main()`` with argv ``pid seed burst_max pause_max``.

    Sends random bursts (1..burst_max signals, uniform(0, pause_max) s apart) until its stdin
    closes, then a last SIGUSR1 after a quiet stretch, and prints what it sent as JSON.
    """
    pid, seed, burst_max = (int(a) for a in sys.argv[1:4])
    pause_max = float(sys.argv[4])
    rng = random.Random(seed)
    sent = {"usr1": 0, "rt_plain": 0, "rt_precise": 0}
    while not select.select([sys.stdin], [], [], rng.uniform(0, pause_max))[0]:
        for _ in range(rng.randint(1, burst_max)):
            pick = rng.random()
            if pick < 0.45:
                if rng.random() < 0.5:
                    _retrying(lambda: aiosig.sigqueue(pid, RT_PLAIN, 7))
                else:
                    _retrying(lambda: os.kill(pid, RT_PLAIN))
                sent["rt_plain"] += 1
            elif pick < 0.9:
                value = sent["rt_precise"]
                _retrying(lambda value=value: aiosig.sigqueue(pid, RT_PRECISE, value))  # type: ignore[misc]
                sent["rt_precise"] += 1
            else:
                os.kill(pid, signal.SIGUSR1)
                sent["usr1"] += 1
    time.sleep(_QUIET_BEFORE_LAST_USR1)
    last_usr1 = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
    os.kill(pid, signal.SIGUSR1)
    sent["usr1"] += 1
    print(json.dumps({**sent, "last_usr1": last_usr1}), flush=True)


_BURST = """\
import sys, time
import aiosig
pid, signum, count = map(int, sys.argv[1:4])
pause = float(sys.argv[4]) / (count / 100)
for value in range(count):
    aiosig.sigqueue(pid, signum, value)
    if pause and value % 100 == 99:
        time.sleep(pause)
"""


def start_burst(pid: int, signum: int, count: int, spread: float = 0.0) -> subprocess.Popen[bytes]:
    """Start sending `count` `signum` from a separate process, with values 0..count-1.

    `spread`: seconds to spread the sends over (in steps of 100); 0 for as fast as it can.
    """
    return subprocess.Popen(
        [sys.executable, "-c", _BURST, str(pid), str(int(signum)), str(count), str(spread)],
        stdin=subprocess.DEVNULL,
    )


def burst(pid: int, signum: int, count: int) -> None:
    """`start_burst` and wait until every signal was sent (blocking the caller's loop)."""
    if start_burst(pid, signum, count).wait(30) != 0:
        raise RuntimeError("the burst sender failed")


class Sender:
    """The sender process, started at once; `stop` ends it and returns what it sent."""

    def __init__(self, seed: int, burst_max: int, pause_max: float) -> None:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tests._load import send_main; send_main()",
                str(os.getpid()),
                str(seed),
                str(burst_max),
                str(pause_max),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """Tell it to stop; wait (without blocking the loop) until it reported and exited."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        async with asyncio.timeout(timeout):
            while self._proc.poll() is None:
                await asyncio.sleep(0.005)
        report = self._proc.stdout.read()
        self._proc.stdout.close()
        if self._proc.returncode != 0:
            raise RuntimeError(f"the sender failed ({self._proc.returncode}): {report}")
        sent: dict[str, Any] = json.loads(report)
        return sent


# ---- the long-lived receiver ------------------------------------------------------------------


class Tally:
    """A receiver of every signal the sender sends, open for the whole run, counted."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.next_value = 0  # the RT_PRECISE sequence number due next
        self.out_of_order = 0  # (counted, not listed: a soak must not grow with its load)
        self.last_usr1 = 0.0
        self.receiver = aiosig.open_signal_receiver(*SIGNALS)
        self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        async for info in self.receiver:
            signo = int(info.si_signo)
            self.counts[signo] += 1
            if signo == RT_PRECISE:
                if info.si_value != self.next_value:
                    self.out_of_order += 1
                self.next_value = (info.si_value or 0) + 1
            elif signo == signal.SIGUSR1:
                self.last_usr1 = time.monotonic()

    def settled(self, sent: dict[str, Any]) -> bool:
        """Everything sent has arrived (real-time exactly, SIGUSR1 once after the last)."""
        return (
            self.counts[RT_PLAIN] >= sent["rt_plain"]
            and self.counts[RT_PRECISE] >= sent["rt_precise"]
            and self.last_usr1 > sent["last_usr1"]
        )

    async def close(self, sent: dict[str, Any], timeout: float = 10.0) -> list[str]:
        """Wait until settled (or `timeout`), close, and say what the contract was denied."""
        try:
            async with asyncio.timeout(timeout):
                while not self.settled(sent):
                    await asyncio.sleep(0.005)
        except TimeoutError:
            pass
        await asyncio.sleep(0.05)  # anything extra (invented) arrives too
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.receiver.close()  # empty: nothing is raised again
        return self.problems(sent)

    def problems(self, sent: dict[str, Any]) -> list[str]:
        """The contract, checked against what the sender says it sent."""
        problems = []
        for name, signo in (("rt_plain", RT_PLAIN), ("rt_precise", RT_PRECISE)):
            if self.counts[signo] != sent[name]:
                problems.append(f"{name}: sent {sent[name]}, received {self.counts[signo]}")
        if self.out_of_order or self.next_value != sent["rt_precise"]:
            problems.append(f"rt_precise: {self.out_of_order} values out of order")
        if not 1 <= self.counts[signal.SIGUSR1] <= sent["usr1"]:
            problems.append(f"usr1: sent {sent['usr1']}, received {self.counts[signal.SIGUSR1]}")
        if self.last_usr1 <= sent["last_usr1"]:
            problems.append("usr1: no delivery after the last send")
        return problems

    def report(self) -> dict[str, int]:
        """Counts by name, for the test's report."""
        return {
            "usr1": self.counts[signal.SIGUSR1],
            "rt_plain": self.counts[RT_PLAIN],
            "rt_precise": self.counts[RT_PRECISE],
        }


# ---- the churn -------------------------------------------------------------------------------


@dataclass
class _Receiver:
    receiver: aiosig.SignalReceiver
    drain: asyncio.Task[None] | None = None
    last_value: int = -1


@dataclass
class Churn:
    """Subscribers made and ended at moments `rng` picks, each checking what it is handed.

    Problems (a wrong signal, a precise value out of order or twice, an unexpected exception)
    go to `problems`; what happened is counted in `stats`.
    """

    rng: random.Random
    problems: list[str] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    receivers: list[_Receiver] = field(default_factory=list)
    handlers: list[aiosig.HandlerHandle] = field(default_factory=list)
    waits: list[tuple[frozenset[int], asyncio.Task[Any]]] = field(default_factory=list)
    drains: list[asyncio.Task[None]] = field(default_factory=list)
    pending_alarms: list[asyncio.Future[aiosig.SigInfo]] = field(default_factory=list)
    alarms: bool = ALARMS

    async def step(self) -> None:
        """One random operation, then a random pause (none, one loop turn, up to 3 ms)."""
        ops: list[tuple[Callable[[], Awaitable[None] | None], int]] = [
            (self.open_receiver, 3),
            (self.close_receiver, 3),
            (self.add_handler, 2),
            (self.remove_handler, 2),
            (self.start_wait, 4),
            (self.cancel_wait, 3),
            (self.start_alarm, 1 if self.alarms else 0),
            (self.cancel_alarm, 1 if self.alarms else 0),
        ]
        op = self.rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
        self.stats["steps"] += 1
        result = op()
        if result is not None:
            await result
        self._reap_waits()
        self._reap_drains()
        self._reap_alarms()
        pause = self.rng.random()
        if pause < 0.3:
            return
        await asyncio.sleep(0 if pause < 0.7 else self.rng.uniform(0, 0.003))

    def _subset(self) -> frozenset[int]:
        return frozenset(self.rng.sample(SIGNALS, self.rng.randint(1, len(SIGNALS))))

    # -- receivers

    def open_receiver(self) -> None:
        if len(self.receivers) >= 8:
            return self.close_receiver()
        # A tiny buffer overflows (plain) or holds the signalfd back (precise) for a while.
        maxsize = self.rng.choice([1, 3, 1 << 16])
        entry = _Receiver(aiosig.open_signal_receiver(*self._subset(), maxsize=maxsize))
        if self.rng.random() < 0.7:
            entry.drain = asyncio.ensure_future(self._drain(entry))
            self.drains.append(entry.drain)
        self.receivers.append(entry)
        self.stats["receivers opened"] += 1
        return None

    async def _drain(self, entry: _Receiver) -> None:
        async for info in entry.receiver:
            self._check(entry.receiver.signals, info, "receiver")
            if int(info.si_signo) == RT_PRECISE and info.precise:
                assert info.si_value is not None
                if info.si_value <= entry.last_value:
                    self.problems.append(f"value {info.si_value} after {entry.last_value}")
                entry.last_value = info.si_value
            self.stats["receiver deliveries"] += 1
            if self.rng.random() < 0.05:
                await asyncio.sleep(self.rng.uniform(0, 0.002))

    def close_receiver(self) -> None:
        if not self.receivers:
            return None
        entry = self.receivers.pop(self.rng.randrange(len(self.receivers)))
        if entry.drain is not None and self.rng.random() < 0.5:
            entry.drain.cancel()  # cancels a pending __anext__: nothing may be lost by it
        entry.receiver.close()  # a drain still running sees StopAsyncIteration
        self.stats["receivers closed"] += 1
        return None

    # -- handlers

    def add_handler(self) -> None:
        if len(self.handlers) >= 6:
            return self.remove_handler()
        signum = self.rng.choice(SIGNALS)
        kind = self.rng.choice(["count", "sleep", "remove itself", "close a receiver"])
        box: list[aiosig.HandlerHandle] = []

        def count(info: aiosig.SigInfo) -> None:
            self._check(frozenset({signum}), info, "handler")
            self.stats["handler calls"] += 1
            if kind == "remove itself" and self.rng.random() < 0.3:
                box[0].remove()
                self.stats["handlers removed themselves"] += 1
            elif kind == "close a receiver" and self.rng.random() < 0.3:
                self.close_receiver()

        async def sleep(info: aiosig.SigInfo) -> None:
            count(info)
            await asyncio.sleep(self.rng.uniform(0, 0.003))

        policy = self.rng.choice(["serial", "concurrent", "drop"])
        fn = sleep if kind == "sleep" else count
        box.append(aiosig.add_handler(signum, fn, policy=policy))  # type: ignore[arg-type]
        self.handlers.append(box[0])
        self.stats["handlers added"] += 1
        return None

    async def remove_handler(self) -> None:
        if not self.handlers:
            return
        handle = self.handlers.pop(self.rng.randrange(len(self.handlers)))
        if self.rng.random() < 0.5:
            handle.remove()
        else:
            async with asyncio.timeout(5):
                await handle.aclose()
        self.stats["handlers removed"] += 1

    # -- waits

    def start_wait(self) -> None:
        if len(self.waits) >= 8:
            return self.cancel_wait()
        signums = self._subset()
        kind = self.rng.choice(["sigwaitinfo", "sigtimedwait", "sigwait"])
        wait: Awaitable[Any]
        if kind == "sigwaitinfo":
            wait = aiosig.sigwaitinfo(signums)
        elif kind == "sigtimedwait":
            wait = aiosig.sigtimedwait(signums, self.rng.choice([0, 0.001, 0.01]))
        else:
            wait = aiosig.sigwait(signums)
        task = asyncio.ensure_future(wait)
        self.waits.append((signums, task))
        self.stats[f"{kind} started"] += 1
        if self.rng.random() < 0.1:
            task.cancel()  # before it ever ran
        return None

    def start_alarm(self) -> None:
        self.pending_alarms.append(aiosig.alarm(self.rng.uniform(0, 0.005)))
        self.stats["alarms started"] += 1

    def cancel_alarm(self) -> None:
        if self.pending_alarms:
            future = self.pending_alarms.pop(self.rng.randrange(len(self.pending_alarms)))
            if future.cancel():
                self.stats["alarms cancelled"] += 1
            elif future.done() and future.exception() is None:
                self.stats["alarms expired"] += 1

    def _reap_alarms(self) -> None:
        for future in [f for f in self.pending_alarms if f.done()]:
            self.pending_alarms.remove(future)
            if future.exception() is not None:
                self.problems.append(f"an alarm raised {future.exception()!r}")
            elif future.result().si_signo != signal.SIGALRM:
                self.problems.append(f"an alarm resolved to {future.result()!r}")
            else:
                self.stats["alarms expired"] += 1

    def cancel_wait(self) -> None:
        if self.waits:
            self.waits[self.rng.randrange(len(self.waits))][1].cancel()

    def _reap_waits(self) -> None:
        pending = []
        for signums, task in self.waits:
            if not task.done():
                pending.append((signums, task))
            elif task.cancelled():
                self.stats["waits cancelled"] += 1
            elif task.exception() is not None:
                self.problems.append(f"wait raised {task.exception()!r}")
            elif task.result() is None:
                self.stats["waits timed out"] += 1
            else:
                got = task.result()
                if isinstance(got, aiosig.SigInfo):
                    self._check(signums, got, "wait")
                elif int(got) not in signums:
                    self.problems.append(f"sigwait returned {got!r}, waited for {signums}")
                self.stats["waits completed"] += 1
        self.waits = pending

    # -- shared

    def _check(self, signums: frozenset[int], info: aiosig.SigInfo, who: str) -> None:
        if int(info.si_signo) not in signums:
            self.problems.append(f"{who} got {info.si_signo!r}, subscribed {sorted(signums)}")

    async def close_all(self) -> None:
        """End everything still open, the way a program would, and check what came back."""
        for _, task in self.waits:
            task.cancel()
        await asyncio.gather(*(t for _, t in self.waits), return_exceptions=True)
        self._reap_waits()
        while self.receivers:
            self.close_receiver()
        while self.handlers:
            await self.remove_handler()
        if self.drains:
            async with asyncio.timeout(5):
                await asyncio.wait(self.drains)
        self._reap_drains()
        if self.pending_alarms:
            await asyncio.wait(self.pending_alarms, timeout=5)  # times out without cancelling
        self._reap_alarms()
        if self.pending_alarms:
            self.problems.append(f"{len(self.pending_alarms)} alarms did not expire")

    def _reap_drains(self) -> None:
        pending = []
        for task in self.drains:
            if not task.done():
                pending.append(task)
            elif not task.cancelled() and task.exception() is not None:
                self.problems.append(f"a receiver's drain raised {task.exception()!r}")
        self.drains = pending


# ---- leaks -------------------------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd)
    return fd


def rss_kib() -> int:
    """VmRSS of this process, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass
class Leaks:
    """Process-wide state outside any loop run: taken before, compared after."""

    fds: int = field(default_factory=_fds)
    threads: int = field(default_factory=threading.active_count)
    dispositions: dict[int, object] = field(
        default_factory=lambda: {s: signal.getsignal(s) for s in (*SIGNALS, signal.SIGALRM)}
    )
    itimer: tuple[float, float] = field(
        default_factory=lambda: signal.getitimer(signal.ITIMER_REAL)
    )
    wakeup_fd: int = field(default_factory=_wakeup_fd)
    mask: frozenset[int] = field(
        default_factory=lambda: frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, ()))
    )

    def compare(self) -> list[str]:
        """What differs now, and what the hub still holds."""
        now = Leaks()
        problems = [
            f"{name}: {getattr(self, name)!r} before, {getattr(now, name)!r} after"
            for name in ("fds", "threads", "dispositions", "itimer", "wakeup_fd", "mask")
            if getattr(self, name) != getattr(now, name)
        ]
        held = [s for s in (*SIGNALS, signal.SIGALRM) if get_hub().holds(s)]
        if held:
            problems.append(f"the hub still holds {held}")
        return problems


def run_checked(
    factory: Callable[[], asyncio.AbstractEventLoop],
    main: Coroutine[Any, Any, dict[str, object]],
    before: Leaks,
) -> dict[str, object]:
    """Run `main` (which returns a report with a "problems" list) with RT_PRECISE blocked
    for precise delivery; add what was left pending in the kernel and what leaked."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {RT_PRECISE})
    with asyncio.Runner(loop_factory=factory) as runner:
        report = runner.run(main)
    left = signal.sigpending()
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    problems = report["problems"]
    assert isinstance(problems, list)
    if left:
        problems.append(f"left pending in the kernel: {sorted(left)}")
    problems += before.compare()
    return report


def warm_up(factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """One subscription on a throwaway loop: the hub's self-pipe lives for good after it."""

    async def once() -> None:
        aiosig.open_signal_receiver(signal.SIGUSR1).close()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(once())
