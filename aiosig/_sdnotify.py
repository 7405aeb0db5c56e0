"""sd_notify without a dependency: tell the service manager (systemd) how the service is doing.

Theory of operation
-------------------
Rule 1 (one datagram per message, to an address read from the environment): systemd passes
the address of its notification socket in ``$NOTIFY_SOCKET``: a filesystem path, or a name in
Linux's abstract namespace when it starts with ``@`` (the ``@`` stands for the leading NUL).
A message is one datagram of newline-separated ``KEY=VALUE`` assignments, sent on an
``AF_UNIX`` ``SOCK_DGRAM`` socket made for that message and closed after it, exactly as
libsystemd's ``sd_notify`` does. A datagram arrives whole or not at all, so systemd never sees
half a message, and the kernel attaches our credentials, by which systemd tells whether the
sender is the service's main process (``NotifyAccess=main``, the default). A socket per
message keeps no descriptor open: nothing to leak into children, to repair after a fork, or
to find stale. It costs one ``socket``/``sendto``/``close`` (measured: 12 µs per message,
the receiver's ``recv`` included), and messages are rare: the most frequent, WATCHDOG=1, goes
out every few seconds.

Rule 2 (never block, never raise for the manager's sake): the socket is non-blocking and
close-on-exec. When systemd is slow to read, the receiving queue fills
(bounded by ``net.unix.max_dgram_qlen``, 10 by default: 11 datagrams fit, measured; the
receiver's ``SO_RCVBUF`` hardly matters for unix datagrams): a blocking send would then stall the
event loop, which is exactly what the watchdog exists to catch. So a full queue drops the
message and the call returns False. A socket that is missing, refused, or otherwise dead
returns False too, and so does an unset ``$NOTIFY_SOCKET`` (a service started by hand): the
caller never needs to check whether it runs under systemd. Each distinct failure is logged
once, at debug, on the ``aiosig.sdnotify`` logger. A caller's mistake is different: an
assignment that is not a ``str``, has no ``KEY=``, or holds a line break or NUL (which would
split it into other assignments: systemd splits on both ``\\n`` and ``\\r``), or a message
longer than the 4096 bytes systemd reads, raises TypeError or ValueError, checked before the
environment is read, so the mistake shows on a developer's machine too.

Rule 3 (what systemd does with each message; see ``sd_notify(3)``):

=========================  ================================================================
``READY=1``                start-up is finished: a ``Type=notify`` unit becomes active and
                           the units ordered after it start
``STOPPING=1``             the service is shutting down: systemd stops waiting for READY
                           and reports the unit as deactivating
``RELOADING=1`` with       a reload has begun (``Type=notify-reload``); the timestamp on
``MONOTONIC_USEC=``        ``CLOCK_MONOTONIC`` tells a new reload from an old message; a
                           READY=1 ends the reload
``WATCHDOG=1``             the service is alive; without one within ``WatchdogSec=`` the
                           service is killed with SIGABRT (``WatchdogSignal=``)
``EXTEND_TIMEOUT_USEC=``   the current start, reload or stop takes longer: the timeout is
                           moved to at least that many microseconds from now
``STATUS=``                a line of free text shown by ``systemctl status``
=========================  ================================================================

Rule 4 (the watchdog interval is read as ``sd_watchdog_enabled`` reads it): ``$WATCHDOG_USEC``
is a positive count of microseconds; when ``$WATCHDOG_PID`` is set, the interval is ours only
if it names this process, so a child that inherited the variables does not pet the parent's
watchdog. Invalid values (not a number, 0, infinity) mean no watchdog, with a warning: systemd
will kill a service whose watchdog nobody feeds, and the warning says why nobody did.

Rule 5 (fork safety: a child must not speak for its parent). What ``sd_notify`` offers is
offered here: ``unset_environment=True`` removes ``$NOTIFY_SOCKET`` (and `watchdog_interval`'s
``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``) from the environment after reading it, so children
started later do not inherit it. A long-running service must notify many times, though, and
after ``sd_notify``'s unset it cannot notify again; so `NotifySocket.claim` reads the
variables once, unsets them by default, and keeps the address in an object bound to the
claiming process: called in a child forked later (``os.fork``, multiprocessing's fork), its
sends return False. This is the decision: the process that claims the socket is the one
that speaks for the service; its children, forked or executed, cannot by accident.

Rejected:

- the ``systemd`` (python-systemd) package, or ``sdnotify``/``cysystemd``: a C extension and
  libsystemd at run time, or a dependency for thirty lines, against the rule of no runtime
  dependencies; and the blocking send of libsystemd's ``sd_notify`` (it waits for room in the
  queue) is what Rule 2 avoids.
- one socket kept open for the process: it saves a system call or two per message, but it is
  a descriptor to manage at fork, shared by parent and child when it is inherited.
- ``connect`` then ``send``: nothing gained for one datagram, and a stale connection to
  repair if systemd re-creates its socket.
- ``vsock:`` addresses (systemd 254+, for a service manager outside a virtual machine): they
  are connection-oriented (``SOCK_SEQPACKET``) and cannot be tested here; such an address is
  treated as unusable (False, logged once), not half-supported.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field

__all__ = ("NOTIFY_MESSAGE_MAX", "NotifySocket", "notify", "watchdog_interval")

_logger = logging.getLogger("aiosig.sdnotify")

# systemd's receive buffer (NOTIFY_BUFFER_MAX, which is PIPE_BUF): a longer datagram arrives
# truncated, and recent versions ignore it.
NOTIFY_MESSAGE_MAX = 4096

# Linux spells these as type flags; elsewhere Python makes every socket close-on-exec anyway
# (PEP 446) and `_send` also calls setblocking(False).
_SOCKET_TYPE = socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0)
_SOCKET_TYPE |= getattr(socket, "SOCK_NONBLOCK", 0)
# A datagram socket raises no SIGPIPE today; systemd passes the flag too, so we do.
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)

_UINT64_MAX = 2**64 - 1  # systemd's USEC_INFINITY: "no watchdog", not a huge interval

# Failures already logged, as (address, reason): each is reported once per process.
_reported: set[tuple[str, str]] = set()


def notify(*assignments: str, unset_environment: bool = False) -> bool:
    """Send one message of ``KEY=VALUE`` assignments to ``$NOTIFY_SOCKET``, as sd_notify does.

    Args:
        *assignments: The assignments, e.g. ``"READY=1"``, ``"STATUS=Serving"``.
        unset_environment: Remove ``$NOTIFY_SOCKET`` from the environment afterwards, so
            that children do not inherit it (and this process cannot notify again).

    Returns:
        True if the message was sent; False if ``$NOTIFY_SOCKET`` is unset or unusable, or
        the socket is missing, dead or full (never raised).

    Raises:
        TypeError: An assignment is not a str, or there is none.
        ValueError: An assignment is not ``KEY=VALUE`` on one line, or the message is longer
            than systemd reads.
    """
    message = _encode(assignments)
    address = os.environ.get("NOTIFY_SOCKET")
    if unset_environment:
        os.environ.pop("NOTIFY_SOCKET", None)
    return address is not None and _send(address, message)


def watchdog_interval(*, unset_environment: bool = False) -> float | None:
    """The interval systemd expects WATCHDOG=1 within, in seconds, as sd_watchdog_enabled reads it.

    Args:
        unset_environment: Remove ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID`` afterwards.

    Returns:
        ``$WATCHDOG_USEC`` in seconds; None when it is unset or invalid, or when
        ``$WATCHDOG_PID`` names another process.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if unset_environment:
        os.environ.pop("WATCHDOG_USEC", None)
        os.environ.pop("WATCHDOG_PID", None)
    if usec is None:
        return None
    interval = _parse_unsigned(usec)
    if interval is None or interval in (0, _UINT64_MAX):
        _logger.warning("WATCHDOG_USEC=%r is not a number of microseconds; no watchdog", usec)
        return None
    if pid is not None:
        owner = _parse_unsigned(pid)
        if not owner:
            _logger.warning("WATCHDOG_PID=%r is not a process id; no watchdog", pid)
            return None
        if owner != os.getpid():
            return None
    return interval / 1_000_000


