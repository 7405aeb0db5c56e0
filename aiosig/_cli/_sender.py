"""The demo's signal sender: ``python -m aiosig._cli._sender send|term PID``.

A module of its own (not imported by the package) so that ``-m`` runs it without a second
copy, and so that its command line in ``/proc`` says what it is.
"""

from __future__ import annotations

import os
import signal
import sys

from .._platform import sigqueue


def send(what: str, pid: int) -> None:
    """ "term": SIGTERM; "send": SIGUSR1, SIGRTMIN+1 with value 42, SIGHUP, then wait."""
    if what == "term":
        os.kill(pid, signal.SIGTERM)
        return
    os.kill(pid, signal.SIGUSR1)
    sigqueue(pid, signal.SIGRTMIN + 1, 42)
    os.kill(pid, signal.SIGHUP)
    sys.stdin.read()  # stay until the demo has read our command line (it closes our stdin)


if __name__ == "__main__":
    send(sys.argv[1], int(sys.argv[2]))
