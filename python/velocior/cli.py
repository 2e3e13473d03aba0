"""The `velocior` command: `velocior [OPTIONS] MODULE:APP`. Options: `velocior --help`."""

from __future__ import annotations

import logging
import os
import sys

from velocior import __version__, api, config, logs
from velocior.errors import ConfigError, VelociorError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Sequence


def _fatal(message: str, exit_code: int) -> int:
    """One line on stderr (and in the error log when that is a file): no traceback."""
    sys.stderr.write(f"velocior: error: {message}\n")
    sys.stderr.flush()
    if any(isinstance(h, logging.FileHandler) for h in logs.error_log.handlers):
        logs.error_log.error("%s", message)
    logs.flush()
    return exit_code


def _prepare_imports(cfg: config.Config) -> None:
    if cfg.chdir:
        try:
            os.chdir(cfg.chdir)
        except OSError as e:
            raise ConfigError(f"--chdir {cfg.chdir}: {e.strerror or e}") from None
    # The console script's sys.path[0] is its own bin/ directory: the app is looked for where the
    # user is (or where --chdir put us), as `python -m` would.
    cwd = os.getcwd()
    for entry in [cwd] + [os.path.abspath(p) for p in reversed(cfg.pythonpath)]:
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        cfg = config.from_cli(args, os.environ, __version__)
    except ConfigError as e:
        return _fatal(str(e), e.exit_code)
    try:
        logs.setup(cfg.log_level, cfg.access_log, cfg.error_log)
    except OSError as e:
        return _fatal(f"cannot open log file {e.filename}: {e.strerror or e}", 1)
    try:
        _prepare_imports(cfg)
        assert cfg.app is not None
        api.run(cfg, cfg.app)
    except VelociorError as e:
        return _fatal(str(e), e.exit_code)
    except KeyboardInterrupt:
        # Ctrl-C before the server ran (while binding or importing the app): just stop.
        logs.flush()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
