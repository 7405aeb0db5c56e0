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
checked here, in the stdlib's order and with its messages: CPython 3.11's ``signal.py``
wrapper, then Argument Clinic's or ``PyArg_Parse``'s int conversion, then the checks of
``Modules/signalmodule.c``. Rejected: calling the real ``signal.signal`` to validate and
putting the trampoline back, because a signal arriving in between would run the wrong
handler; calling ``set_wakeup_fd`` to validate, because bytes written in between would go to
the wrong fd. ``tests/test_core.py`` compares every error with the running stdlib's.

  Known difference: ``set_wakeup_fd`` is a C function in the stdlib, so a wrong number of
  arguments is a TypeError worded by C's argument parser there ("takes at most 1 positional
  argument (2 given)") and by Python's here; the type is the same.
"""

from __future__ import annotations

import operator
import os
import signal as _stdlib
import struct
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeAlias, TypeVar

from . import _timers
from ._dispositions import unwrap
from ._hub import get_hub

__all__ = ("getsignal", "set_wakeup_fd", "signal")

# The stdlib's own parameter types (typeshed's ``_SIGNUM`` and ``_HANDLER``).
_SIGNUM: TypeAlias = int | _stdlib.Signals
_HANDLER: TypeAlias = Callable[[int, FrameType | None], Any] | int | _stdlib.Handlers | None
_F = TypeVar("_F", bound=Callable[..., Any])

_INT_BITS = struct.calcsize("i") * 8
_INT_MIN, _INT_MAX = -(1 << (_INT_BITS - 1)), (1 << (_INT_BITS - 1)) - 1
_LONG_BITS = struct.calcsize("l") * 8
_LONG_MIN, _LONG_MAX = -(1 << (_LONG_BITS - 1)), (1 << (_LONG_BITS - 1)) - 1
_SIG_DFL, _SIG_IGN = int(_stdlib.SIG_DFL), int(_stdlib.SIG_IGN)


def _stdlib_doc(original: Callable[..., Any]) -> Callable[[_F], _F]:
    """Give the replacement the stdlib function's docstring, and its public module's name."""

    def decorate(replacement: _F) -> _F:
        replacement.__doc__ = original.__doc__
        replacement.__module__ = "aiosig.core"
        replacement.__name__ = replacement.__qualname__ = original.__name__
        return replacement

    return decorate


# ---- conversions, exactly as the stdlib does them -----------------------------------------


def _enum_to_int(value: object) -> object:
    # signal.py's wrapper applies int() to both arguments where int() works, so that
    # signal("10", 1.0) sets SIGUSR1 to SIG_IGN; where it fails the value goes on unchanged.
    try:
        return int(value)  # type: ignore[call-overload]
    except (ValueError, TypeError):
        return value


def _int_to_enum(handler: object) -> _HANDLER:
    # signal.py returns Handlers members for 0 and 1, and anything else as it is.
    try:
        return _stdlib.Handlers(handler)  # type: ignore[arg-type]
    except ValueError:
        return handler  # type: ignore[return-value]


def _clinic_int(value: object) -> int:
    """Convert like Argument Clinic's ``int`` converter (signal, getsignal)."""
    number = int(operator.index(value))  # type: ignore[arg-type]
    if not _INT_MIN <= number <= _INT_MAX:
        raise OverflowError("Python int too large to convert to C int")
    return number


def _parse_int(value: object) -> int:
    """Convert like ``PyArg_ParseTupleAndKeywords``'s ``i`` format (set_wakeup_fd)."""
    number = int(operator.index(value))  # type: ignore[arg-type]
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise OverflowError("Python int too large to convert to C long")
    if number > _INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if number < _INT_MIN:
        raise OverflowError("signed integer is less than minimum")
    return number


# ---- checks, in signalmodule.c's order ----------------------------------------------------


def _check_main_thread(function: str) -> None:
    # The stdlib also refuses subinterpreters; those never reach this check, because a hub
    # in a subinterpreter cannot install anything and so holds nothing (Rule 1 applies).
    if threading.get_ident() != threading.main_thread().ident:
        raise ValueError(f"{function} only works in main thread of the main interpreter")


def _check_signal_args(signum: int, action: object) -> None:
    _check_main_thread("signal")
    if not 1 <= signum < _stdlib.NSIG:
        raise ValueError("signal number out of range")
    if not (callable(action) or (type(action) is int and action in (_SIG_DFL, _SIG_IGN))):
        raise TypeError(
            "signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object"
        )


def _check_wakeup_fd(fd: int) -> None:
    _check_main_thread("set_wakeup_fd")
    if fd != -1:
        os.fstat(fd)  # OSError (EBADF...) exactly as the stdlib's _Py_fstat raises it
        if os.get_blocking(fd):
            raise ValueError(f"the fd {fd} must be in non-blocking mode")


# ---- the replacements ---------------------------------------------------------------------


@_stdlib_doc(_stdlib.signal)
def signal(signalnum: _SIGNUM, handler: _HANDLER) -> _HANDLER:
    signum = _clinic_int(_enum_to_int(signalnum))
    action = _enum_to_int(handler)
    hub = get_hub()
    if not hub.holds(signum):
        # A trampoline of aiosig's put back by someone who saved it stands for its "behind".
        return _int_to_enum(unwrap(_stdlib.signal(signum, action)))  # type: ignore[arg-type]
    _check_signal_args(signum, action)
    # Stored as the stdlib stores it (SIG_DFL as the int 0), so that getsignal() and the
    # hub's restore on release see what the stdlib would have.
    return _int_to_enum(hub.set_user_handler(signum, action))  # type: ignore[arg-type]


@_stdlib_doc(_stdlib.getsignal)
def getsignal(signalnum: _SIGNUM) -> _HANDLER:
    signum = _clinic_int(signalnum)
    hub = get_hub()
    if hub.holds(signum):
        return _int_to_enum(hub.user_handler(signum))
    return _int_to_enum(unwrap(_stdlib.getsignal(signum)))


@_stdlib_doc(_stdlib.set_wakeup_fd)
def set_wakeup_fd(fd: int, /, *, warn_on_full_buffer: bool = True) -> int:
    hub = get_hub()
    if not hub.owns_wakeup_fd():
        return _stdlib.set_wakeup_fd(fd, warn_on_full_buffer=warn_on_full_buffer)
    # Both arguments are converted while parsing, before the main-thread check.
    fdnum = _parse_int(fd)
    warn = bool(warn_on_full_buffer)
    _check_wakeup_fd(fdnum)
    return hub.set_user_wakeup_fd(fdnum, warn)


# The itimer functions: while aiosig's timers share a kernel timer, they read and set the
# user's own (virtual) timer; otherwise they are the stdlib's (see aiosig._timers, Rule 3).
alarm = _stdlib_doc(_stdlib.alarm)(_timers.core_alarm)
setitimer = _stdlib_doc(_stdlib.setitimer)(_timers.core_setitimer)
getitimer = _stdlib_doc(_stdlib.getitimer)(_timers.core_getitimer)
