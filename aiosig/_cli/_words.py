"""Signals in words, both ways: names operators type, and what a delivery's siginfo says.

Names are accepted as ``kill`` and ``kill -l`` spell them: ``SIGTERM``, ``TERM``, ``term``,
``15``, ``RTMIN+2``, ``SIGRTMAX-1``. Real-time signals are printed as ``SIGRTMIN+k`` (the
stdlib has names only for the first and the last). The ``si_code`` values are Linux's
(``<asm-generic/siginfo.h>``); the stdlib exposes only the ``CLD_*`` ones.
"""

from __future__ import annotations

import os
import re
import signal

from .._siginfo import SigInfo

__all__ = ("SignalNameError", "describe_code", "parse_signal", "signal_name", "signal_set")


class SignalNameError(ValueError):
    """A signal name or number that is not a signal of this system."""


_RT = re.compile(r"SIGRT(MIN|MAX)(?:([+-])(\d+))?")
_VALID = frozenset(int(s) for s in signal.valid_signals())


def parse_signal(text: str, *, allow_zero: bool = False) -> int:
    """The number of the signal `text` names: SIGTERM, TERM, term, 15, RTMIN+2.

    Raises:
        SignalNameError: No such signal here (the message says what is accepted).
    """
    word = text.strip().upper()
    number: int | None = None
    if word.isdigit():
        number = int(word)
        if number == 0 and allow_zero:
            return 0
    else:
        name = word if word.startswith("SIG") else "SIG" + word
        rt = _RT.fullmatch(name)
        if rt is not None:
            base = signal.SIGRTMIN if rt[1] == "MIN" else signal.SIGRTMAX
            offset = int(rt[3] or 0)
            number = base + offset if rt[2] != "-" else base - offset
            if not signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                number = None
        elif name in signal.Signals.__members__:
            number = int(signal.Signals[name])
    if number is None or number not in _VALID:
        raise SignalNameError(f"unknown signal {text!r} (try TERM, 15 or RTMIN+2)")
    return number


def signal_name(signo: int) -> str:
    """SIGTERM, SIGRTMIN+2, SIGRTMAX; SIG32 for a number without a name."""
    if signal.SIGRTMIN < signo < signal.SIGRTMAX:
        return f"SIGRTMIN+{signo - signal.SIGRTMIN}"
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"SIG{signo}"


def signal_set(mask: str) -> list[str]:
    """The names of the signals in a ``/proc/PID/status`` mask (hex, bit n-1 is signal n)."""
    bits = int(mask, 16)
    return [signal_name(n) for n in range(1, bits.bit_length() + 1) if bits >> (n - 1) & 1]


# si_code values of Linux's <asm-generic/siginfo.h>: (name, what it means).
SI_USER, SI_KERNEL, SI_QUEUE, SI_TIMER, SI_TKILL = 0, 0x80, -1, -2, -6
_SI_CODES = {
    SI_USER: ("SI_USER", "kill"),
    SI_KERNEL: ("SI_KERNEL", "sent by the kernel"),
    SI_QUEUE: ("SI_QUEUE", "sigqueue"),
    SI_TIMER: ("SI_TIMER", "POSIX timer"),
    -3: ("SI_MESGQ", "message queue"),
    -4: ("SI_ASYNCIO", "async I/O done"),
    -5: ("SI_SIGIO", "queued SIGIO"),
    SI_TKILL: ("SI_TKILL", "tkill/tgkill"),
    -7: ("SI_DETHREAD", "exec in a thread"),
    -60: ("SI_ASYNCNL", "name lookup done"),
}
_CLD_CODES = {
    os.CLD_EXITED: ("CLD_EXITED", "child exited with status {status}"),
    os.CLD_KILLED: ("CLD_KILLED", "child killed by {signal}"),
    os.CLD_DUMPED: ("CLD_DUMPED", "child killed by {signal}, core dumped"),
    os.CLD_TRAPPED: ("CLD_TRAPPED", "child trapped by {signal}"),
    os.CLD_STOPPED: ("CLD_STOPPED", "child stopped by {signal}"),
    os.CLD_CONTINUED: ("CLD_CONTINUED", "child continued"),
}
_POLL_CODES = {
    1: ("POLL_IN", "input ready"),
    2: ("POLL_OUT", "output possible"),
    3: ("POLL_MSG", "message ready"),
    4: ("POLL_ERR", "I/O error"),
    5: ("POLL_PRI", "urgent input"),
    6: ("POLL_HUP", "device disconnected"),
}
SENDER_CODES = frozenset((SI_USER, SI_QUEUE, SI_TKILL))
"""The codes whose si_pid and si_uid name a sending process (SIGCHLD's name the child)."""


def describe_code(info: SigInfo) -> tuple[str, str]:
    """(the si_code's name, what it means) for a delivery: ("SI_QUEUE", "sigqueue, value 7").

    A plain delivery (the wakeup-fd path) has no siginfo: ("", "plain delivery").
    """
    code = info.si_code
    if code is None:
        return "", "plain delivery, sender unknown"
    if info.si_signo == signal.SIGCHLD and code in _CLD_CODES:
        name, what = _CLD_CODES[code]
        status = info.si_status if info.si_status is not None else 0
        return name, what.format(status=status, signal=signal_name(status))
    if info.si_signo in (signal.SIGIO, signal.SIGPOLL) and code in _POLL_CODES:
        return _POLL_CODES[code]
    name, what = _SI_CODES.get(code, (str(code), f"si_code {code}"))
    if info.si_value is not None:
        what = f"{what}, value {info.si_value}"
    return name, what
