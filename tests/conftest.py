"""Fixtures every test gets: both event loops, and a guard on process-wide signal state.

Loops. Every ``@pytest.mark.asyncio`` test runs twice, ``[asyncio]`` and ``[uvloop]``, through
pytest-asyncio's ``pytest_asyncio_loop_factories`` hook (the supported way since 1.5;
overriding ``event_loop_policy`` still works there but is deprecated and warns, which
``filterwarnings = error`` turns into a failure). One test can narrow it down with
``@pytest.mark.asyncio(loop_factories=["uvloop"])``. Sync tests that make their own loops take
the ``loop_factory`` fixture, parametrised the same way.

Signal state. ``process_signal_state`` (autouse) applies ``aiosig.testing``'s
``signal_state_guard`` to every test: it fails any test that leaves a disposition, the wakeup
fd, the signal mask or an interval timer changed, naming what changed, and restores the
snapshot so that the tests after it start clean. It is set up before the test's event loop
and torn down after it is closed, so a loop's own restore on close counts.

Timeouts. pytest-timeout's "signal" method would take SIGALRM and ITIMER_REAL, which aiosig
tests exercise, so the configured method is "thread". A thread that does not block a signal
may be picked by the kernel to receive a process-directed signal that the main thread blocks
(which is how precise delivery works), so ``pytest_timeout_set_timer`` below starts the timeout
thread with every signal blocked.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import pytest_timeout
import uvloop

from aiosig.testing import signal_state_guard  # noqa: F401 (the fixture, for this directory)
from tests._util import kill_leftover_children

pytest_plugins = ("pytester",)

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

LOOP_FACTORIES: Mapping[str, LoopFactory] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def pytest_asyncio_loop_factories(item: pytest.Item) -> Mapping[str, LoopFactory]:
    """Run every async test once per loop flavour (ids ``asyncio`` and ``uvloop``)."""
    return LOOP_FACTORIES


@pytest.fixture(params=list(LOOP_FACTORIES))
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """A function that makes a new event loop: ``asyncio.new_event_loop`` or uvloop's."""
    factory: LoopFactory = LOOP_FACTORIES[request.param]
    return factory


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@pytest.fixture(autouse=True)
def process_signal_state(request: pytest.FixtureRequest) -> None:
    """Fail the test if it leaves signal state changed (the library's guard, on every test)."""
    request.getfixturevalue("signal_state_guard")


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    """Kill children of ``run_child`` that a failing test left running."""
    yield
    kill_leftover_children()


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Start pytest-timeout's "thread" timer with every signal blocked in that thread."""
    if settings.method != "thread":
        return None
    timer = threading.Timer(settings.timeout, pytest_timeout.timeout_timer, (item, settings))
    timer.name = f"pytest_timeout {item.nodeid}"
    timer.daemon = True
    # A new thread inherits the mask of the thread that starts it.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        timer.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]
    return True
