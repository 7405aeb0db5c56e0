"""The three functions of `aiosig.core` that differ from the stdlib's: the hub-aware
``signal``, ``getsignal`` and ``set_wakeup_fd``.

Theory of operation
-------------------
Rule 1 (nothing changes while the hub is idle): when the hub holds neither the signal nor the
wakeup fd, each function hands its arguments to the stdlib function, whose results and errors
are then the stdlib's by construction.

Rule 2 (while the hub holds something, the user sees the world without aiosig): ``getsignal``
reports the handler the user set (not the hub's trampoline), ``signal`` replaces that handler
(the trampoline stays, and chains to it), and ``set_wakeup_fd`` replaces the fd the hub
forwards bytes to (the hub's pipe stays the real one).

Rule 3 (validate like the stdlib, without calling it): on the hub's path the arguments are
converted and checked by ``aiosig._convert``, in the stdlib's order and with its messages.
Rejected: calling the real ``signal.signal`` to validate and putting the trampoline back,
because a signal arriving in between would run the wrong handler; calling ``set_wakeup_fd``
to validate, because bytes written in between would go to the wrong fd.
``tests/test_core.py`` and ``tests/test_bad_input.py`` compare every error with the running
stdlib's.

  Known difference: ``set_wakeup_fd`` is a C function in the stdlib, so a wrong number of
  arguments is a TypeError worded by C's argument parser there ("takes at most 1 positional
  argument (2 given)") and by Python's here; the type is the same.
"""

from __future__ import annotations

import signal as _stdlib
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeAlias, TypeVar

from . import _timers
from ._convert import (
    c_int,
    check_signal_call,
    check_wakeup_fd,
    enum_to_int,
    handler_to_enum,
    parse_int,
)
from ._dispositions import unwrap
from ._hub import get_hub

__all__ = ("getsignal", "set_wakeup_fd", "signal")

# The stdlib's own parameter types (typeshed's ``_SIGNUM`` and ``_HANDLER``).
_SIGNUM: TypeAlias = int | _stdlib.Signals
_HANDLER: TypeAlias = Callable[[int, FrameType | None], Any] | int | _stdlib.Handlers | None
_F = TypeVar("_F", bound=Callable[..., Any])


def _stdlib_doc(original: Callable[..., Any]) -> Callable[[_F], _F]:
    """Give the replacement the stdlib function's docstring, and its public module's name."""

    def decorate(replacement: _F) -> _F:
        replacement.__doc__ = original.__doc__
        replacement.__module__ = "aiosig.core"
        replacement.__name__ = replacement.__qualname__ = original.__name__
        return replacement

    return decorate


# ---- the replacements ---------------------------------------------------------------------


@_stdlib_doc(_stdlib.signal)
def signal(signalnum: _SIGNUM, handler: _HANDLER) -> _HANDLER:
    # signal.py's wrapper applies int() to both arguments before the C function converts
    # the number: an int() error of the handler comes first.
    number, action = enum_to_int(signalnum), enum_to_int(handler)
    signum = c_int(number)
    hub = get_hub()
    if not hub.holds(signum):
        # A trampoline of aiosig's put back by someone who saved it stands for its "behind".
        return handler_to_enum(unwrap(_stdlib.signal(signum, action)))  # type: ignore[arg-type]
    check_signal_call(signum, action)
    # Stored as the stdlib stores it (SIG_DFL as the int 0), so that getsignal() and the
    # hub's restore on release see what the stdlib would have.
    return handler_to_enum(hub.set_user_handler(signum, action))  # type: ignore[arg-type]


@_stdlib_doc(_stdlib.getsignal)
def getsignal(signalnum: _SIGNUM) -> _HANDLER:
    signum = c_int(signalnum)
    hub = get_hub()
    if hub.holds(signum):
        return handler_to_enum(hub.user_handler(signum))
    return handler_to_enum(unwrap(_stdlib.getsignal(signum)))


@_stdlib_doc(_stdlib.set_wakeup_fd)
def set_wakeup_fd(fd: int, /, *, warn_on_full_buffer: bool = True) -> int:
    hub = get_hub()
    if not hub.owns_wakeup_fd():
        return _stdlib.set_wakeup_fd(fd, warn_on_full_buffer=warn_on_full_buffer)
    # Both arguments are converted while parsing, before the main-thread check.
    fdnum = parse_int(fd)
    warn = bool(warn_on_full_buffer)
    check_wakeup_fd(fdnum)
    return hub.set_user_wakeup_fd(fdnum, warn)


# The itimer functions: while aiosig's timers share a kernel timer, they read and set the
# user's own (virtual) timer; otherwise they are the stdlib's (see aiosig._timers, Rule 3).
alarm = _stdlib_doc(_stdlib.alarm)(_timers.core_alarm)
setitimer = _stdlib_doc(_stdlib.setitimer)(_timers.core_setitimer)
getitimer = _stdlib_doc(_stdlib.getitimer)(_timers.core_getitimer)
