"""``aiosig status PID [--threads] [--json]``: a process's signal state from ``/proc``, decoded.

``/proc/PID/status`` holds five masks (hex, bit n-1 for signal n): SigPnd (pending for the
thread), ShdPnd (pending for the process, any thread may take it), SigBlk (blocked by the
thread), SigIgn (ignored) and SigCgt (caught: a handler is installed). Dispositions belong to
the process; pending-for-the-thread and blocked belong to each thread, and the process's file
shows its main thread's. ``--threads`` reads ``/proc/PID/task/TID/status`` for each thread.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from ._common import CliError, add_command, out, print_json, width
from ._proc import NoProcess, read_status, thread_ids
from ._words import signal_set

__all__ = ("add_parser", "status")

EXAMPLES = """\
examples:
  aiosig status 4242                the signal state of process 4242
  aiosig status 4242 --threads      and of each of its threads
  aiosig status $$ --json           as JSON: one object (and one per thread)

output:
  process 4242 (python3): 2 threads, 0 of 63418 queued signals
    pending            -
    pending (shared)   SIGUSR1
    blocked            SIGUSR1 SIGRTMIN+2
    ignored            SIGPIPE SIGXFSZ
    caught             SIGINT SIGTERM
"""

_PROCESS_ROWS = (
    ("pending", "SigPnd", "pending"),
    ("pending (shared)", "ShdPnd", "shared_pending"),
    ("blocked", "SigBlk", "blocked"),
    ("ignored", "SigIgn", "ignored"),
    ("caught", "SigCgt", "caught"),
)
_THREAD_ROWS = (("pending", "SigPnd", "pending"), ("blocked", "SigBlk", "blocked"))
_LABEL = 21  # the column where the names start


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "status",
        summary="decode a process's pending, blocked, ignored and caught signals",
        description="Decode the signal state of process PID from /proc/PID/status: pending "
        "(for its main thread, and shared), blocked (by its main thread), ignored, caught.",
        examples=EXAMPLES,
    )
    parser.add_argument("pid", metavar="PID", type=int, help="the process")
    parser.add_argument(
        "--threads", action="store_true", help="show each thread's pending and blocked signals"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=status)


def status(args: argparse.Namespace) -> int:
    """Print the decoded state of the process, then of each thread if asked."""
    pid: int = args.pid
    try:
        fields = read_status(str(pid))
        tids = thread_ids(pid) if args.threads else []
    except NoProcess:
        raise CliError(f"no process {pid}") from None
    if "SigBlk" not in fields:
        raise CliError(f"/proc/{pid}/status has no signal masks (not Linux?)")
    threads = []
    for tid in tids:
        try:
            threads.append((tid, read_status(f"{pid}/task/{tid}")))
        except NoProcess:
            continue  # the thread ended during the scan
    if args.json:
        print_json(_process_object(pid, fields))
        for tid, thread in threads:
            print_json(_thread_object(pid, tid, thread))
        return 0
    queued, _, limit = fields.get("SigQ", "?/?").partition("/")
    out(
        f"process {pid} ({fields.get('Name', '?')}): {fields.get('Threads', '?')} threads, "
        f"{queued} of {limit} queued signals"
    )
    _table(fields, _PROCESS_ROWS)
    for tid, thread in threads:
        out(f"thread {tid} ({thread.get('Name', '?')})")
        _table(thread, _THREAD_ROWS)
    return 0


def _table(fields: dict[str, str], rows: tuple[tuple[str, str, str], ...]) -> None:
    columns = max(width(), _LABEL + 20)
    for label, key, _ in rows:
        names = " ".join(signal_set(fields[key])) or "-"
        lines = textwrap.wrap(names, columns - _LABEL, break_on_hyphens=False)
        out(f"  {label:<{_LABEL - 2}}{lines[0]}")
        for line in lines[1:]:
            out(" " * _LABEL + line)


def _process_object(pid: int, fields: dict[str, str]) -> dict[str, Any]:
    queued, _, limit = fields.get("SigQ", "0/0").partition("/")
    obj: dict[str, Any] = {
        "pid": pid,
        "name": fields.get("Name"),
        "threads": int(fields.get("Threads", "0")),
        "queued": int(queued),
        "queue_limit": int(limit),
    }
    obj.update({key: signal_set(fields[field]) for _, field, key in _PROCESS_ROWS})
    return obj


def _thread_object(pid: int, tid: int, fields: dict[str, str]) -> dict[str, Any]:
    obj: dict[str, Any] = {"pid": pid, "tid": tid, "name": fields.get("Name")}
    obj.update({key: signal_set(fields[field]) for _, field, key in _THREAD_ROWS})
    return obj
