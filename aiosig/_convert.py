"""Arguments converted exactly as CPython 3.11's ``signal`` and ``os`` modules convert them.

Theory of operation
-------------------
Rule 1 (one copy): every aiosig function that takes what a stdlib function takes converts it
here, so one bad value gets one error, the stdlib's, whichever aiosig function it reached.
Nothing here touches process state, and callers convert every argument before they
subscribe, install, arm or send: a refused call changes nothing.

Rule 2 (mirror the C code, step by step): each converter names the CPython 3.11 code it
reproduces and keeps its order of checks (the first failing check decides the error) and its
messages, odd ones included: an overflowing sigset item is reported as -1, and any
OverflowError while reading a time, even one raised by ``__index__``, becomes the
``_PyTime_t`` message. The stdlib is never called to validate: on aiosig's paths the real
call would act, not just check. ``tests/test_bad_input.py`` compares each with the running
stdlib on generated bad input.

=====================  ==================================================================
``enum_to_int``        ``Lib/signal.py``: ``_enum_to_int`` (``signal``'s two arguments)
``handler_to_enum``    ``Lib/signal.py``: ``_int_to_enum(handler, Handlers)`` (results)
``c_int``              Argument Clinic's ``int``: ``_PyLong_AsInt`` (Objects/longobject.c)
``parse_int``          ``PyArg_Parse``'s ``i`` format (Python/getargs.c): ``set_wakeup_fd``'s
                       fd, ``os.kill``'s pid
``signal_number``      ``signal.signal``'s number: the wrapper, ``c_int``, then
                       ``signal_signal_impl``'s range check (Modules/signalmodule.c)
``check_signal_call``  the rest of ``signal_signal_impl``: main thread, range, handler
``check_wakeup_fd``    ``signal_set_wakeup_fd``: main thread, ``fstat``, non-blocking
``sigset``             ``_Py_Sigset_Converter`` (Modules/posixmodule.c)
``seconds_ns``         ``_PyTime_FromSecondsObject(..., _PyTime_ROUND_CEILING)``
                       (Python/pytime.c)
``timeout_ns``         ``signal_sigtimedwait_impl``'s timeout
``timeval_us``         signalmodule.c's ``timeval_from_double`` (``setitimer``'s times)
``itimer_error``       ``setitimer``/``getitimer``: ``PyErr_SetFromErrno(ItimerError)``
``timeval_seconds``    signalmodule.c's ``double_from_timeval`` (``setitimer``'s results)
``alarm_seconds``      alarm(2)'s rounding of the time left (the kernel's, not CPython's)
=====================  ==================================================================

Rule 3 (aiosig's own refusals come after the stdlib's): `check_signal` is `signal_number`
followed by what no subscription can take (`UNCATCHABLE`, `FAULTS`), so a number the stdlib
refuses gets the stdlib's error first.

  Known difference: a wrong number of arguments, or a keyword for a positional-only
  parameter, is a TypeError worded by C's argument parser in the stdlib ("sigtimedwait
  expected 2 arguments, got 1") and by Python's in aiosig; the type is the same.
"""

from __future__ import annotations

import errno
import math
import operator
import os
import signal
import struct
import threading
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeAlias

__all__ = (
    "FAULTS",
    "UINT_MASK",
    "UNCATCHABLE",
    "alarm_seconds",
    "c_int",
    "check_main_thread",
    "check_signal",
    "check_signal_call",
    "check_wakeup_fd",
    "enum_to_int",
    "handler_to_enum",
    "itimer_error",
    "parse_int",
    "seconds_ns",
    "signal_number",
    "sigset",
    "timeout_ns",
    "timeval_seconds",
    "timeval_us",
)

