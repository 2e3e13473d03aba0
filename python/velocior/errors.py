"""The errors that stop Velocior before or while it serves, each with its process exit code.

The CLI turns them into one line on stderr and the exit code; `velocior.serve()` raises them.
"""

from __future__ import annotations


class VelociorError(Exception):
    """Base class: a failure reported to the user as one line, without a traceback."""

    exit_code = 1


class ConfigError(VelociorError, ValueError):
    """A bad option value (CLI, environment variable or `serve()` keyword)."""

    exit_code = 1


class BindError(VelociorError):
    """A listener could not be bound: address in use, permission denied, bad address..."""

    exit_code = 1


class WorkerBootError(VelociorError):
    """Under the supervisor, a worker failed to boot (gunicorn's exit code 3)."""

    exit_code = 3


class AppImportError(VelociorError):
    """The WSGI application could not be imported or built (gunicorn's exit code 4)."""

    exit_code = 4
