"""Synthetic deliveries: a `SigInfo` handed to this process's subscriptions, no OS involved.

Theory of operation
-------------------
Everything aiosig offers above the hub (receivers, handlers of every policy, awaitable waits,
the timers' schedulers, aiosig.run's stop signals) is a hub subscription, and a real delivery
reaches them all the same way: the hub's reader sorts it by loop, hands the other loops
theirs with ``call_soon_threadsafe`` and runs its own loop's batch. `deliver` enters at that
very point (`Hub.inject`), so code under test meets exactly what a real delivery would
bring, on the same loops and in the same order, and nothing about the OS changes: no
``kill``, no disposition, no byte in the wakeup fd, no signalfd read.

Every synthetic `SigInfo` says so (``synthetic=True``), and that is how the hub tells it from a
real one where it must: a receiver that closes with synthetic deliveries unconsumed leaves
nothing to raise again (for a real SIGTERM it would raise it, so the default action
happens).

What a delivery does *below* the subscriptions is not simulated, by design (it is the OS's
part, or the trampoline's):

- with no subscription, nothing happens (a real signal would take its disposition's action:
  the default action, an ignore, or a handler installed without aiosig);
- the handler that was installed before aiosig is not chained to (no KeyboardInterrupt for a
  synthetic SIGINT), and hooks that run inside the OS-level handler do not run (aiosig.run
  arms its deadline there for a real stop signal; a synthetic one arms it on the loop);
- plain and precise paths are one: the delivery carries what the caller gave, whether or not
  the signal is blocked, with ``precise`` False (it was not read from a signalfd), and a full
  receiver does not hold it back in the kernel's queue (it counts as an overflow instead).

Above the subscriptions everything is real: a synthetic stop signal starts aiosig.run's
shutdown; it decides no death, though (the run ends as after ``request_shutdown``).
"""

from __future__ import annotations

from ._convert import check_signal
from ._hub import get_hub
from ._platform import SI_QUEUE
from ._siginfo import SigInfo, as_signal

__all__ = ("SI_USER", "deliver")

SI_USER = 0  # kill(2)'s si_code (include/uapi/asm-generic/siginfo.h)


def deliver(
    signum: int,
    /,
    *,
    pid: int | None = None,
    uid: int | None = None,
    value: int | None = None,
    code: int | None = None,
    status: int | None = None,
    errno: int | None = None,
    band: int | None = None,
) -> int:
    """Deliver a synthetic signal to this process's aiosig subscriptions, without the OS.

    Every receiver, handler, wait and timer of `signum` gets a `SigInfo` with the given
    fields, each on its own loop, as a real delivery would reach it; nothing runs before
    control returns to those loops. With no field given, it carries only the signal number,
    as a plain (wakeup-fd) delivery does. Its ``synthetic`` is True and ``precise`` False. See
    the guide for what is not simulated.

    Args:
        signum: The signal.
        pid: ``si_pid``, the sender's process id.
        uid: ``si_uid``, the sender's real user id.
        value: ``si_value``, the ``sigqueue`` payload.
        code: ``si_code``. By default ``SI_QUEUE`` (-1) when `value` is given, ``SI_USER``
            (0, as ``kill`` sends) when `pid` or `uid` is, else None.
        status: ``si_status`` (SIGCHLD's exit status or signal).
        errno: ``si_errno``.
        band: ``si_band`` (SIGPOLL).

    Returns:
        How many subscriptions it reached (0: nobody in this process subscribes to it).

    Raises:
        TypeError, ValueError, OSError: A bad signal, as ``signal.signal`` raises.
    """
    number = check_signal(signum)
    if code is None and value is not None:
        code = SI_QUEUE
    elif code is None and (pid is not None or uid is not None):
        code = SI_USER
    info = SigInfo(
        as_signal(number),
        si_code=code,
        si_errno=errno,
        si_pid=pid,
        si_uid=uid,
        si_status=status,
        si_band=band,
        si_value=value,
        synthetic=True,
    )
    return get_hub().inject(info)
