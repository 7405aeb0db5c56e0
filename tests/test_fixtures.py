"""The shared fixtures and helpers do what the other tests rely on them to do."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop

from tests import _signal_state
from tests._util import finish, run_child, send_from_child

# ---- process_signal_state ---------------------------------------------------------------


def _ignore(signum: int, frame: object) -> None:
    return None


def test_changes_names_a_leaked_disposition_with_before_and_after() -> None:
    before = _signal_state.snapshot()
    signal.signal(signal.SIGUSR1, _ignore)
    try:
        changed = _signal_state.changes(before, _signal_state.snapshot())
    finally:
        assert _signal_state.restore(before) == []
    assert changed == [f"SIGUSR1 disposition: before=SIG_DFL, after={_ignore!r}"]
    assert _signal_state.changes(before, _signal_state.snapshot()) == []


def test_changes_names_a_changed_wakeup_fd() -> None:
    before = _signal_state.snapshot()
    r, w = socket.socketpair()
    fd = w.fileno()
    try:
        w.setblocking(False)
        signal.set_wakeup_fd(fd)
        changed = _signal_state.changes(before, _signal_state.snapshot())
        assert _signal_state.restore(before) == []
    finally:
        signal.set_wakeup_fd(before.wakeup_fd.fd)
        r.close()
        w.close()
    assert len(changed) == 1
    assert changed[0].startswith(f"wakeup fd: before={before.wakeup_fd}, after={fd} (file ")
    assert _signal_state.changes(before, _signal_state.snapshot()) == []


def test_changes_names_newly_blocked_signals() -> None:
    before = _signal_state.snapshot()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGRTMIN + 1})
    try:
        changed = _signal_state.changes(before, _signal_state.snapshot())
    finally:
        assert _signal_state.restore(before) == []
    assert len(changed) == 1
    assert changed[0].startswith(
        "signal mask: blocked since: [SIGUSR2, SIGRTMIN+1], unblocked since: []"
    )
    assert _signal_state.changes(before, _signal_state.snapshot()) == []


def test_changes_is_empty_for_an_untouched_process() -> None:
    assert _signal_state.changes(_signal_state.snapshot(), _signal_state.snapshot()) == []


def _inner_session(pytester: pytest.Pytester, conftest: str) -> None:
    """Lay out a pytest session in pytester's directory with our settings and `conftest`."""
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = strict
        asyncio_default_fixture_loop_scope = function
        """
    )
    pytester.makeconftest(conftest)


def test_signal_state_fixture_fails_a_leaking_test_and_restores(pytester: pytest.Pytester) -> None:
    _inner_session(pytester, "from tests.conftest import process_signal_state, signal_state_guard")
    pytester.makepyfile(
        """
        import signal

        def test_leaks_a_disposition():
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)

        def test_clean():
            assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the test left process-wide signal state changed:*",
            "*SIGUSR2 disposition: before=SIG_DFL, after=SIG_IGN*",
        ]
    )
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL


# ---- loops ------------------------------------------------------------------------------


def _assert_loop_matches_id(loop: asyncio.AbstractEventLoop, node_name: str) -> None:
    if node_name.endswith("[uvloop]"):
        assert type(loop) is uvloop.Loop
    else:
        assert node_name.endswith("[asyncio]"), node_name
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert not isinstance(loop, uvloop.Loop)


@pytest.mark.asyncio
async def test_async_test_runs_on_the_loop_named_in_its_id(request: pytest.FixtureRequest) -> None:
    _assert_loop_matches_id(asyncio.get_running_loop(), request.node.name)


def test_loop_factory_makes_the_loop_named_in_the_test_id(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], request: pytest.FixtureRequest
) -> None:
    loop = loop_factory()
    try:
        _assert_loop_matches_id(loop, request.node.name)
    finally:
        loop.close()


def test_every_async_test_is_collected_once_per_loop(pytester: pytest.Pytester) -> None:
    _inner_session(pytester, "from tests.conftest import pytest_asyncio_loop_factories")
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        import uvloop

        @pytest.mark.asyncio
        async def test_loop(request):
            is_uvloop = type(asyncio.get_running_loop()) is uvloop.Loop
            assert is_uvloop == request.node.name.endswith("[uvloop]")
        """
    )
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(
        ["*test_loop[[]asyncio[]] PASSED*", "*test_loop[[]uvloop[]] PASSED*"]
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_timeout_thread_blocks_every_signal() -> None:
    timers = [t for t in threading.enumerate() if t.name.startswith("pytest_timeout ")]
    assert len(timers) == 1
    status = Path(f"/proc/self/task/{timers[0].native_id}/status").read_text()
    blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:"))[7:], 16)
    for signum in (signal.SIGUSR1, signal.SIGTERM, signal.SIGALRM, signal.SIGRTMIN):
        assert blocked & (1 << (signum - 1)), _signal_state.signal_name(signum)


# ---- children ---------------------------------------------------------------------------

_WAIT_FOR_SIGUSR1 = """\
import signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print("READY")
info = signal.sigwaitinfo({signal.SIGUSR1})
print(info.si_signo, info.si_pid)
"""


def test_run_child_and_send_from_child_deliver_a_signal_with_the_senders_pid() -> None:
    child = run_child(_WAIT_FOR_SIGUSR1)
    send_from_child(child.pid, signal.SIGUSR1)
    returncode, out, err = finish(child)
    assert (returncode, err) == (0, "")
    signo, sender = map(int, out.split())
    assert signo == signal.SIGUSR1
    assert sender not in (os.getpid(), child.pid, 0)


def test_finish_reports_death_by_signal_as_a_negative_returncode() -> None:
    child = run_child("import time\nprint('READY')\ntime.sleep(30)")
    send_from_child(child.pid, signal.SIGTERM)
    returncode, _, _ = finish(child)
    assert returncode == -signal.SIGTERM


def test_run_child_keeps_what_came_before_ready_apart() -> None:
    child = run_child("print('hello')\nprint('READY')\nprint('after')")
    returncode, out, _ = finish(child)
    assert (returncode, child.before_ready, out) == (0, "hello\n", "after\n")


def test_run_child_fails_with_the_output_of_a_child_that_exits_before_ready() -> None:
    with pytest.raises(AssertionError, match=r"before printing READY \(returncode 1\)[\s\S]*boom"):
        run_child("import sys\nsys.exit('boom')")


def test_run_child_fails_when_ready_does_not_come_in_time() -> None:
    with pytest.raises(AssertionError, match=r"did not print READY within 0\.2 s"):
        run_child("import time\ntime.sleep(30)", timeout=0.2)


_PRINT_MASK = """\
import signal
print("READY")
print(signal.SIGUSR2 in signal.pthread_sigmask(signal.SIG_BLOCK, []))
"""


@pytest.mark.parametrize(
    ("inherit_mask", "expected"), [(False, "False\n"), (True, "True\n")], ids=["empty", "inherited"]
)
def test_run_child_gives_the_child_an_empty_mask_unless_asked_to_inherit(
    inherit_mask: bool, expected: str
) -> None:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        child = run_child(_PRINT_MASK, inherit_mask=inherit_mask)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    assert finish(child)[:2] == (0, expected)