Handler: TypeAlias = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_INT_BITS = struct.calcsize("i") * 8
_INT_MIN, _INT_MAX = -(1 << (_INT_BITS - 1)), (1 << (_INT_BITS - 1)) - 1
UINT_MASK = (1 << _INT_BITS) - 1  # what C's conversion to unsigned int keeps
_LONG_BITS = struct.calcsize("l") * 8
_LONG_MIN, _LONG_MAX = -(1 << (_LONG_BITS - 1)), (1 << (_LONG_BITS - 1)) - 1
# _PyTime_t is an int64 of nanoseconds; pytime_mul's overflow check divides with C's
# truncation toward zero, so whole seconds may span +/-9223372036.
_NS_PER_SEC = 1_000_000_000
_PYTIME_MIN, _PYTIME_MAX = -(2**63), 2**63 - 1
_PYTIME_SEC_MAX = _PYTIME_MAX // _NS_PER_SEC
_PYTIME_SEC_MIN = -(-_PYTIME_MIN // _NS_PER_SEC)
_PYTIME_OVERFLOW = "timestamp too large to convert to C _PyTime_t"
_TIME_T_OVERFLOW = "timestamp out of range for platform time_t"
_US = 1_000_000

_NSIG = signal.NSIG
_SIG_DFL, _SIG_IGN = int(signal.SIG_DFL), int(signal.SIG_IGN)
# The stdlib builds valid_signals() anew on each call (a set of enum members, 75 us); the
# kernel and libc agree with it on which numbers sigaddset refuses (glibc's 32 and 33).
_VALID = frozenset(int(s) for s in signal.valid_signals())

UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
"""Signals no process can catch, block or wait for (the kernel drops them from a wait set)."""

FAULTS = frozenset(
    getattr(signal, n) for n in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL") if hasattr(signal, n)
)
"""Synchronous fault signals: aiosig never installs a handler for them (see `check_signal`)."""


# ---- integers -------------------------------------------------------------------------------


def enum_to_int(value: object) -> object:
    """``int(value)`` where that works, else `value` unchanged (``Lib/signal.py``).

    So ``signal("10", 1.0)`` sets SIGUSR1 to SIG_IGN. Only ValueError and TypeError mean
    "unchanged": anything else ``int()`` raises (OverflowError for infinity) propagates.
    """
    try:
        return int(value)  # type: ignore[call-overload]
    except (ValueError, TypeError):
        return value


def handler_to_enum(handler: object) -> Handler:
    """``Handlers`` members for 0 and 1, anything else as it is (``Lib/signal.py``)."""
    try:
        return signal.Handlers(handler)  # type: ignore[arg-type]
    except ValueError:
        return handler  # type: ignore[return-value]


def c_int(value: object) -> int:
    """Argument Clinic's ``int`` converter (``_PyLong_AsInt``).

    ``__index__`` first (its TypeError, or whatever it raises, propagates), then the C int
    range, with one message for both ends.
    """
    number = operator.index(value)  # type: ignore[arg-type]
    if not _INT_MIN <= number <= _INT_MAX:
        raise OverflowError("Python int too large to convert to C int")
    return number


def parse_int(value: object) -> int:
    """``PyArg_Parse``'s ``i`` format: through a C long first, then the C int range."""
    number = operator.index(value)  # type: ignore[arg-type]
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise OverflowError("Python int too large to convert to C long")
    if number > _INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if number < _INT_MIN:
        raise OverflowError("signed integer is less than minimum")
    return number


def _as_long_and_overflow(value: object) -> int:
    """``PyLong_AsLongAndOverflow``, with an overflow reported as -1 (as the stdlib reports it)."""
    number = operator.index(value)  # type: ignore[arg-type]
    return number if _LONG_MIN <= number <= _LONG_MAX else -1


# ---- signal numbers and sets ----------------------------------------------------------------


def signal_number(signalnum: object) -> int:
    """``signal.signal``'s signal number: the wrapper's int(), ``c_int``, then the range."""
    number = c_int(enum_to_int(signalnum))
    if not 1 <= number < _NSIG:
        raise ValueError("signal number out of range")
    return number


def check_signal(signum: object) -> int:
    """Validate a signal to subscribe to: as ``signal.signal`` does, then aiosig's refusals.

    Raises:
        TypeError, OverflowError, ValueError: As ``signal.signal`` raises them.
        OSError: SIGKILL or SIGSTOP (EINVAL, as ``signal.signal`` raises it).
        ValueError: A synchronous fault signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL): a handler
            that runs on a loop, after the fact, would make a real fault loop forever.
    """
    number = signal_number(signum)
    if number in UNCATCHABLE:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    if number in FAULTS:
        raise ValueError(
            f"{signal.Signals(number).name} is a synchronous fault signal that a loop cannot "
            "handle after the fact; use the faulthandler module instead."
        )
    return number


def check_main_thread(function: str) -> None:
    """``_Py_ThreadCanHandleSignals``'s refusal.

    The stdlib also refuses subinterpreters; those never reach aiosig's checks, because a hub
    in a subinterpreter cannot install anything and so holds nothing.
    """
    if threading.get_ident() != threading.main_thread().ident:
        raise ValueError(f"{function} only works in main thread of the main interpreter")


def check_signal_call(signum: int, action: object) -> None:
    """What ``signal_signal_impl`` checks once its number is converted, in its order."""
    check_main_thread("signal")
    if not 1 <= signum < _NSIG:
        raise ValueError("signal number out of range")
    if not (callable(action) or (type(action) is int and action in (_SIG_DFL, _SIG_IGN))):
        raise TypeError(
            "signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object"
        )


def check_wakeup_fd(fd: int) -> None:
    """What ``signal_set_wakeup_fd`` checks once its fd is converted, in its order."""
    check_main_thread("set_wakeup_fd")
    if fd != -1:
        os.fstat(fd)  # OSError (EBADF...) exactly as the stdlib's _Py_fstat raises it
        if os.get_blocking(fd):
            raise ValueError(f"the fd {fd} must be in non-blocking mode")


def sigset(value: object, *, stacklevel: int) -> frozenset[int]:
    """``_Py_Sigset_Converter``: an iterable of signal numbers, item by item.

    Numbers libc refuses in a sigset_t (glibc's internal 32 and 33) are left out with the
    stdlib's RuntimeWarning, so that ``range(1, NSIG)`` keeps working.

    Args:
        value: The iterable.
        stacklevel: As for ``warnings.warn`` called by the caller of this function (2 names
            the line that called it), so the warning points where the stdlib's would.
    """
    out: set[int] = set()
    for item in iter(value):  # type: ignore[call-overload]
        number = _as_long_and_overflow(item)
        if not 1 <= number < _NSIG:
            raise ValueError(f"signal number {number} out of range [1; {_NSIG - 1}]")
        if number not in _VALID:
            warnings.warn(
                f"invalid signal number {number}, please use valid_signals()",
                RuntimeWarning,
                stacklevel=stacklevel + 1,
            )
            continue
        out.add(number)
    return frozenset(out)


# ---- times ------------------------------------------------------------------------------------


def seconds_ns(value: object) -> int:
    """``_PyTime_FromSecondsObject`` rounding up: seconds (int or float) to nanoseconds."""
    if isinstance(value, float):
        seconds = float.__float__(value)  # PyFloat_AsDouble: a subclass's own value
        if math.isnan(seconds):
            raise ValueError("Invalid value NaN (not a number)")
        ns = seconds * 1e9
        # The C code rounds, then compares doubles: ceil() of a finite double is exact, so
        # comparing its int is the same; an infinity fails the comparison there too.
        if not math.isfinite(ns) or not _PYTIME_MIN <= math.ceil(ns) <= _PYTIME_MAX:
            raise OverflowError(_TIME_T_OVERFLOW)
        return math.ceil(ns)
    try:
        whole = operator.index(value)  # type: ignore[arg-type]
    except OverflowError:
        raise OverflowError(_PYTIME_OVERFLOW) from None  # PyLong_AsLongLong's, reworded
    if not _PYTIME_SEC_MIN <= whole <= _PYTIME_SEC_MAX:  # (a long long overflow says the same)
        raise OverflowError(_PYTIME_OVERFLOW)
    return whole * _NS_PER_SEC


def timeout_ns(value: object) -> int:
    """``signal.sigtimedwait``'s timeout: `seconds_ns`, then refused if still negative.

    A tiny negative float rounds up to 0 and is accepted, as in the stdlib.
    """
    ns = seconds_ns(value)
    if ns < 0:
        raise ValueError("timeout must be non-negative")
    return ns


def timeval_us(value: object) -> int:
    """``setitimer``'s times: `seconds_ns`, then microseconds rounded up (``_PyTime_AsTimeval``).

    Negative results are the kernel's to refuse (`itimer_error`).
    """
    return -(-seconds_ns(value) // 1000)


def itimer_error() -> OSError:
    """What ``setitimer``/``getitimer`` raise when the kernel says EINVAL."""
    return signal.ItimerError(errno.EINVAL, os.strerror(errno.EINVAL))


def timeval_seconds(us: int) -> float:
    """A timeval of `us` microseconds as ``setitimer``/``getitimer`` return it.

    ``tv_sec + tv_usec / 1000000.0``, to the last bit (``tv_usec * 1e-6`` differs for a
    third of all values).
    """
    sec, usec = divmod(us, _US)
    return sec + usec / 1000000.0


def alarm_seconds(us: int) -> int:
    """What alarm(2) returns for a timer with `us` left: rounded to nearest, 1 if under 1 s."""
    sec, usec = divmod(us, _US)
    return sec + 1 if (sec == 0 and usec) or usec >= _US // 2 else sec
