"""Dispositions: which signals the hub manages, through which trampoline, and what is behind it.

Theory of operation
-------------------
Rule 1 (one trampoline object per installation): the hub installs a fresh `Trampoline` each
time it puts one in place, and that object carries ``behind``: the disposition the process
would have without aiosig. There is no second table of "the user's handler": what the
trampoline that is installed chains to is the truth, and ``aiosig.core.getsignal`` reports it.

Rule 2 (others save and restore around us, in any order). Libraries do
``old = signal.signal(SIGTERM, mine)`` and later ``signal.signal(SIGTERM, old)``; ``old`` is
then one of our trampolines. Every case follows from Rule 1:

- someone installed a handler over our trampoline: it is theirs. At the next audit the hub
  puts a new trampoline in front of it (``behind`` = their handler), so subscriptions keep
  hearing the signal and their handler is still called;
- someone put back an older trampoline of ours (they restore what they saved): its
  ``behind`` is what was there before their handler, so their handler is no longer chained
  to, and that trampoline becomes the current one;
- at release, the installed disposition decides: a trampoline of ours is replaced by its
  ``behind``; anybody else's handler stays (its owner still holds it), and the signal is
  watched: if its owner later puts back one of our trampolines, that trampoline is *stale*.
  A stale trampoline heals itself on its first delivery (it installs its ``behind`` and acts
  as it would have) and the next audit heals it too;
- a trampoline is never anyone's ``behind``: installing over one unwraps it.

So whatever the order of installs and restores, the disposition left is one that somebody
owns, a handler its owner replaced is not chained to, and no delivery is swallowed by a
trampoline with nobody behind it.

Rule 3 (restoring must not discard pending signals): setting SIG_IGN, or SIG_DFL where the
default is to ignore, makes the kernel discard pending instances of a blocked signal that a
later sigwait is entitled to. Such a restore is *deferred*: the trampoline stays (acting as
its ``behind`` would) until the pending instances were taken.

Rule 4 (no exception in the middle of a change): every change here runs in the main thread
with every signal blocked (``_platform.signals_held``), so neither a trampoline nor another
Python-level handler (``default_int_handler``'s KeyboardInterrupt) can run between two of its
steps; deliveries arriving meanwhile run right after.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

from ._platform import C_SIGNAL
from ._subscription import Handler, signal_name

__all__ = ("DEFAULT_TERMINATES", "Dispositions", "Trampoline", "unwrap")

_NSIG = signal.NSIG
_IGNORED_BY_DEFAULT = frozenset(
    getattr(signal, n) for n in ("SIGCHLD", "SIGURG", "SIGWINCH", "SIGCONT") if hasattr(signal, n)
)
_STOP_BY_DEFAULT = frozenset(
    getattr(signal, n) for n in ("SIGTSTP", "SIGTTIN", "SIGTTOU") if hasattr(signal, n)
)
# Signals whose default action ends the process: a delivery nobody can take must not vanish.
DEFAULT_TERMINATES = frozenset(range(1, _NSIG)) - _IGNORED_BY_DEFAULT - _STOP_BY_DEFAULT

# The C function behind signal.getsignal (the reader checks every held signal on every
# wakeup). It returns SIG_DFL and SIG_IGN as the ints 0 and 1, which signal.signal takes back.
_getsignal: Callable[[int], object] = C_SIGNAL.getsignal

OnSignal = Callable[["Trampoline", int, FrameType | None], None]
Fresh = Callable[[int, Handler], Handler]


class Trampoline:
    """The handler the hub installs for a managed signal; one object per installation.

    Attributes:
        behind: What the process would have without aiosig (never a trampoline).
    """

    __slots__ = ("_on_signal", "behind")

    def __init__(self, on_signal: OnSignal, behind: Handler) -> None:
        self._on_signal = on_signal
        self.behind = behind

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self._on_signal(self, signum, frame)

    def __repr__(self) -> str:
        return f"<aiosig trampoline, behind it {self.behind!r}>"


def unwrap(handler: object) -> Handler:
    """The disposition `handler` stands for: a trampoline's ``behind``, else itself."""
    return handler.behind if type(handler) is Trampoline else handler  # type: ignore[return-value]


def discards_pending(signum: int, handler: Handler) -> bool:
    """POSIX: setting SIG_IGN, or SIG_DFL where the default is to ignore, discards pending."""
    return handler == signal.SIG_IGN or (
        handler == signal.SIG_DFL and signum in _IGNORED_BY_DEFAULT
    )


def act_as(handler: Handler, signum: int, frame: FrameType | None) -> None:
    """Do what `handler` would have done with one delivery (main thread, in a handler).

    A Python handler is called; SIG_DFL whose action ends the process ends it, with the
    signal (the disposition is set first, so the kernel's action applies); anything else
    (SIG_IGN, a default that ignores or stops) needs nothing.
    """
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL and signum in DEFAULT_TERMINATES:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


