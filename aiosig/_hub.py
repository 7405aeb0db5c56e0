"""The hub: one per process, it owns the OS dispositions and the wakeup fd, and turns OS signal
deliveries into ``deliver(info)`` calls on subscriptions, each on its own loop.

Theory of operation
-------------------
Rule 1 (nothing at import): the hub starts on first use, in the main thread. It never closes
its self-pipe (see ``_wakeup``), so starting again after a release costs nothing.

Rule 2 (bytes are the hot path): while the hub owns the wakeup fd, every delivery writes one
byte into its pipe. A reader registered on each subscribing loop reads it (64 KiB at most
per wakeup, so consumers run between the reads of a burst), dispatches one delivery per byte
(so real-time signals are counted exactly) and forwards the bytes to the previous owners.
A read that holds one signal only (a flood of one real-time signal) is dispatched as one
run per subscription (``Subscription.deliver_many``: a receiver buffers the run at once),
counted in C rather than in a pass over every byte.
Deliveries run outside the hub's lock. The trampoline adds one swap to that path. The read
side (markers, orphans, sorting by loop) is ``_reader``.

Rule 3 (the trampoline repairs the fd): a Python-level handler is needed for CPython to
write a byte at all, so each managed signal gets a `Trampoline` (``_dispositions``: one
object per installation, carrying the disposition the process would have without aiosig),
which calls `Hub._on_signal`. It runs in the main thread between bytecodes, possibly in the
middle of the reader (never of a change of the hub's state: those hold every signal), so it
only sets plain attributes through the reader's methods, swaps the wakeup fd (never
get-then-set), and calls the trampoline's ``behind``. If the swap shows someone took the fd
(asyncio's add_signal_handler or its last remove_signal_handler, a uvloop run starting or
ending), the hub takes it back and becomes *suspicious*: until the reader next runs, every
trampoline also writes a *marker* byte (0x80 | signum) after its delivery's byte. In the
pipe, a marker with no byte of its signal since that signal's previous marker means the
delivery's byte went to the thief: the reader recovers one delivery for it. The thief is
chained to (Rule 2's forwarding). The reader is also suspicious while the pipe is half full:
a marker that does not fit tells the reader that the signal's byte probably did not either.

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

Rule 4 (installation is reference counted per signal): the first subscription installs a
trampoline; the last puts back what the installed trampoline stands for (``_dispositions``
explains the orders in which other libraries install and restore around us); the wakeup fd
goes back to the previous owner only if the current one is still ours and the saved number
still names the same file. A delivery that found no live subscription (it arrived while the
last one was closing) is not swallowed: once the disposition is back, if that is the default
action, the signal is raised again so the action happens. The reader counts these (a byte no
live subscription took, or what a closing receiver reports unconsumed with no other live
subscription of its signal), not the trampoline: a worker thread's loop may have received
the byte before the main thread's trampoline runs. A trampoline whose every subscriber's
loop is closed acts as the default would at once. Subscriptions end with their loop: a loop
that shuts down its async generators (``asyncio.run``, ``Runner.close``) closes them, a
loop found closed at any entry point has its subscriptions closed, and at interpreter exit
so does every loop that is not running.

Rule 5 (threads): the OS-level install must happen in the main thread. A loop in another
thread subscribes to a signal the hub already holds at once; otherwise the install is run on
the main thread's loop, and with no main-thread loop running the error says to reserve the
signal from the main thread first (`reserve`).

Rule 7 (no change cut in two): every change of the hub's state runs in `Hub._changing`: the
lock, and in the main thread every signal held, so that no Python-level handler (a
KeyboardInterrupt from ``default_int_handler``) runs between two of its steps.

Rule 6 (fork): in a forked child the parent's subscriptions, chain and pipe are dropped and
the user's dispositions restored; the child's hub rebuilds on first use. The wakeup fd is
left unset, not given back to the owner before aiosig: that descriptor is shared with the
parent (a socketpair survives fork, uvloop's included), and the child's signals written into
it would wake the parent's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import FrameType

from . import _process_hooks
from ._dispositions import DEFAULT_TERMINATES, Dispositions, Trampoline, act_as
from ._loops import (
    LoopReaders,
    fresh_handler,
    in_loop_thread,
    is_main_thread,
    refusal,
)
from ._platform import signals_held
from ._reader import Batches, Reader, deliver_batches, send_batches
from ._siginfo import SigInfo
from ._subscription import (
    Deliver,
    DeliverMany,
    FrameHook,
    Handler,
    Members,
    Reservation,
    Subscription,
    check_signal,
    signal_name,
)
from ._wakeup import Chains, SelfPipe

__all__ = ("Hub", "Reservation", "Subscription", "check_signal", "get_hub", "reserve")

_NSIG = signal.NSIG
_MAIN_THREAD_INSTALL_TIMEOUT = 5.0


class Hub:
    """The process-wide owner of dispositions and the wakeup fd (see the module header)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pipe: SelfPipe | None = None
        self._chains = Chains()
        self._owning = False
        self._stale_fd_watch = False  # see _restore_fd
        self._disp = Dispositions(self._on_signal, fresh_handler)
        self._subs = [Members() for _ in range(_NSIG)]
        self._loops = LoopReaders(self._on_readable, self._loop_shutting_down)
        self._main_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._pending_release: list[int] = []
        self.stats = {"dispatched": 0, "recovered": 0, "thefts": 0}
        self._reader = Reader(self._subs, self._chains, self.stats, self._disp.silent)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """The lock, and in the main thread every signal held: a change is never cut in two.

        Without holding signals, a KeyboardInterrupt from ``default_int_handler`` (or any
        handler) could land between two steps and leave a reference or the fd behind.
        """
        with self._lock:
            if is_main_thread():
                with signals_held():
                    yield
            else:
                yield

    # ---- the trampoline -------------------------------------------------------------------

    def _on_signal(self, tramp: Trampoline, signum: int, frame: FrameType | None) -> None:
        # Main thread, between bytecodes, maybe inside the reader (never inside a change:
        # those hold signals): see Rule 3. Plain attribute writes and method calls that only
        # make them, one swap, then the handler the process would have without aiosig.
        disp = self._disp
        if not disp.refs[signum] and not disp.holds(signum):  # refs first: the common case
            disp.heal(tramp, signum, frame)  # stale: put back by someone who saved it
            return
        pipe = self._pipe
        if pipe is not None:
            if self._owning:
                try:
                    cur = signal.set_wakeup_fd(pipe.w, warn_on_full_buffer=False)
                except (ValueError, OSError):
                    cur = pipe.w
                if cur != pipe.w:
                    self._reader.theft(cur)
                    self.stats["thefts"] += 1
            if self._reader.suspect:
                self._reader.mark(pipe, signum)
        members = self._subs[signum]
        for sub in members.hooks:  # a tuple replaced whole, never mutated: safe here
            try:
                sub.in_handler(signum, frame)  # type: ignore[misc]
            except Exception as exc:
                sub.loop.call_soon_threadsafe(_report_hook_error, sub.loop, exc)
        behind = tramp.behind
        if callable(behind):
            if not members.nochain:
                behind(signum, frame)  # may raise: Ctrl-C chained to KeyboardInterrupt
        elif signum in DEFAULT_TERMINATES and self._nobody_can_take(members.loops):
            act_as(behind, signum, frame)  # every subscriber's loop is gone: do what it says

    @staticmethod
    def _nobody_can_take(loops: tuple[asyncio.AbstractEventLoop, ...]) -> bool:
        """True if there are subscriptions and every one's loop was closed (Rule 4)."""
        if not loops or not loops[0].is_closed():
            return False  # the common case, without building a generator (0.3 µs)
        return all(loop.is_closed() for loop in loops)

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
        self._stale_fd_watch = False

    def _audit(self) -> None:
        """Entry-point re-check (main thread, inside `_changing`).

        The fd is ours, the dispositions are as `_dispositions` Rule 2 says, subscriptions
        of closed loops are closed, and releases handed over by other threads are applied.
        """
        if not is_main_thread():
            return
        self._prune_closed_loops()
        if signal.SIGINT in self._disp.held:
            # asyncio.Runner's Ctrl-C handler of a finished run, chained from a subscription
            # that outlived it, would raise KeyboardInterrupt anywhere: use the default.
            behind = self._disp.behind(signal.SIGINT)
            fresh = fresh_handler(signal.SIGINT, behind)
            if fresh is not behind:
                self._disp.set_behind(signal.SIGINT, fresh)
        if self._owning:
            self._own_fd()
        else:
            self._heal_fd()
        self._release_pending()
        self._disp.audit()

    def _audit_dispositions(self) -> None:
        """The reader's share of `_audit`, every read: ~50 ns a held signal when all is well."""
        # The read-only checks first: the thread check costs more than they do.
        if (self._pending_release or not self._disp.settled()) and is_main_thread():
            with signals_held():
                self._release_pending()
                self._disp.audit()

    def take_back(self) -> None:
        """Re-check ownership now (at the start of a loop run, say); cheap when all is well."""
        with self._changing():
            self._audit()

    def _prune_closed_loops(self) -> None:
        for loop in self._loops.forget_closed():
            self._end_loop_subscriptions(loop)

    def _end_loop_subscriptions(self, loop: asyncio.AbstractEventLoop) -> None:
        """End every subscription of `loop` as one group (Rule 4).

        All of them leave the tables first, so that what one reports unconsumed is not
        discarded on the grounds that another of the same loop is still live.
        """
        doomed = {
            sub for s in self._disp.held for sub in self._subs[s].snapshot() if sub.loop is loop
        }
        for sub in doomed:
            self._drop_from_tables(sub)
        escaped: BaseException | None = None
        for sub in doomed:
            try:
                sub.end()
            except Exception as exc:  # an owner's bug must not keep the others open
                _report_hook_error(loop, exc, "aiosig could not close a subscription")
            except BaseException as exc:  # KeyboardInterrupt: after the others, as it came
                escaped = escaped or exc
        if escaped is not None:
            raise escaped

    def _install(self, signums: Iterable[int]) -> None:
        """Main thread only, inside `_changing`: take a reference on each signal."""
        self._own_fd()
        done: list[int] = []
        try:
            for signum in signums:
                if not self._disp.holds(signum):
                    self._reader.take_orphans(signum)  # what came before is not ours
                self._disp.take(signum)
                done.append(signum)
        except BaseException:
            self._release_now(done)
            raise

    def release(self, signums: Iterable[int], holder: Reservation | None = None) -> None:
        """Drop a reference on each signal (from another thread: on the main thread's loop).

        `holder`, if given, is marked closed in the same change, once: an interrupt cannot
        separate the two.
        """
        with self._changing():
            if holder is not None:
                if holder.closed:
                    return
                holder.closed = True
            if is_main_thread():
                self._release_now(signums)
                self._release_pending()
                return
            self._pending_release.extend(signums)
        loop = self._main_loop() if self._main_loop else None
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._release_pending_now)

    def _release_pending_now(self) -> None:
        with self._changing():
            self._release_pending()

    def _release_pending(self) -> None:
        pending, self._pending_release = self._pending_release, []
        if pending:
            self._release_now(pending)

    def _release_now(self, signums: Iterable[int]) -> None:
        """Main thread, inside `_changing`: drop a reference on each signal."""
        released = [signum for signum in signums if self._disp.drop(signum)]
        if self._owning and not self._disp.held:
            self._restore_fd()
        elif released and self._pipe is not None:
            self._reader.read_all(self._pipe)  # count what came with nobody to take it
        for signum in released:
            self._raise_orphans(signum)

    def _raise_orphans(self, signum: int) -> None:
        """Deliveries nobody received take the restored default action (Rule 4).

        A standard signal once however many (the kernel would have merged them), a real-time
        one once per delivery.
        """
        orphans = self._reader.take_orphans(signum)
        if not orphans or self._disp.holds(signum):
            return
        if signal.getsignal(signum) != signal.SIG_DFL or signum not in DEFAULT_TERMINATES:
            return
        for _ in range(orphans if signum >= signal.SIGRTMIN else 1):
            signal.raise_signal(signum)

    def _restore_fd(self) -> None:
        assert self._pipe is not None
        self._owning = False
        self._reader.adopt_thieves()
        put_back = self._put_back_fd()
        # Bytes still in the pipe belong to the previous owners' signals: hand them over.
        self._reader.read_all(self._pipe)
        self._reader.reset()
        if put_back:
            self._chains.close()
        else:
            # Someone holds the fd now. If they later put back what they found (our pipe),
            # the pipe stands for the chain, kept until the next entry point heals it.
            self._stale_fd_watch = True

    def _put_back_fd(self) -> bool:
        """Give the wakeup fd to the chain's top if our pipe holds it; True if it did."""
        assert self._pipe is not None
        target = self._chains.top
        cur = signal.set_wakeup_fd(target.fd, warn_on_full_buffer=target.warn_on_full_buffer)
        if cur == self._pipe.w:
            return True
        signal.set_wakeup_fd(cur)  # someone else's: theirs stays
        return False

    def _heal_fd(self) -> None:
        """Our pipe put back after we let go (a library restored what it saved): undo it."""
        if self._stale_fd_watch and not self._owning and self._put_back_fd():
            self._stale_fd_watch = False
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
        on_end: Callable[[], object] | None = None,
        deliver_many: DeliverMany | None = None,
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
            on_end: Called instead of closing the subscription when its loop shuts down, so
                that its owner closes it (reporting what it did not consume).
            deliver_many: Called as ``deliver_many(info, count)`` for `count` deliveries of
                one signal in a row, if the owner can take them at once (a buffer); by
                default `deliver` is called `count` times.

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
        reason = refusal(signums, loop)
        if reason is not None:
            raise RuntimeError(reason)
        sub = Subscription(self, signums, deliver, loop, chain, in_handler, on_end, deliver_many)
        if is_main_thread():
            with self._changing():
                self._audit()
                self._install(signums)
                try:
                    self._attach(sub)
                except BaseException:
                    self._release_now(signums)
                    raise
            self._main_loop = weakref.ref(loop)
            return sub
        self._acquire_from_thread(signums)
        try:
            with self._lock:
                self._attach(sub)
        except BaseException:
            self.release(signums)
            raise
        return sub

    def _attach(self, sub: Subscription) -> None:
        self._add_reader(sub.loop)
        for s in sub.signals:
            self._subs[s].add(sub)

    def reserve(self, signals: Iterable[int]) -> Reservation:
        """Install `signals` from the main thread without a loop, for loops in other threads.

        A delivery that arrives while no loop subscribes is held until the reservation
        closes; then, if the disposition is the default action, the signal is raised again.
        Close the reservation after the other threads' subscriptions.
        """
        signums = frozenset(check_signal(s) for s in signals)
        if not is_main_thread():
            raise RuntimeError(
                "aiosig.reserve() installs signal handlers: call it from the main thread."
            )
        with self._changing():
            self._audit()
            self._install(signums)
        return Reservation(self, signums)

    def _acquire_from_thread(self, signums: frozenset[int]) -> None:
        with self._lock:
            if all(self._disp.refs[s] for s in signums):
                for s in signums:
                    self._disp.take(s)  # held already: only a count, no system call
                return
        self._install_from_main_thread(signums)

    def _install_from_main_thread(self, signums: frozenset[int]) -> None:
        main = self._main_loop() if self._main_loop else None
        if main is None or main.is_closed() or not main.is_running():
            names = ", ".join(sorted(signal_name(s) for s in signums))
            raise RuntimeError(
                f"only the main thread can install signal handlers, and no main-thread loop "
                f"that uses aiosig is running: call aiosig.reserve({names}) in the main "
                "thread first, or subscribe there."
            )
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def install() -> None:
            with self._changing():
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
                f"{_MAIN_THREAD_INSTALL_TIMEOUT:g} s (is it blocked?); call aiosig.reserve() "
                "in the main thread first."
            ) from None

    def unsubscribe(self, sub: Subscription, unconsumed: Iterable[SigInfo] = ()) -> None:
        """Close `sub` (its ``close()`` calls this): see `Subscription.close`."""
        # One change, tables and references together: an interrupt between the two would
        # leave references that no subscription holds.
        with self._changing():
            if sub.closed:
                return
            sub.closed = True
            self._drop_from_tables(sub)
            for info in unconsumed:
                signum = int(info.si_signo)
                if info.synthetic:
                    continue  # no signal was sent: there is nothing to raise again
                if all(loop.is_closed() for loop in self._subs[signum].loops):
                    self._reader.orphan(signum)  # nobody else saw it: see Rule 4
            self.release(sub.signals)

    def _drop_from_tables(self, sub: Subscription) -> None:
        """Stop delivering to `sub` (the hub's lock held); the references stay."""
        for s in sub.signals:
            self._subs[s].discard(sub)
        if sub.attached:
            sub.attached = False
            loop = sub.loop
            if loop.is_running() and not in_loop_thread(loop) and not loop.is_closed():
                # The count and the reader change together, on the loop's thread, so that a
                # subscription made there meanwhile keeps its reader.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._remove_reader, loop)
            else:
                self._remove_reader(loop)

    def _add_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._pipe is not None
        self._loops.add(loop, self._pipe.r)

    def _remove_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:  # also called on the loop's own thread (call_soon_threadsafe)
            if self._pipe is not None:
                self._loops.remove(loop, self._pipe.r)

    def _at_exit(self) -> None:
        """The interpreter exits: loops that are not running never will again (Rule 4).

        Their subscriptions end as a loop's do when it shuts down, so that a delivery a
        receiver buffered and nobody consumed still takes its default action (a SIGTERM
        terminates), whether the loop was closed without shutting down or left open.
        """
        if not is_main_thread():
            return
        with self._changing():
            self._prune_closed_loops()
            for loop in self._loops.idle():
                self._end_loop_subscriptions(loop)

    def _loop_shutting_down(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop shuts down its async generators: its subscriptions end (Rule 4)."""
        with self._changing():
            self._end_loop_subscriptions(loop)

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
        deliver_batches(batches, loop)

    def inject(self, info: SigInfo) -> int:
        """Hand `info` to every live subscription of its signal, as the reader hands a delivery.

        Each subscription gets it on its own loop, through the same batches as a delivery read
        from the pipe, so what runs is what a real one runs (``aiosig.testing.deliver``). No OS
        state is read or changed, and nothing else a real delivery does happens: no
        trampoline, ``in_handler`` hook, chaining or orphan counting. Any thread.

        Returns:
            How many subscriptions it was handed to.
        """
        batches: Batches = {}
        with self._lock:  # the members' per-loop view is rebuilt under it
            by_loop = self._subs[int(info.si_signo)].by_loop()
        for loop, subs in by_loop.items():
            if not loop.is_closed():
                batches[loop] = [(subs, info, 1)]
        send_batches(batches)  # queued even for the calling loop, as a read wakeup would be
        return sum(len(subs) for batch in batches.values() for subs, _, _ in batch)

    # ---- aiosig.core support (main thread; the caller validated the arguments) ------------

    def holds(self, signum: int) -> bool:
        """True while the hub's trampoline manages `signum`."""
        return self._disp.holds(signum)

    def user_handler(self, signum: int) -> Handler:
        """The handler the process would have for `signum` without aiosig."""
        return self._disp.behind(signum)

    def set_user_handler(self, signum: int, handler: Handler) -> Handler:
        """Set the handler the trampoline chains to; return the previous one."""
        with self._changing():
            self._audit()
            return self._disp.set_behind(signum, handler)

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
        with self._changing():
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
        with contextlib.suppress(ValueError, OSError, TypeError):
            self._disp.forget()  # nothing is pending in a new child
        for members in self._subs:
            for sub in members.snapshot():
                sub.closed = True  # closing one in the child must not touch the new hub
        self._chains.close()
        pipe.close()
        self._pipe = None
        self._owning = False
        self._subs[:] = [Members() for _ in range(_NSIG)]  # in place: the reader shares it
        self._loops.clear()


def _report_hook_error(
    loop: asyncio.AbstractEventLoop,
    exc: BaseException,
    message: str = "aiosig in_handler hook failed",
) -> None:
    loop.call_exception_handler({"message": message, "exception": exc})


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


def reserve(*signals: int) -> Reservation:
    """Install `signals` from the main thread, for event loops in other threads.

    Only the main thread can install signal handlers. A loop in another thread subscribes to
    a signal the hub already holds at once; otherwise the main thread's loop installs it, and
    with no main-thread loop using aiosig, reserve the signals first. A delivery that
    arrives while no loop subscribes is held until the reservation closes; then, if the
    disposition is the default action, the signal is raised again.

    Use it as ``with aiosig.reserve(SIGTERM): ...`` around the threads' work, or close the
    returned `Reservation` after their subscriptions closed.

    Raises:
        RuntimeError: Not called from the main thread.
        ValueError, TypeError, OSError: A bad signal, as ``signal.signal`` raises.
    """
    return get_hub().reserve(signals)


def _after_fork_in_child() -> None:
    global _hub, _hub_lock
    _hub_lock = threading.Lock()  # another thread may have held it at the fork
    hub, _hub = _hub, None
    if hub is not None:
        hub._after_fork_in_child()


def _at_exit() -> None:
    hub = _hub
    if hub is not None:
        hub._at_exit()


# Their places were taken when aiosig was imported (_process_hooks): at exit, after the
# atexit hooks of whatever imports aiosig; in a forked child, before its fork hooks.
_process_hooks.at_exit("hub", _at_exit)
_process_hooks.after_fork_in_child("hub", _after_fork_in_child)
