"""Tools for testing code that handles signals: synthetic deliveries, a guard, real scripts.

- `deliver` hands a synthetic `SigInfo` to this process's receivers, handlers, waits and
  timers, on their own loops, without touching the OS.
- `signal_state_guard` is a pytest fixture that fails a test which leaves signal state
  changed (`SignalState` does the same by hand); ``--aiosig-guard`` or the ini setting
  ``aiosig_guard = true`` applies it to every test.
- `start_script` and `run_script` run a Python script in a fresh interpreter, wait for its
  ``READY`` line and send it real signals.

Importing ``aiosig`` does not import this module, and this module imports pytest only when
`signal_state_guard` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._script import (
    Script,
    ScriptResult,
    run_script,
    send_from_another_process,
    start_script,
)
from ._signal_state import SignalState, WakeupFd
from ._synthetic import deliver

if TYPE_CHECKING:
    from ._pytest_plugin import signal_state_guard

__all__ = (
    "Script",
    "ScriptResult",
    "SignalState",
    "WakeupFd",
    "deliver",
    "run_script",
    "send_from_another_process",
    "signal_state_guard",
    "start_script",
)


def __getattr__(name: str) -> object:
    # The fixture needs pytest; nothing else here does.
    if name == "signal_state_guard":
        from ._pytest_plugin import signal_state_guard

        return signal_state_guard
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
