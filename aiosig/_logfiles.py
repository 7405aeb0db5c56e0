"""Reopening log files after rotation (SIGUSR1 in ``aiosig.run``'s ``reopen_logs``).

Theory of operation
-------------------
logrotate renames a log file and expects the program to start a new one at the old path.
A ``logging.FileHandler`` keeps writing to the renamed file until its stream is reopened;
the usual workaround, ``copytruncate``, loses the lines written between the copy and the
truncation. Reopening needs no cooperation from the application's own code: every
``FileHandler`` reachable from the logging tree gets a fresh stream.

Rule 1 (lazily, under the handler's lock): the stream is flushed and closed and set to
None while holding the handler's own lock, so a record emitted concurrently goes entirely
to the old file or entirely to the new one. ``FileHandler.emit`` opens a missing stream on
the next record, with the handler's own mode and encoding; nothing here opens a file, so a
path that cannot be created again fails where logging reports its errors (``handleError``),
not in the signal handler's caller.

Rule 2 (only files): other handlers (streams, sockets, queues) are left alone, and a handler
that was closed (``close()``) is not brought back.

  Rejected: ``handler.close()`` then a new handler (it would leave the logging tree with
  copies, and drop filters and formatters the application set); ``WatchedFileHandler``
  everywhere (a stat per record, and the application must choose it); reading logging's
  private ``_open``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ("reopen_log_files",)


def reopen_log_files() -> list[str]:
    """Make every ``logging.FileHandler`` start a new file at its path on its next record.

    Returns:
        The paths whose handlers will reopen, in the order found.
    """
    reopened: list[str] = []
    for handler in _file_handlers():
        with _locked(handler):
            stream = handler.stream
            if stream is None:
                continue  # not opened yet (delay=True), or closed: nothing to reopen
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
            with contextlib.suppress(OSError, ValueError):
                stream.close()
            handler.stream = None  # emit() reopens it
        reopened.append(handler.baseFilename)
    return reopened


def _file_handlers() -> list[logging.FileHandler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            loggers.append(logger)
    found: dict[int, logging.FileHandler] = {}
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler):
                found.setdefault(id(handler), handler)
    return list(found.values())


@contextlib.contextmanager
def _locked(handler: logging.Handler) -> Iterator[None]:
    handler.acquire()
    try:
        yield
    finally:
        handler.release()
