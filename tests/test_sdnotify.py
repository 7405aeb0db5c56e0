"""sd_notify: exact datagrams on real unix sockets the test binds, path and abstract."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiosig._sdnotify import NOTIFY_MESSAGE_MAX, NotifySocket, notify, watchdog_interval
from tests._util import finish, run_child

ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@pytest.fixture(autouse=True)
def _no_service_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite itself may run under systemd: no test may notify the real manager.
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    """A datagram socket at a filesystem path, named by $NOTIFY_SOCKET."""
    # mktemp keeps the path short: sun_path holds 108 bytes, and tmp_path embeds the test name.
    path = tmp_path_factory.mktemp("sd") / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5.0)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


@pytest.fixture
def abstract_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket in the abstract namespace, named ``@...`` by $NOTIFY_SOCKET."""
    name = f"aiosig-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5.0)
        monkeypatch.setenv("NOTIFY_SOCKET", f"@{name}")
        yield sock


def nothing_more(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(NOTIFY_MESSAGE_MAX)
    except BlockingIOError:
        return True
    return False


def test_ready_reaches_a_socket_at_a_path(receiver: socket.socket) -> None:
    assert NotifySocket.claim().ready() is True
    assert receiver.recv(NOTIFY_MESSAGE_MAX) == b"READY=1"


def test_ready_reaches_an_abstract_socket_named_with_an_at_sign(
    abstract_receiver: socket.socket,
) -> None:
    assert notify("READY=1", "STATUS=Serving") is True
    assert abstract_receiver.recv(NOTIFY_MESSAGE_MAX) == b"READY=1\nSTATUS=Serving"


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (lambda s: s.ready("Up"), b"READY=1\nSTATUS=Up"),
        (lambda s: s.stopping(), b"STOPPING=1"),
        (lambda s: s.stopping("Draining"), b"STOPPING=1\nSTATUS=Draining"),
        (lambda s: s.watchdog(), b"WATCHDOG=1"),
        (lambda s: s.extend_timeout(1.5), b"EXTEND_TIMEOUT_USEC=1500000"),
        (lambda s: s.extend_timeout(1e-7), b"EXTEND_TIMEOUT_USEC=1"),
        (lambda s: s.status("Step 2 of 3: hooks"), b"STATUS=Step 2 of 3: hooks"),
        (lambda s: s.send("ERRNO=5", "BUSERROR=x"), b"ERRNO=5\nBUSERROR=x"),
    ],
    ids=[
        "ready",
        "stopping",
        "stopping+status",
        "watchdog",
        "extend",
        "extend-ceil",
        "status",
        "raw",
    ],
)
def test_each_message_is_one_exact_datagram(
    receiver: socket.socket, send: Callable[[NotifySocket], bool], expected: bytes
) -> None:
    assert send(NotifySocket.claim()) is True
    assert receiver.recv(NOTIFY_MESSAGE_MAX) == expected
    assert nothing_more(receiver)


def test_reloading_carries_the_monotonic_clock_in_microseconds(receiver: socket.socket) -> None:
    before = time.monotonic_ns() // 1000
    assert NotifySocket.claim().reloading() is True
    after = time.monotonic_ns() // 1000
    first, second = receiver.recv(NOTIFY_MESSAGE_MAX).decode().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_every_send_is_a_no_op_returning_false_without_notify_socket() -> None:
    manager = NotifySocket.claim()
    assert manager.address is None
    assert notify("READY=1") is False
    assert manager.ready() is False
    assert manager.stopping() is False
    assert manager.reloading() is False
    assert manager.watchdog() is False
    assert manager.extend_timeout(1) is False
    assert manager.status("x") is False


def test_a_missing_socket_returns_false_and_is_logged_once_at_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiosig.sdnotify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify("WATCHDOG=1") is False
    assert notify("WATCHDOG=1") is False
    assert NotifySocket.claim().watchdog() is False
    [record] = caplog.records
    assert record.levelno == logging.DEBUG
    assert "ENOENT" in record.getMessage() or "No such file" in record.getMessage()


def test_a_socket_nobody_reads_any_more_returns_false(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path_factory.mktemp("sd") / "dead"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))  # the file stays, the socket is closed
    assert notify("READY=1") is False