@dataclass(frozen=True)
class NotifySocket:
    """``$NOTIFY_SOCKET``, claimed by one process, which alone may send to it.

    Every method returns whether the message was sent and never raises for the socket's sake;
    without ``$NOTIFY_SOCKET`` (``address`` None) every send is a no-op returning False.

    Attributes:
        address: The value ``$NOTIFY_SOCKET`` had, or None.
        pid: The process that claimed it; a send from any other process returns False.
        watchdog_interval: Seconds within which systemd expects WATCHDOG=1, or None.
    """

    address: str | None
    pid: int = field(default_factory=os.getpid)
    watchdog_interval: float | None = None

    @classmethod
    def claim(cls, *, unset_environment: bool = True) -> NotifySocket:
        """Read ``$NOTIFY_SOCKET`` and the watchdog's variables, by default removing them.

        Args:
            unset_environment: Remove ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and
                ``$WATCHDOG_PID`` from the environment, so that no child inherits them.
        """
        address = os.environ.get("NOTIFY_SOCKET")
        if unset_environment:
            os.environ.pop("NOTIFY_SOCKET", None)
        interval = watchdog_interval(unset_environment=unset_environment)
        return cls(address, os.getpid(), interval)

    def send(self, *assignments: str) -> bool:
        """Send one message of ``KEY=VALUE`` assignments; see `notify` for what is refused."""
        message = _encode(assignments)
        if self.address is None:
            return False
        if os.getpid() != self.pid:
            detail = f"not sent from process {os.getpid()}, a child of the claiming process"
            _report_once(self.address, "forked", detail)
            return False
        return _send(self.address, message)

    def ready(self, status: str | None = None) -> bool:
        """READY=1: start-up (or a reload) is finished."""
        return self.send("READY=1", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: the shutdown has begun."""
        return self.send("STOPPING=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC=now: a reload has begun; READY=1 ends it."""
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={now}", *_status(status))

    def watchdog(self) -> bool:
        """WATCHDOG=1: the service is alive."""
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: the current start, reload or stop needs `seconds` more.

        Raises:
            TypeError: `seconds` is not a real number.
            ValueError: `seconds` is negative, infinite or NaN.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        return self.send(f"EXTEND_TIMEOUT_USEC={math.ceil(seconds * 1_000_000)}")

    def status(self, text: str) -> bool:
        """STATUS=text: one line shown by ``systemctl status``."""
        return self.send(f"STATUS={text}")


def _parse_unsigned(text: str) -> int | None:
    # Digits only: int() would also take "+5", " 5", "5_000" and other scripts' digits.
    if text.isascii() and text.isdigit() and int(text) <= _UINT64_MAX:
        return int(text)
    return None


def _status(text: str | None) -> tuple[str, ...]:
    return () if text is None else (f"STATUS={text}",)


def _encode(assignments: tuple[str, ...]) -> bytes:
    if not assignments:
        raise TypeError("notify() needs at least one KEY=VALUE assignment")
    for assignment in assignments:
        if not isinstance(assignment, str):
            raise TypeError(f"an assignment must be a str, not {type(assignment).__name__}")
        if "\n" in assignment or "\r" in assignment or "\0" in assignment:
            raise ValueError(
                f"{assignment!r} holds a line break or NUL, which would split the message; "
                "pass each KEY=VALUE as its own argument"
            )
        key, equals, _ = assignment.partition("=")
        if not key or not equals:
            raise ValueError(f"{assignment!r} is not an assignment; write it as KEY=VALUE")
    message = "\n".join(assignments).encode()
    if len(message) > NOTIFY_MESSAGE_MAX:
        raise ValueError(
            f"the message is {len(message)} bytes and systemd reads at most "
            f"{NOTIFY_MESSAGE_MAX}; shorten it (a long STATUS= text?)"
        )
    return message


def _socket_address(address: str) -> bytes | None:
    if address.startswith("/") and len(address) > 1:
        return os.fsencode(address)
    if address.startswith("@") and len(address) > 1:
        return b"\0" + os.fsencode(address[1:])
    return None


def _send(address: str, message: bytes) -> bool:
    target = _socket_address(address)
    if target is None:
        what = "vsock" if address.startswith("vsock") else "invalid"
        _report_once(address, what, "unusable address (neither /path nor @abstract)")
        return False
    try:
        with socket.socket(socket.AF_UNIX, _SOCKET_TYPE) as sock:
            sock.setblocking(False)
            sock.sendto(message, _SEND_FLAGS, target)
    except OSError as error:
        reason = errno.errorcode.get(error.errno or 0, str(error))
        _report_once(address, reason, f"message dropped: {error}")
        return False
    return True


def _report_once(address: str, reason: str, detail: str) -> None:
    if (address, reason) not in _reported:
        _reported.add((address, reason))
        _logger.debug("NOTIFY_SOCKET=%r: %s", address, detail)
