"""The examples run and do what their docstrings say, on both loops."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests._util import ROOT

EXAMPLES = {
    "hello_signals.py": ["received SIGUSR1 from pid", "received SIGHUP, plain delivery", "done"],
    "reload_and_stop.py": ["generation 1", "generation 2", "SIGTERM received: stopping"],
}


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name: str, flavour: str) -> None:
    args = [sys.executable, str(ROOT / "examples" / name)]
    if flavour == "uvloop":
        args.append("--uvloop")
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for expected in EXAMPLES[name]:
        assert expected in done.stdout, done.stdout