@pytest.mark.parametrize("address", ["relative/path", "@", "/", "", "vsock:2:1234"])
def test_an_unusable_address_returns_false(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert notify("READY=1") is False


FILLER = """\
from aiosig._sdnotify import notify
print("READY")
sent = [notify("WATCHDOG=1") for _ in range(200)]
print(sent.count(True), sent.index(False), all(not s for s in sent[sent.index(False):]))
"""


def test_a_full_receiving_queue_drops_messages_instead_of_blocking(
    receiver: socket.socket,
) -> None:
    # For unix datagrams the kernel bounds the queue by count (net.unix.max_dgram_qlen) more
    # than by bytes; a small SO_RCVBUF makes sure that one of the two limits is reached.
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    # In a child: were the send blocking, `finish` would kill it instead of hanging the suite.
    returncode, out, err = finish(run_child(FILLER), timeout=10)
    assert returncode == 0, err
    count, first_false, all_false_after = out.split()
    assert 0 < int(count) == int(first_false) < 200
    assert all_false_after == "True"
    receiver.recv(NOTIFY_MESSAGE_MAX)  # room for one more
    assert notify("WATCHDOG=1") is True


@pytest.mark.parametrize(
    ("assignments", "error"),
    [
        ((), TypeError),
        ((b"READY=1",), TypeError),
        ((1,), TypeError),
        (("READY",), ValueError),
        (("=1",), ValueError),
        (("STATUS=two\nlines",), ValueError),
        (("STATUS=carriage\rreturn",), ValueError),
        (("STATUS=nul\0",), ValueError),
        (("READY=1", "STATUS=" + "x" * NOTIFY_MESSAGE_MAX), ValueError),
        (("STATUS=\udcff",), ValueError),  # a lone surrogate cannot be encoded
    ],
)
def test_bad_assignments_raise_even_without_notify_socket(
    assignments: tuple[object, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        notify(*assignments)  # type: ignore[arg-type]
    with pytest.raises(error):
        NotifySocket.claim().send(*assignments)  # type: ignore[arg-type]


def test_a_message_of_exactly_the_maximum_size_is_sent(receiver: socket.socket) -> None:
    status = "STATUS=" + "x" * (NOTIFY_MESSAGE_MAX - len("STATUS="))
    assert notify(status) is True
    assert receiver.recv(NOTIFY_MESSAGE_MAX + 1) == status.encode()


@pytest.mark.parametrize(
    ("seconds", "error"),
    [(-1, ValueError), (math.inf, ValueError), (math.nan, ValueError), ("1", TypeError)],
)
def test_extend_timeout_refuses_what_is_not_a_duration(
    receiver: socket.socket, seconds: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        NotifySocket.claim().extend_timeout(seconds)  # type: ignore[arg-type]
    assert nothing_more(receiver)


def test_notify_with_unset_environment_sends_then_forgets_the_socket(
    receiver: socket.socket,
) -> None:
    assert notify("READY=1", unset_environment=True) is True
    assert "NOTIFY_SOCKET" not in os.environ
    assert notify("STOPPING=1") is False
    assert receiver.recv(NOTIFY_MESSAGE_MAX) == b"READY=1"


def test_claim_removes_the_variables_unless_asked_to_keep_them(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    kept = NotifySocket.claim(unset_environment=False)
    assert all(name in os.environ for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC"))
    claimed = NotifySocket.claim()
    assert not any(name in os.environ for name in ENVIRONMENT)
    assert kept == claimed
    assert claimed.watchdog_interval == 2.0
    assert claimed.watchdog() is True
    assert receiver.recv(NOTIFY_MESSAGE_MAX) == b"WATCHDOG=1"


FORKER = """\
import os, subprocess, sys
from aiosig._sdnotify import NotifySocket
manager = NotifySocket.claim()
print("READY")
pid = os.fork()
if pid == 0:
    os._exit(3 if manager.send("FROM=forked-child") else 0)
_, status = os.waitpid(pid, 0)
code = "from aiosig._sdnotify import notify; print(notify('FROM=executed-child'))"
executed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
print(os.waitstatus_to_exitcode(status), executed.stdout.strip(), manager.send("FROM=parent"))
"""


def test_children_forked_or_executed_cannot_notify_for_the_claiming_process(
    receiver: socket.socket,
) -> None:
    returncode, out, err = finish(run_child(FORKER))
    assert returncode == 0, err
    assert out.split() == ["0", "False", "True"]
    assert receiver.recv(NOTIFY_MESSAGE_MAX) == b"FROM=parent"
    assert nothing_more(receiver)


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("30000000", None, 30.0),
        ("500", None, 0.0005),
        ("30000000", "self", 30.0),
        ("30000000", "parent", None),
    ],
)
def test_watchdog_interval_is_read_as_sd_watchdog_enabled_reads_it(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() if pid == "self" else os.getppid()))
    assert watchdog_interval() == expected


@pytest.mark.parametrize(
    ("usec", "pid"),
    [
        ("abc", None),
        ("0", None),
        ("-5", None),
        (" 5", None),
        ("18446744073709551615", None),  # USEC_INFINITY
        ("18446744073709551616", None),
        ("1000000", "x"),
        ("1000000", "0"),
    ],
)
def test_an_invalid_watchdog_variable_means_no_watchdog_and_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    usec: str,
    pid: str | None,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert watchdog_interval() is None
    [record] = caplog.records
    assert record.levelno == logging.WARNING


def test_watchdog_interval_with_unset_environment_removes_both_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval(unset_environment=True) == 1.0
    assert "WATCHDOG_USEC" not in os.environ and "WATCHDOG_PID" not in os.environ
    assert watchdog_interval() is None
