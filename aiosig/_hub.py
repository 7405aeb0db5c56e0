"""The hub: one per process, it owns the OS dispositions and the wakeup fd, and turns OS
signal deliveries into ``deliver(info)`` calls on subscriptions, each on its own loop.

Theory of operation
-------------------
Rule 1 (nothing at import): the hub starts on first use, in the main thread. It never closes
its self-pipe (see ``_wakeup``), so starting again after a release costs nothing.

Rule 2 (bytes are the hot path): while the hub owns the wakeup fd, every delivery writes one
byte into its pipe. A reader registered on each subscribing loop reads it (64 KiB at most per
wakeup, so consumers run between the reads of a burst), dispatches one delivery per byte (so
real-time signals are counted exactly) and forwards the bytes to the previous owners.
Deliveries run outside the hub's lock. The trampoline adds one swap to that path. The read
side (markers, orphans, sorting by loop) is ``_reader``.

Rule 3 (the trampoline repairs the fd): a Python-level handler is needed for CPython to write
a byte at all, so each managed signal gets ``_trampoline``. It runs in the main thread between
bytecodes, possibly in the middle of the hub's own code, so it only bumps ints in
preallocated lists and sets plain attributes (the reader does the rest under its lock),
swaps the wakeup fd (never get-then-set), and calls the handler the user would have had
without aiosig. If the swap shows someone took the fd (asyncio's add_signal_handler or its
last remove_signal_handler, a uvloop run starting or ending), the hub takes it back and
becomes *suspicious*: until the reader next runs, every trampoline also writes a *marker*
byte (0x80 | signum) after its delivery's byte. In the pipe, a marker with no byte of its
signal since that signal's previous marker means the delivery's byte went to the thief: the
reader recovers one delivery for it. The thief is chained to (Rule 2's forwarding). The
reader is also suspicious while the pipe is half full: a marker that does not fit tells the
reader that the signal's byte probably did not either.

  Alternatives rejected: dispatching from the trampoline alone (trio) cannot count real-time
  signals (CPython coalesces Python-level handler calls) and costs a round trip on uvloop;
  dispatching from bytes alone goes deaf whenever the fd is taken; a marker on every
  delivery (not only while suspicious) would be wrong, not just slower: a delivery that
  lands between CPython clearing a signal's flag and the trampoline writing its marker has
  its byte before that marker, so the next marker would recover it a second time.

  Known limits: a delivery is recovered once per trampoline run, and CPython runs the
  trampoline only after the C-level handler has taken every queued signal of a burst, so a
  burst of real-time signals that arrives while the fd is taken can shrink to one delivery
  (standard signals still get their delivery after the last send), and the race above can
  show a delivery twice while suspicious. Both need the fd to be taken (or 512 KiB of
  unread bytes); the hub takes the fd back at its first trampoline run, and `aiosig.run`
  takes it at the start of each run. uvloop takes it at the start of every run: a burst
  that arrives before the first delivery or aiosig call of a later run is the case to know
  about. Exact real-time counts need the fd owned when the burst arrives, or precise
  delivery.

Rule 4 (installation is reference counted per signal): the first subscription installs the
trampoline and saves the disposition; the last restores exactly that (not SIG_DFL), and only
if the trampoline is still installed; the wakeup fd goes back to the previous owner only if
the current one is still ours and the saved number still names the same file. A delivery
that found no live subscription (it arrived while the last one was closing) is not
swallowed: once the disposition is back, if that is the default action, the signal is raised
again so the action happens. The reader counts these (a byte no live subscription took),
not the trampoline: a worker thread's loop may have received the byte before the main
thread's trampoline runs. Subscriptions end with their loop: a loop that shuts down its
async generators (``asyncio.run``, ``Runner.close``) closes them, and a loop found closed at
any entry point has its subscriptions closed.

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
import functools
import importlib
import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterable
from types import FrameType

from ._loops import (
    LoopWatch,
    fresh_handler,
    in_loop_thread,
    is_main_thread,
    is_uvloop,
    retire_sentinel,
    start_sentinel,
)
from ._reader import Reader, run_batch, send_batches
from ._subscription import (
    Deliver,
    FrameHook,
    Handler,
    Reservation,
    Subscription,
    check_signal,
    signal_name,
)
from ._wakeup import Chains, SelfPipe

__all__ = ("Hub", "Reservation", "Subscription", "check_signal", "get_hub")

_NSIG = signal.NSIG
_MAIN_THREAD_INSTALL_TIMEOUT = 5.0
_IGNORED_BY_DEFAULT = frozenset(
    getattr(signal, n) for n in ("SIGCHLD", "SIGURG", "SIGWINCH", "SIGCONT") if hasattr(signal, n)
)
# The C function behind signal.getsignal: the stdlib's wrapper converts to an enum, which
# costs 50x more (2.5 us), and the reader checks every held signal on every wakeup.
_c_getsignal: Callable[[int], object] = getattr(
    importlib.import_module("_signal"), "getsignal", signal.getsignal
)


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
        self._deferred: set[int] = set()  # released, but restoring would discard pending ones
        self._user: list[Handler] = [None] * _NSIG  # what the user would have without us
        self._subs: list[tuple[Subscription, ...]] = [()] * _NSIG
        self._nochain = [False] * _NSIG  # some subscription took over the signal's meaning
        self._hooks: list[tuple[Subscription, ...]] = [()] * _NSIG  # those with in_handler
        self._loops: dict[asyncio.AbstractEventLoop, LoopWatch] = {}
        self._main_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._pending_release: list[int] = []
        self._orphans_done = [0] * _NSIG
        self.stats = {"dispatched": 0, "recovered": 0, "thefts": 0}
        self._reader = Reader(self._subs, self._chains, self.stats)

    # ---- the trampoline -------------------------------------------------------------------

    def _trampoline(self, signum: int, frame: FrameType | None) -> None:
        # Main thread, between bytecodes, maybe inside the hub's own reader: see Rule 3.
        pipe = self._pipe
        if pipe is None:
            return
        if self._owning:
            try:
                cur = signal.set_wakeup_fd(pipe.w, warn_on_full_buffer=False)
            except (ValueError, OSError):
                cur = pipe.w
            if cur != pipe.w:
                self._reader.thieves.append(cur)  # the reader chains to it (append is atomic)
                self._reader.suspect = True
                self.stats["thefts"] += 1
        if self._reader.suspect:
            self._reader.mark(pipe, signum)
        for sub in self._hooks[signum]:  # a tuple replaced whole, never mutated: safe here
            try:
                sub.in_handler(signum, frame)  # type: ignore[misc]
            except Exception as exc:
                sub.loop.call_soon_threadsafe(_report_hook_error, sub.loop, exc)
        handler = self._user[signum]
        if callable(handler) and not self._nochain[signum]:
            handler(signum, frame)  # may raise: Ctrl-C chained to KeyboardInterrupt on purpose

    # ---- ownership ------------------------------------------------------------------------

    def _own_fd(self) -> None:
        """Take (or re-take, by swapping) the wakeup fd; chain to whoever had it.

        The descriptors this needs are opened first: without them (EMFILE) it raises before
        anything changed, rather than take the fd from an owner it cannot forward to.
        """
        pipe = SelfPipe() if self._pipe is None else self._pipe
        try:
            self._chains.reserve()
        except OSError:
            if pipe is not self._pipe:
                pipe.close()  # never the wakeup fd, so no loop can restore it (_wakeup, Rule 1)
            raise
        self._pipe = pipe
        prev = signal.set_wakeup_fd(self._pipe.w, warn_on_full_buffer=False)
        if prev != self._pipe.w:
            # Deliveries during a theft run their trampoline, which notices; this one only
            # catches thefts that no delivery has seen yet, so nothing needs recovering.
            self._chains.push(prev)
        self._owning = True

    def _audit(self) -> None:
        """Entry-point re-check (main thread, lock held).

        The fd is ours, our trampolines are in place (a handler someone installed over one,
        ``loop.add_signal_handler`` for the same signal say, becomes the user's handler and
        the trampoline goes back in front), subscriptions of closed loops are closed, and
        releases handed over by other threads are applied.
        """
        if not is_main_thread():
            return
        self._prune_closed_loops()
        if self._held and signal.SIGINT in self._held:
            # asyncio.Runner's Ctrl-C handler of a finished run, chained from a subscription
            # that outlived it, would raise KeyboardInterrupt anywhere: use the default.
            self._user[signal.SIGINT] = fresh_handler(signal.SIGINT, self._user[signal.SIGINT])
        if self._owning:
            self._own_fd()
        self._audit_dispositions()

    def _audit_dispositions(self) -> None:
        """The reader's share of `_audit`, every read: no system call, ~50 ns a signal."""
        if not is_main_thread():
            return
        if self._pending_release:
            self._release_pending()
        if self._deferred:
            self._restore_deferred()
        for signum in self._held:
            if _c_getsignal(signum) is not self._tramp:
                self._user[signum] = signal.signal(signum, self._tramp)

    def take_back(self) -> None:
        """Re-check ownership now (at the start of a loop run, say); cheap when all is well."""
        with self._lock:
            self._audit()

    def _prune_closed_loops(self) -> None:
        closed = [loop for loop in self._loops if loop.is_closed()]
        for loop in closed:
            self._close_loop_subscriptions(loop)
            watch = self._loops.pop(loop, None)  # its reader went with it
            if watch is not None:
                watch.active = False
                watch.sentinel = None

    def _close_loop_subscriptions(self, loop: asyncio.AbstractEventLoop) -> None:
        doomed = {sub for s in self._held for sub in self._subs[s] if sub.loop is loop}
        for sub in doomed:
            sub.close()

    def _install(self, signums: Iterable[int]) -> None:
        """Main thread only: take a reference on each signal, installing on the first."""
        self._own_fd()
        done: list[int] = []
        try:
            for signum in signums:
                if self._refs[signum] == 0:
                    self._take_disposition(signum)
                self._refs[signum] += 1
                done.append(signum)
        except BaseException:
            self._release_now(done)
            raise

    def _take_disposition(self, signum: int) -> None:
        if signum in self._deferred:  # still ours, restoration pending: keep the user's
            self._deferred.discard(signum)
            self._held.add(signum)
            return
        if signal.getsignal(signum) is None:
            raise RuntimeError(
                f"{signal_name(signum)} has a handler that was not installed from Python, "
                "which aiosig could not put back; leave this signal to that handler."
            )
        self._user[signum] = signal.signal(signum, self._tramp)
        self._orphans_done[signum] = self._reader.orphans[signum]
        self._held.add(signum)

    def _release(self, signums: Iterable[int]) -> None:
        if is_main_thread():
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
            released = []
            for signum in signums:
                self._refs[signum] -= 1
                if self._refs[signum] == 0:
                    self._held.discard(signum)
                    self._restore_disposition(signum)
                    released.append(signum)
            if self._owning and not self._held:
                self._restore_fd()
            elif released and self._pipe is not None:
                self._reader.read_all(self._pipe)  # count what came with nobody to take it
        for signum in released:
            self._raise_orphans(signum)

    def _restore_disposition(self, signum: int) -> None:
        user = self._user[signum]
        if _c_getsignal(signum) is not self._tramp or user is None:
            self._user[signum] = None  # someone else's handler is there now: theirs stays
            return
        if _discards_pending(signum, user) and signum in signal.sigpending():
            # Setting this disposition would make the kernel discard the blocked, pending
            # instances that a later sigwait (aiosig's or the stdlib's) is entitled to:
            # keep the trampoline (it acts as `user` would) until they are taken.
            self._deferred.add(signum)
            return
        self._user[signum] = None
        self._deferred.discard(signum)
        signal.signal(signum, fresh_handler(signum, user))

    def _restore_deferred(self) -> None:
        pending = signal.sigpending()
        for signum in [s for s in self._deferred if s not in pending and not self._refs[s]]:
            self._restore_disposition(signum)

    def _raise_orphans(self, signum: int) -> None:
        """Deliveries nobody received take the restored default action (Rule 4)."""
        orphans = self._reader.orphans[signum] - self._orphans_done[signum]
        self._orphans_done[signum] = self._reader.orphans[signum]
        if orphans > 0 and not self._refs[signum] and signal.getsignal(signum) == signal.SIG_DFL:
            signal.raise_signal(signum)

    def _restore_fd(self) -> None:
        assert self._pipe is not None
        self._owning = False
        self._reader.adopt_thieves()
        target = self._chains.top
        cur = signal.set_wakeup_fd(target.fd, warn_on_full_buffer=target.warn_on_full_buffer)
        if cur != self._pipe.w:  # someone took it meanwhile: theirs stays
            signal.set_wakeup_fd(cur)
        # Bytes still in the pipe belong to the previous owners' signals: hand them over.
        self._reader.read_all(self._pipe)
        self._chains.close()
        self._reader.reset()

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
        if loop.is_running() and not in_loop_thread(loop):
            raise RuntimeError(
                "subscribe from the thread that runs the loop (hand the call over with "
                "loop.call_soon_threadsafe)."
            )
        self._refuse(signums, loop)
        sub = Subscription(self, signums, deliver, loop, chain, in_handler)
        self._acquire(signums, loop)
        try:
            with self._lock:
                self._add_reader(loop)
                for s in signums:
                    self._subs[s] = (*self._subs[s], sub)
                    self._update_trampoline_table(s)
        except BaseException:
            self._release(signums)
            raise
        return sub

    def _update_trampoline_table(self, signum: int) -> None:
        subs = self._subs[signum]
        self._nochain[signum] = any(not sub.chain for sub in subs)
        self._hooks[signum] = tuple(sub for sub in subs if sub.in_handler is not None)

    def reserve(self, signals: Iterable[int]) -> Reservation:
        """Install `signals` from the main thread without a loop, for loops in other threads.

        A delivery that arrives while no loop subscribes is held until the reservation
        closes; then, if the disposition is the default action, the signal is raised again.
        Close the reservation after the other threads' subscriptions.
        """
        signums = frozenset(check_signal(s) for s in signals)
        if not is_main_thread():
            raise RuntimeError("reserve() installs signal handlers: call it from the main thread.")
        with self._lock:
            self._install(signums)
        return Reservation(self, signums)

    def _refuse(self, signums: frozenset[int], loop: asyncio.AbstractEventLoop) -> None:
        if signal.SIGCHLD in signums and is_uvloop(loop):
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
        if is_main_thread():
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
            names = ", ".join(sorted(signal_name(s) for s in signums))
            raise RuntimeError(
                f"only the main thread can install signal handlers, and no main-thread loop "
                f"that uses aiosig is running: reserve {names} from the main thread first "
                "(aiosig's Hub.reserve), or subscribe there."
            )
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def install() -> None:
            with self._lock:
                if not done.set_running_or_notify_cancel():
                    return  # the thread gave up waiting: taking a reference would leak it
                try:
                    self._install(signums)
                except BaseException as exc:
                    done.set_exception(exc)
                else:
                    done.set_result(None)

        main.call_soon_threadsafe(install)
        try:
            done.result(_MAIN_THREAD_INSTALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            if not done.cancel():  # running or done after all: its outcome is ours
                done.result()
                return
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
            loop = sub.loop
            if loop.is_running() and not in_loop_thread(loop) and not loop.is_closed():
                # The count and the reader change together, on the loop's thread, so that a
                # subscription made there meanwhile keeps its reader.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._remove_reader, loop)
            else:
                self._remove_reader(loop)
        self._release(sub.signals)

    def _add_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        watch = self._loops.get(loop)
        if watch is None:
            watch = self._loops[loop] = LoopWatch()
        watch.count += 1
        if watch.count == 1:
            assert self._pipe is not None
            loop.add_reader(self._pipe.r, self._on_readable, loop)
            watch.sentinel = start_sentinel(
                loop, watch, functools.partial(self._loop_shutting_down, loop)
            )

    def _remove_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            watch = self._loops.get(loop)
            if watch is None:
                return
            watch.count -= 1
            if watch.count > 0:
                return
            del self._loops[loop]
            watch.active = False  # its sentinel, when finalized, must not close anything
            retire_sentinel(watch)
            if self._pipe is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.remove_reader(self._pipe.r)

    def _loop_shutting_down(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop shuts down its async generators: its subscriptions end (Rule 4)."""
        with self._lock:
            self._close_loop_subscriptions(loop)

    # ---- dispatch -------------------------------------------------------------------------

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pipe is None:
            return
        with self._lock:
            # Not the full audit: the trampoline re-takes the fd on every delivery, and a
            # wakeup means the bytes reach us anyway.
            self._audit_dispositions()
            batches = self._reader.read(self._pipe)
        # User code runs outside the lock: a callback may subscribe, or take its time.
        run_batch(batches.pop(loop, []))
        send_batches(batches)

    # ---- aiosig.core support (main thread; the caller validated the arguments) ------------

    def holds(self, signum: int) -> bool:
        """True while the hub's trampoline manages `signum`."""
        return 0 < signum < _NSIG and (self._refs[signum] > 0 or signum in self._deferred)

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
        with self._lock:
            self._reader.adopt_thieves()
            return self._chains.top.fd

    def set_user_wakeup_fd(self, fd: int, warn_on_full_buffer: bool) -> int:
        """Chain `fd` in place of the previous owner; return the previous user-visible fd."""
        with self._lock:
            self._audit()
            self._reader.adopt_thieves()
            return self._chains.replace_top(fd, warn_on_full_buffer)

    # ---- fork -----------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """Drop the parent's state (Rule 6) and go inert; cheap when the hub is idle."""
        pipe = self._pipe
        if pipe is None:
            return
        with contextlib.suppress(ValueError, OSError):
            cur = signal.set_wakeup_fd(-1)
            if cur != pipe.w:  # not ours: put it back
                signal.set_wakeup_fd(cur)
        for signum in self._held | self._deferred:  # nothing is pending in a new child
            with contextlib.suppress(ValueError, OSError, TypeError):
                self._restore_disposition(signum)
        self._deferred.clear()
        for subs in self._subs:
            for sub in subs:
                sub.closed = True  # closing one in the child must not touch the new hub
        self._chains.close()
        pipe.close()
        self._pipe = None
        self._owning = False
        self._refs = [0] * _NSIG
        self._held.clear()
        self._subs[:] = [()] * _NSIG  # in place: the reader shares the table
        self._loops.clear()


def _discards_pending(signum: int, handler: Handler) -> bool:
    """POSIX: setting SIG_IGN, or SIG_DFL where the default is to ignore, discards pending."""
    return handler == signal.SIG_IGN or (
        handler == signal.SIG_DFL and signum in _IGNORED_BY_DEFAULT
    )


def _report_hook_error(loop: asyncio.AbstractEventLoop, exc: BaseException) -> None:
    loop.call_exception_handler({"message": "aiosig in_handler hook failed", "exception": exc})


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
    global _hub, _hub_lock
    _hub_lock = threading.Lock()  # another thread may have held it at the fork
    hub, _hub = _hub, None
    if hub is not None:
        hub._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
