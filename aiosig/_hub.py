"""The hub: one per process, it owns the OS dispositions and the wakeup fd, and turns OS
signal deliveries into ``deliver(info)`` calls on subscriptions, each on its own loop.

Theory of operation
-------------------
Rule 1 (nothing at import): the hub starts on first use, in the main thread. It never closes
its self-pipe (see ``_wakeup``), so starting again after a release costs nothing.

Rule 2 (bytes are the hot path): while the hub owns the wakeup fd, every delivery writes one
byte into its pipe. A reader registered on each subscribing loop drains the pipe, dispatches
one delivery per byte (so real-time signals are counted exactly) and forwards the bytes to
the previous owner. The Python-level trampoline adds nothing to that path.

Rule 3 (the trampoline repairs the fd): a Python-level handler is needed for CPython to write
a byte at all, so each managed signal gets ``_trampoline``. It runs in the main thread between
bytecodes, possibly in the middle of the hub's own code, so it only bumps ints in
preallocated lists, swaps the wakeup fd (never get-then-set), and calls the handler the user
would have had without aiosig. If the swap shows someone took the fd (asyncio's
add_signal_handler or its last remove_signal_handler, a uvloop run starting or ending), the
bytes of the deliveries since then went to the thief: the hub chains to the thief, takes the
fd back, and the trampolines running in that batch count their delivery as *recovered*, to
be dispatched from the counters. A null byte written to the pipe wakes a reader to do so.

  Alternatives rejected: dispatching from the trampoline alone (trio) cannot count real-time
  signals (CPython coalesces Python-level handler calls) and costs a round trip on uvloop;
  dispatching from bytes alone goes deaf whenever the fd is taken.

  Known limits: a delivery whose byte went to a thief is recovered once per trampoline run, so
  a burst of real-time signals that arrives while the fd is taken is undercounted (standard
  signals still get their delivery after the last send); a delivery arriving between the
  theft's detection and the reader's next wakeup may be seen twice. Both need the fd to be
  taken by someone else, and the hub takes it back on the first delivery.

Rule 4 (installation is reference counted per signal): the first subscription installs the
trampoline and saves the disposition; the last restores exactly that (not SIG_DFL), and only
if the trampoline is still installed; the wakeup fd goes back to the previous owner only if
the current one is still ours and the saved number still names the same file.

Rule 5 (threads): the OS-level install must happen in the main thread. A loop in another
thread subscribes to a signal the hub already holds at once; otherwise the install is run on
the main thread's loop, and with no main-thread loop running the error says to reserve the
signal from the main thread first (``Hub.reserve``).

Rule 6 (fork): in a forked child the parent's subscriptions, chain and pipe are dropped and
the user's dispositions restored; the child's hub rebuilds on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from ._siginfo import SigInfo
from ._wakeup import Chains, SelfPipe

__all__ = ("Hub", "Reservation", "Subscription", "get_hub")

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
Deliver = Callable[[SigInfo], object]
FrameHook = Callable[[int, FrameType | None], object]

_NSIG = signal.NSIG
_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
_FAULTS = frozenset(
    getattr(signal, n) for n in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL") if hasattr(signal, n)
)
_MAIN_THREAD_INSTALL_TIMEOUT = 5.0


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")


def check_signal(signum: object) -> int:
    """Validate a signal number as ``signal.signal`` does, then apply aiosig's own refusals.

    The stdlib converts with ``int()`` first (so ``"10"`` and ``10.0`` mean SIGUSR1), and
    its C layer rejects what is left; the errors here are the same, type and message.
    """
    try:
        num: int = int(signum)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise TypeError(
            f"'{type(signum).__name__}' object cannot be interpreted as an integer"
        ) from None
    if not -(2**31) <= num < 2**31:
        raise OverflowError("Python int too large to convert to C int")
    if not 1 <= num < _NSIG:
        raise ValueError("signal number out of range")
    if num in _UNCATCHABLE:
        raise OSError(22, "Invalid argument")
    if num in _FAULTS:
        raise ValueError(
            f"{signal.Signals(num).name} is a synchronous fault signal that a loop cannot "
            "handle after the fact; use the faulthandler module instead."
        )
    return num


class Subscription:
    """Deliveries of some signals to one callback on one loop; ``close()`` is idempotent."""

    def __init__(
        self,
        hub: Hub,
        signals: frozenset[int],
        deliver: Deliver,
        loop: asyncio.AbstractEventLoop,
        chain: bool = True,
        in_handler: FrameHook | None = None,
    ) -> None:
        self.signals = signals
        self.loop = loop
        self.chain = chain
        self.in_handler = in_handler
        self._deliver = deliver
        self._hub = hub
        self.closed = False

    def deliver(self, info: SigInfo) -> None:
        """Call the callback; an exception goes to the loop's exception handler."""
        if self.closed:
            return
        try:
            self._deliver(info)
        except Exception as exc:
            self.loop.call_exception_handler(
                {"message": "aiosig subscription callback failed", "exception": exc}
            )

    def close(self) -> None:
        """Stop deliveries; the last subscription of a signal restores its disposition."""
        if not self.closed:
            self.closed = True
            self._hub._unsubscribe(self)

    def __repr__(self) -> str:
        names = ",".join(sorted(_name(s) for s in self.signals))
        return f"<Subscription {names}{' closed' if self.closed else ''}>"