class Dispositions:
    """Per signal: the hub's references, its current trampoline and deferred restores.

    Main thread only for anything that installs (the caller holds signals, Rule 4).
    """

    def __init__(self, on_signal: OnSignal, fresh: Fresh) -> None:
        """`fresh(signum, behind)` is what to put back for `behind` (a stale Runner handler
        of a finished run becomes the default: see ``_loops.fresh_handler``)."""
        self._on_signal = on_signal
        self._fresh = fresh
        self.refs = [0] * _NSIG
        self.held: set[int] = set()  # the signals with references
        self._current: list[Trampoline | None] = [None] * _NSIG
        self._deferred: set[int] = set()
        self._watched: set[int] = set()  # released under someone's handler (Rule 2)
        self._silent: bytes | None = None  # cache of `silent`, dropped at every change

    # ---- queries (any thread) --------------------------------------------------------------

    def holds(self, signum: int) -> bool:
        """True while a trampoline of ours manages `signum` (held, or its restore deferred)."""
        return 0 < signum < _NSIG and (self.refs[signum] > 0 or signum in self._deferred)

    def behind(self, signum: int) -> Handler:
        """What the process would have for `signum` without aiosig."""
        return unwrap(signal.getsignal(signum))

    def silent(self) -> bytes:
        """The signals (as bytes) that would reach no Python handler without aiosig.

        Ours, with a trampoline in front of SIG_DFL or SIG_IGN: without aiosig, CPython would
        not catch them and no wakeup fd would hear of them, so their bytes are not forwarded
        to the previous owners (``_wakeup``, Rule 4). Cached until the next change.
        """
        if self._silent is None:
            tramps = [self._current[s] for s in (*self.held, *self._deferred)]
            self._silent = bytes(
                s
                for s, t in zip((*self.held, *self._deferred), tramps, strict=True)
                if t is not None and not callable(t.behind)
            )
        return self._silent

    # ---- references ------------------------------------------------------------------------

    def take(self, signum: int) -> None:
        """One more reference; the first installs a trampoline."""
        if self.refs[signum] == 0 and signum not in self._deferred:
            self._install(signum)
        self._deferred.discard(signum)
        self.refs[signum] += 1
        self.held.add(signum)
        self._silent = None

    def drop(self, signum: int) -> bool:
        """One reference less; True if it was the last (the disposition was restored)."""
        self.refs[signum] -= 1
        if self.refs[signum]:
            return False
        self.held.discard(signum)
        self._restore(signum)
        return True

    def _install(self, signum: int) -> None:
        if signal.getsignal(signum) is None:
            raise RuntimeError(
                f"{signal_name(signum)} has a handler that was not installed from Python, "
                "which aiosig could not put back; leave this signal to that handler."
            )
        self._put_in_front(signum)

    def _put_in_front(self, signum: int) -> None:
        tramp = Trampoline(self._on_signal, unwrap(_getsignal(signum)))
        tramp.behind = unwrap(signal.signal(signum, tramp))  # swap: the truth, not a guess
        self._current[signum] = tramp
        self._silent = None

    def _restore(self, signum: int) -> None:
        self._silent = None
        installed = _getsignal(signum)
        if type(installed) is not Trampoline:
            self._current[signum] = None
            self._watched.add(signum)  # its owner may put one of ours back later
            return
        behind = installed.behind
        if discards_pending(signum, behind) and signum in signal.sigpending():
            self._deferred.add(signum)
            return
        self._deferred.discard(signum)
        self._current[signum] = None
        signal.signal(signum, self._fresh(signum, behind))

    # ---- the user's handler (aiosig.core) --------------------------------------------------

    def set_behind(self, signum: int, handler: Handler) -> Handler:
        """Replace what the current trampoline chains to; return the old one (audited first)."""
        self.audit()
        tramp = self._current[signum]
        if tramp is None:  # the audit just completed its deferred restore: no longer ours
            return unwrap(signal.signal(signum, handler))
        old, tramp.behind = tramp.behind, handler
        self._silent = None
        return old

    # ---- audit -----------------------------------------------------------------------------

    def settled(self) -> bool:
        """True if `audit` has nothing to do: read-only, ~50 ns a held signal."""
        if self._deferred:
            return False
        current = self._current
        for signum in self.held:
            if _getsignal(signum) is not current[signum]:
                return False
        for signum in self._watched:
            if type(_getsignal(signum)) is Trampoline and not self.holds(signum):
                return False
        return True

    def audit(self) -> None:
        """Apply Rule 2 to whatever others did since the last audit; restore deferred ones."""
        if self._deferred:
            pending = signal.sigpending()
            for signum in [s for s in self._deferred if s not in pending and not self.refs[s]]:
                self._restore(signum)
        for signum in self._watched:
            installed = _getsignal(signum)
            if type(installed) is Trampoline and not self.holds(signum):
                signal.signal(signum, self._fresh(signum, installed.behind))
        for signum in list(self.held):
            installed = _getsignal(signum)
            if installed is self._current[signum]:
                continue
            if type(installed) is Trampoline:
                self._current[signum] = installed  # an older one put back by its saver
                self._silent = None
            else:
                self._put_in_front(signum)  # a handler installed over ours: chain to it

    def heal(self, tramp: Trampoline, signum: int, frame: FrameType | None) -> None:
        """A stale trampoline was called (Rule 2): put its ``behind`` back and act as it."""
        behind = self._fresh(signum, tramp.behind)
        signal.signal(signum, behind)
        act_as(behind, signum, frame)

    def forget(self) -> list[int]:
        """In a forked child: restore every disposition of ours, forget everything."""
        mine = [s for s in range(1, _NSIG) if type(_getsignal(s)) is Trampoline]
        for signum in mine:
            signal.signal(signum, unwrap(_getsignal(signum)))
        self.refs = [0] * _NSIG
        self.held.clear()
        self._current = [None] * _NSIG
        self._silent = None
        self._deferred.clear()
        self._watched.clear()
        return mine
