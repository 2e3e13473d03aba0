"""Logging set-up: loggers `velocior.error` (everything but requests) and `velocior.access`.

The Rust server logs through these same loggers; its access lines arrive preformatted (combined log
format), so the access handler writes the message alone.
"""

from __future__ import annotations

import logging
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import IO, Any

ERROR = "velocior.error"
ACCESS = "velocior.access"
FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S %z"

error_log = logging.getLogger(ERROR)
access_log = logging.getLogger(ACCESS)

# The handlers installed here, so that USR1 reopens their files and a second set-up replaces them.
_ours: list[logging.Handler] = []


class _ReopenableFileHandler(logging.FileHandler):
    """A FileHandler that reopens its file on demand (logrotate moves it, then sends USR1)."""

    def reopen(self) -> None:
        self.acquire()
        try:
            new: IO[Any] = open(self.baseFilename, self.mode, encoding=self.encoding)
            old = self.setStream(new)  # type: ignore[arg-type]
            if old is not None:
                old.close()
        finally:
            self.release()


def _handler(target: str, default: IO[str], fmt: logging.Formatter) -> logging.Handler:
    handler: logging.Handler
    if target == "-":
        handler = logging.StreamHandler(default)
    else:
        handler = _ReopenableFileHandler(target, mode="a", encoding="utf-8", delay=False)
    handler.setFormatter(fmt)
    _ours.append(handler)
    return handler


def setup(level: str = "info", access: str | None = None, error: str = "-",
          *, respect_existing: bool = False) -> None:
    """Attach handlers to the two loggers.

    `access`: None (access log off), "-" (stdout) or a file; `error`: "-" (stderr) or a file.
    `respect_existing`: leave a logger alone when the application already configured handlers for
    it (or for the root logger), as `velocior.serve()` does inside someone else's program.
    Raises OSError when a log file cannot be opened.
    """
    for logger in (error_log, access_log):
        for h in list(logger.handlers):
            if h in _ours:
                logger.removeHandler(h)
                _ours.remove(h)
                h.close()
    configured = bool(logging.getLogger().handlers)
    error_log.setLevel(level.upper())
    if not (respect_existing and (error_log.handlers or configured)):
        error_log.addHandler(_handler(error, sys.stderr, logging.Formatter(FORMAT, DATEFMT)))
        error_log.propagate = False
    if access is None:
        access_log.setLevel(logging.WARNING)
        return
    access_log.setLevel(logging.INFO)
    if not (respect_existing and (access_log.handlers or configured)):
        access_log.addHandler(_handler(access, sys.stdout, logging.Formatter("%(message)s")))
        access_log.propagate = False


def reopen() -> None:
    """Reopen the log files (USR1): a rotated file is closed and a new one created."""
    for h in _ours:
        if isinstance(h, _ReopenableFileHandler):
            try:
                h.reopen()
            except OSError as e:
                error_log.error("cannot reopen log file %s: %s", h.baseFilename, e)
    error_log.info("log files reopened")


def flush() -> None:
    for h in _ours:
        try:
            h.flush()
        except Exception:  # noqa: BLE001 - a failing log must not prevent an exit
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
