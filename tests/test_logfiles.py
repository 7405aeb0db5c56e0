"""Reopening log files after logrotate renamed them (no copytruncate, no lost lines)."""

from __future__ import annotations

import io
import logging
import logging.handlers
import pathlib
from collections.abc import Iterator

import pytest

from aiosig._logfiles import reopen_log_files


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("aiosig-test-logfiles")
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def test_a_renamed_log_file_is_started_anew_at_its_path(
    logger: logging.Logger, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "app.log"
    logger.addHandler(logging.FileHandler(path))
    logger.info("before the rotation")
    path.rename(tmp_path / "app.log.1")  # what logrotate does
    logger.info("after the rename, before the reopen")  # still the old file, as without us
    assert str(path) in reopen_log_files()
    logger.info("after the reopen")
    assert path.read_text() == "after the reopen\n"
    assert (tmp_path / "app.log.1").read_text() == (
        "before the rotation\nafter the rename, before the reopen\n"
    )


def test_only_open_file_handlers_are_touched(
    logger: logging.Logger, tmp_path: pathlib.Path
) -> None:
    stream = io.StringIO()
    delayed = logging.FileHandler(tmp_path / "delayed.log", delay=True)
    closed = logging.FileHandler(tmp_path / "closed.log")
    rotating = logging.handlers.RotatingFileHandler(tmp_path / "rotating.log")
    for handler in (logging.StreamHandler(stream), delayed, closed, rotating):
        logger.addHandler(handler)
    closed.close()
    reopened = reopen_log_files()
    assert str(tmp_path / "rotating.log") in reopened
    assert str(tmp_path / "delayed.log") not in reopened
    assert str(tmp_path / "closed.log") not in reopened
    logger.info("still here")
    assert stream.getvalue() == "still here\n"
    assert (tmp_path / "rotating.log").read_text() == "still here\n"
