"""What ``/proc`` says about a process: its command line, its signal state; users by uid.

Every read answers None (or raises `NoProcess`) for a process that is gone: a sender may
exit between sending and our read, which is why ``watch`` reads at once.
"""

from __future__ import annotations

import os
import pwd

__all__ = (
    "NoProcess",
    "command_line",
    "read_status",
    "short_command",
    "thread_ids",
    "user_name",
)


class NoProcess(LookupError):
    """The process (or thread) does not exist, or ``/proc`` does not show it."""


def command_line(pid: int) -> list[str] | None:
    """The process's arguments; ``["[name]"]`` for a kernel thread or a zombie; None if gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            raw = file.read()
        if raw:
            return [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
        with open(f"/proc/{pid}/comm", "rb") as file:
            return [f"[{file.read().decode(errors='replace').rstrip()}]"]
    except OSError:
        return None


def short_command(command: list[str] | None) -> str:
    """A command line for 80 columns: the program's base name, then its arguments."""
    if not command:
        return "(exited)"
    return " ".join([os.path.basename(command[0]) or command[0], *command[1:]])


def user_name(uid: int) -> str | None:
    """The user name for `uid`, or None if the password database has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def read_status(path: str) -> dict[str, str]:
    """The fields of ``/proc/<path>/status`` (``"4242"`` or ``"4242/task/4250"``).

    Raises:
        NoProcess: No such process or thread.
    """
    try:
        with open(f"/proc/{path}/status", encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        raise NoProcess(path) from None
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def thread_ids(pid: int) -> list[int]:
    """The ids of the process's threads, in order.

    Raises:
        NoProcess: No such process.
    """
    try:
        return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError):
        raise NoProcess(str(pid)) from None