_NAMES = frozenset(int(s) for s in signal.Signals)


def _name(signum: int) -> str:
    return signal.Signals(signum).name if signum in _NAMES else str(signum)


class Reservation:
    """Holds signals installed without a loop (see ``Hub.reserve``); ``close()`` releases."""

    def __init__(self, hub: Hub, signals: frozenset[int]) -> None:
        self.signals = signals
        self._hub = hub
        self.closed = False

    def close(self) -> None:
        """Release the signals; idempotent."""
        if not self.closed:
            self.closed = True
            self._hub._release(self.signals)


class Hub:
    """The process-wide owner of dispositions and the wakeup fd (see the module header)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tramp = self._trampoline  # one bound method: getsignal() identity checks need it
        self._pipe: SelfPipe | None = None
        self._chains = Chains()
        self._owning = False
        self._refs = [0] * _NSIG
        self._held: set[int] = set()
        self._user: list[Handler] = [None] * _NSIG  # what the user would have without us
        self._subs: list[tuple[Subscription, ...]] = [()] * _NSIG
        self._nochain = [False] * _NSIG  # some subscription took over the signal's meaning
        self._hooks: list[tuple[Subscription, ...]] = [()] * _NSIG  # those with in_handler
        self._loops: dict[asyncio.AbstractEventLoop, int] = {}
        self._main_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._pending_release: list[int] = []
        # Written by the trampoline only (ints in preallocated lists: safe between bytecodes).
        self._runs = [0] * _NSIG
        self._recovered = [0] * _NSIG
        self._theft_signum = 0  # nonzero while a trampoline pass follows a detected theft
        self._theft_frame: FrameType | None = None
        # Read by the reader only.
        self._recovered_done = [0] * _NSIG
        self._runs_seen = [0] * _NSIG
        self.stats = {"dispatched": 0, "recovered": 0, "thefts": 0, "overflows": 0}

    # ---- the trampoline -------------------------------------------------------------------

    def _trampoline(self, signum: int, frame: FrameType | None) -> None:
        # Main thread, between bytecodes, maybe inside the hub's own reader: see Rule 3.
        pipe = self._pipe
        if pipe is None:
            return
        self._runs[signum] += 1
        if self._theft_signum and (signum <= self._theft_signum or frame is not self._theft_frame):
            self._theft_signum = 0  # a new pass of CPython's handler loop: the batch is over
        if self._owning:
            try:
                cur = signal.set_wakeup_fd(pipe.w, warn_on_full_buffer=False)
            except (ValueError, OSError):
                cur = pipe.w
            if cur != pipe.w:
                # Rare path: someone took the fd; chain to them. Allocation is fine here.
                self._adopt_chain(cur)
                self.stats["thefts"] += 1
                self._theft_signum = -1
        if self._theft_signum:
            # This delivery's byte went to the thief. So did those of the signals still
            # tripped in this same pass of CPython's handler loop, which runs handlers in
            # increasing signal order with one frame: they are recovered too.
            self._theft_signum, self._theft_frame = signum, frame
            self._recovered[signum] += 1
            pipe.wake()
        for sub in self._hooks[signum]:  # a tuple replaced whole, never mutated: safe here
            try:
                sub.in_handler(signum, frame)  # type: ignore[misc]
            except Exception as exc:
                sub.loop.call_soon_threadsafe(_report_hook_error, sub.loop, exc)
        handler = self._user[signum]
        if callable(handler) and not self._nochain[signum]:
            handler(signum, frame)  # may raise: Ctrl-C chained to KeyboardInterrupt on purpose

    def _adopt_chain(self, fd: int) -> None:
        self._chains.push(fd)

    # ---- ownership ------------------------------------------------------------------------

    def _own_fd(self) -> None:
        """Take (or re-take, by swapping) the wakeup fd; chain to whoever had it."""
        if self._pipe is None:
            self._pipe = SelfPipe()
        prev = signal.set_wakeup_fd(self._pipe.w, warn_on_full_buffer=False)
        if prev != self._pipe.w:
            # Deliveries during a theft run their trampoline, which notices; this one only
            # catches thefts that no delivery has seen yet, so nothing needs recovering.
            self._adopt_chain(prev)
        self._owning = True

    def _audit(self) -> None:
        """Entry-point re-check (main thread): the fd is ours and our trampolines are in place.

        A handler someone installed over a trampoline (``loop.add_signal_handler`` for the
        same signal, say) becomes the user's handler, and the trampoline goes back in front.
        """
        if not self._owning or not _is_main_thread():
            return
        self._own_fd()
        for signum in self._held:
            if signal.getsignal(signum) is not self._tramp:
                self._user[signum] = signal.signal(signum, self._tramp)
        self._release_pending()

    def _install(self, signums: Iterable[int]) -> None:
        """Main thread only: take a reference on each signal, installing on the first."""
        self._own_fd()
        done: list[int] = []
        try:
            for signum in signums:
                if self._refs[signum] == 0:
                    self._user[signum] = signal.signal(signum, self._tramp)
                    self._held.add(signum)
                self._refs[signum] += 1
                done.append(signum)
        except BaseException:
            self._release_now(done)
            raise

    def _release(self, signums: Iterable[int]) -> None:
        if _is_main_thread():
            self._release_now(signums)
            self._release_pending()
            return
        with self._lock:
            self._pending_release.extend(signums)
        loop = self._main_loop() if self._main_loop else None
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._release_pending)

    def _release_pending(self) -> None:
        with self._lock:
            pending, self._pending_release = self._pending_release, []
        if pending:
            self._release_now(pending)

    def _release_now(self, signums: Iterable[int]) -> None:
        with self._lock:
            for signum in signums:
                self._refs[signum] -= 1
                if self._refs[signum] == 0:
                    self._held.discard(signum)
                    self._restore_disposition(signum)
            if self._owning and not self._held:
                self._restore_fd()

    def _restore_disposition(self, signum: int) -> None:
        user, self._user[signum] = self._user[signum], None
        if signal.getsignal(signum) is self._tramp and user is not None:
            signal.signal(signum, user)

    def _restore_fd(self) -> None:
        assert self._pipe is not None
        self._owning = False
        target = self._chains.top
        cur = signal.set_wakeup_fd(target.fd, warn_on_full_buffer=target.warn_on_full_buffer)
        if cur != self._pipe.w:  # someone took it meanwhile: theirs stays
            signal.set_wakeup_fd(cur)
        # Bytes still in the pipe belong to the previous owner's signals: hand them over.
        self._deliver_bytes(self._pipe.drain(), None)
        self._chains.close()

    # ---- subscribing ----------------------------------------------------------------------

    def subscribe(
        self,
        signals: Iterable[int],
        deliver: Deliver,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        chain: bool = True,
        in_handler: FrameHook | None = None,
    ) -> Subscription:
        """Deliver every later delivery of `signals` to `deliver(info)`, on `loop`.

        Args:
            signals: Signal numbers; validated as ``signal.signal`` validates them.
            deliver: Called once per delivery, on `loop`, with a `SigInfo`.
            loop: Defaults to the running loop. Must belong to the calling thread.
            chain: False to stop the trampoline from calling the user's own handler for
                these signals while this subscription lives (it takes over their meaning).
            in_handler: Called as ``in_handler(signum, frame)`` inside the trampoline, in the
                main thread, with the interrupted frame: for code that must see where the
                main thread is (a blocked loop cannot run `deliver`). It must be quick and
                must not raise (an exception is reported to `loop`'s exception handler).

        Raises:
            RuntimeError: No loop, SIGCHLD on uvloop, SIGINT before the loop runs, or a
                non-main thread whose signals cannot be installed.
        """
        signums = frozenset(check_signal(s) for s in signals)
        loop = loop if loop is not None else asyncio.get_running_loop()
        if loop.is_running() and not _in_loop_thread(loop):
            raise RuntimeError(
                "subscribe from the thread that runs the loop (hand the call over with "
                "loop.call_soon_threadsafe)."
            )
        self._refuse(signums, loop)
        sub = Subscription(self, signums, deliver, loop, chain, in_handler)
        self._acquire(signums, loop)
        with self._lock:
            for s in signums:
                self._subs[s] = (*self._subs[s], sub)
                self._update_trampoline_table(s)
            self._add_reader(loop)
        return sub

    def _update_trampoline_table(self, signum: int) -> None:
        subs = self._subs[signum]
        self._nochain[signum] = any(not sub.chain for sub in subs)
        self._hooks[signum] = tuple(sub for sub in subs if sub.in_handler is not None)

    def reserve(self, signals: Iterable[int]) -> Reservation:
        """Install `signals` from the main thread without a loop, for loops in other threads.

        Deliveries before a loop subscribes are not kept; the disposition is the trampoline,
        chaining to the user's handler.
        """
        signums = frozenset(check_signal(s) for s in signals)
        if not _is_main_thread():
            raise RuntimeError("reserve() installs signal handlers: call it from the main thread.")
        with self._lock:
            self._install(signums)
        return Reservation(self, signums)

    def _refuse(self, signums: frozenset[int], loop: asyncio.AbstractEventLoop) -> None:
        if signal.SIGCHLD in signums and _is_uvloop(loop):
            raise RuntimeError(
                "SIGCHLD is owned by uvloop's child watcher (libuv); wait for child processes "
                "with asyncio's subprocess API (await proc.wait()) instead."
            )
        if signal.SIGINT in signums and not loop.is_running():
            raise RuntimeError(
                "subscribe to SIGINT from inside the running loop, so that asyncio.Runner "
                "installs its Ctrl-C handler first and aiosig can chain to it."
            )

    def _acquire(self, signums: frozenset[int], loop: asyncio.AbstractEventLoop) -> None:
        if _is_main_thread():
            with self._lock:
                self._audit()
                self._install(signums)
            self._main_loop = weakref.ref(loop)
            return
        with self._lock:
            if all(self._refs[s] for s in signums):
                for s in signums:
                    self._refs[s] += 1
                return
        self._install_from_main_thread(signums)

    def _install_from_main_thread(self, signums: frozenset[int]) -> None:
        main = self._main_loop() if self._main_loop else None
        if main is None or main.is_closed() or not main.is_running():
            names = ", ".join(sorted(_name(s) for s in signums))
            raise RuntimeError(
                f"only the main thread can install signal handlers, and no main-thread loop "
                f"that uses aiosig is running: reserve {names} from the main thread first "
                "(aiosig's Hub.reserve), or subscribe there."
            )
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def install() -> None:
            try:
                with self._lock:
                    self._install(signums)
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

        main.call_soon_threadsafe(install)
        try:
            done.result(_MAIN_THREAD_INSTALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise RuntimeError(
                "the main thread's loop did not install the signal handlers within "
                f"{_MAIN_THREAD_INSTALL_TIMEOUT:g} s (is it blocked?); call Hub.reserve() "
                "in the main thread first."
            ) from None

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            for s in sub.signals:
                self._subs[s] = tuple(x for x in self._subs[s] if x is not sub)
                self._update_trampoline_table(s)
            self._remove_reader(sub.loop)
        self._release(sub.signals)

    def _add_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        n = self._loops.get(loop, 0)
        self._loops[loop] = n + 1
        if n == 0:
            assert self._pipe is not None
            loop.add_reader(self._pipe.r, self._on_readable, loop)

    def _remove_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        n = self._loops.pop(loop, 0) - 1
        if n > 0:
            self._loops[loop] = n
        elif self._pipe is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError, ValueError):
                if loop.is_running() and not _in_loop_thread(loop):
                    loop.call_soon_threadsafe(loop.remove_reader, self._pipe.r)
                else:
                    loop.remove_reader(self._pipe.r)

    # ---- dispatch -------------------------------------------------------------------------

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        pipe = self._pipe
        if pipe is None:
            return
        if _is_main_thread():
            self._audit()
        with self._lock:
            runs = self._runs.copy()  # before draining: these runs' bytes are all read below
            data = pipe.drain()
            if len(data) >= pipe.capacity:
                self._recover_overflow(runs, data)
            self._runs_seen = runs
            self._deliver_bytes(data, loop)

    def _recover_overflow(self, runs: list[int], data: bytes) -> None:
        """The pipe may have been full, and CPython drops bytes silently then: a signal whose
        trampoline ran since the last read but that has no byte gets one recovered delivery."""
        self.stats["overflows"] += 1
        for signum in self._held:
            if runs[signum] != self._runs_seen[signum] and signum not in data:
                self._recovered[signum] += 1
        if self._pipe is not None:
            self._pipe.wake()

    def _deliver_bytes(self, data: bytes, here: asyncio.AbstractEventLoop | None) -> None:
        """Dispatch one delivery per signal byte, then what the trampolines recovered."""
        batches: dict[asyncio.AbstractEventLoop, list[tuple[Subscription, SigInfo]]] = {}
        subs_for = self._subs
        plain = SigInfo.plain
        n = 0
        for signum in data:
            for sub in subs_for[signum]:
                self._deliver_one(sub, plain(signum), here, batches)
                n += 1
        if b"\0" in data:
            n += self._deliver_recovered(here, batches)
        if data:
            self._chains.forward(data.replace(b"\0", b"") if b"\0" in data else data)
        self.stats["dispatched"] += n
        for loop, batch in batches.items():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(_run_batch, batch)

    def _deliver_recovered(
        self,
        here: asyncio.AbstractEventLoop | None,
        batches: dict[asyncio.AbstractEventLoop, list[tuple[Subscription, SigInfo]]],
    ) -> int:
        n = 0
        for signum in range(1, _NSIG):
            count = self._recovered[signum] - self._recovered_done[signum]
            if count <= 0:
                continue
            self._recovered_done[signum] += count
            self.stats["recovered"] += count
            for _ in range(count):
                for sub in self._subs[signum]:
                    self._deliver_one(sub, SigInfo.plain(signum), here, batches)
                    n += 1
        return n

    @staticmethod
    def _deliver_one(
        sub: Subscription,
        info: SigInfo,
        here: asyncio.AbstractEventLoop | None,
        batches: dict[asyncio.AbstractEventLoop, list[tuple[Subscription, SigInfo]]],
    ) -> None:
        if sub.loop is here:
            sub.deliver(info)
        elif not sub.loop.is_closed():
            batches.setdefault(sub.loop, []).append((sub, info))

    # ---- aiosig.core support (main thread; the caller validated the arguments) ------------

    def holds(self, signum: int) -> bool:
        """True while the hub's trampoline manages `signum`."""
        return 0 < signum < _NSIG and self._refs[signum] > 0

    def user_handler(self, signum: int) -> Handler:
        """The handler the user would have for `signum` without aiosig."""
        return self._user[signum]

    def set_user_handler(self, signum: int, handler: Handler) -> Handler:
        """Set the handler the trampoline chains to; return the previous one."""
        with self._lock:
            self._audit()
            old, self._user[signum] = self._user[signum], handler
        return old

    def owns_wakeup_fd(self) -> bool:
        """True while the hub's pipe is the process's wakeup fd."""
        return self._owning

    def user_wakeup_fd(self) -> int:
        """The wakeup fd the user would have without aiosig (-1 for none)."""
        return self._chains.top.fd

    def set_user_wakeup_fd(self, fd: int, warn_on_full_buffer: bool) -> int:
        """Chain `fd` in place of the previous owner; return the previous user-visible fd."""
        with self._lock:
            self._audit()
            return self._chains.replace_top(fd, warn_on_full_buffer)

    # ---- fork -----------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """Drop the parent's state (Rule 6); cheap when the hub is idle."""
        pipe = self._pipe
        if pipe is None:
            return
        with contextlib.suppress(ValueError, OSError):
            cur = signal.set_wakeup_fd(-1)
            if cur != pipe.w:  # not ours: put it back
                signal.set_wakeup_fd(cur)
        for signum in self._held:
            with contextlib.suppress(ValueError, OSError, TypeError):
                self._restore_disposition(signum)
        self._chains.close()
        pipe.close()


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _report_hook_error(loop: asyncio.AbstractEventLoop, exc: BaseException) -> None:
    loop.call_exception_handler({"message": "aiosig in_handler hook failed", "exception": exc})


def _run_batch(batch: list[tuple[Subscription, SigInfo]]) -> None:
    for sub, info in batch:
        sub.deliver(info)


_hub: Hub | None = None
_hub_lock = threading.Lock()


def get_hub() -> Hub:
    """Return the process's hub, creating it (without touching signal state) on first use."""
    global _hub
    hub = _hub
    if hub is None:
        with _hub_lock:
            if _hub is None:
                _hub = Hub()
            hub = _hub
    return hub


def _after_fork_in_child() -> None:
    global _hub
    hub, _hub = _hub, None
    if hub is not None:
        hub._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
