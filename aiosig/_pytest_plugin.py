"""aiosig's pytest plugin: a guard on process-wide signal state (``aiosig.testing``).

Theory of operation
-------------------
Installed with aiosig, registered through the ``pytest11`` entry point named ``aiosig``, so
that pytest loads it in every session: it must therefore do nothing until asked. It adds
the ``signal_state_guard`` fixture (requested by name, or imported from ``aiosig.testing``
into a conftest), the ``--aiosig-guard`` option and the ``aiosig_guard`` ini setting; either
of the last two registers one more plugin object whose only content is an autouse fixture
that uses the guard in every test.

The guard captures the state (`SignalState`, ``_signal_state``) before the test and compares
after; an autouse fixture is set up before the fixtures the test asks for (an event loop),
and so torn down after them: what a loop restores when it closes counts. A test that leaves
something changed fails with one line per change, and the state is restored so that the
tests after it start clean. It only looks from the main thread (the mask is per thread and
the wakeup fd can only be read there).

This module imports pytest; nothing imports it but pytest and ``aiosig.testing`` (lazily).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from ._signal_state import SignalState

__all__ = ("pytest_addoption", "pytest_configure", "signal_state_guard")

_HELP = (
    "fail every test that leaves signal dispositions, the wakeup fd, the main thread's "
    "signal mask or an interval timer changed (aiosig), and restore them"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--aiosig-guard`` and the ``aiosig_guard`` ini setting."""
    group = parser.getgroup("aiosig")
    group.addoption("--aiosig-guard", action="store_true", default=False, help=_HELP)
    parser.addini("aiosig_guard", _HELP, type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    """Guard every test if ``--aiosig-guard`` or ``aiosig_guard = true`` asks for it."""
    if config.getoption("aiosig_guard") or config.getini("aiosig_guard"):
        config.pluginmanager.register(_GuardEveryTest(), "aiosig-guard-every-test")


@pytest.fixture
def signal_state_guard() -> Iterator[SignalState | None]:
    """Fail the test if it leaves process-wide signal state changed, and restore it.

    Checks every signal's disposition, the wakeup fd, the main thread's signal mask and the
    interval timers (armed or not, and their interval). Yields the state captured before
    the test (None outside the main thread, where it checks nothing).
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    before = SignalState.capture()
    yield before
    changed = before.changes(SignalState.capture())
    if changed:
        problems = before.restore()
        report = "\n  ".join(changed + [f"could not restore: {p}" for p in problems])
        pytest.fail(f"the test left process-wide signal state changed:\n  {report}", pytrace=False)


class _GuardEveryTest:
    """Registered by `pytest_configure` when the guard is switched on."""

    @pytest.fixture(autouse=True)
    def _aiosig_signal_state_guard(self, signal_state_guard: SignalState | None) -> None:
        """Use `signal_state_guard` in every test."""
