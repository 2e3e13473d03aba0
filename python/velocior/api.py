"""`velocior.serve()` and the start-up sequence shared with the command line."""

from __future__ import annotations

import os
import signal
import sys
import threading

from velocior import config, logs
from velocior.config import Config
from velocior.errors import ConfigError
from velocior.listeners import Listener, open_listeners
from velocior.loader import load_app
from velocior.runner import SINGLE, run_server, signal_name

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import FrameType
    from typing import Any, Union

    WSGIApp = Callable[..., Iterable[bytes]]
    AppRef = Union[WSGIApp, str]


def serve(app: AppRef, *, http: str | list[str] | None = None,
          uwsgi: str | list[str] | None = None, threads: int = 1, workers: int = 1,
          **options: Any) -> None:
    """Serve a WSGI application until the server is stopped.

    `app` is the WSGI callable, or a string `"module:app"` / `"module:factory()"` that each worker
    imports itself. `http` and `uwsgi` are one address or a list of them (`"127.0.0.1:8000"`,
    `"[::1]:8000"`, `"unix:/run/app.sock"`; uwsgi also takes a bare `/path`); with neither, HTTP
    on 127.0.0.1:8000. `threads` > 1 calls the app from a pool of that many threads.

    With `workers=1` (and no `max_requests`, `timeout` or `supervise=True`) the server runs in
    this very process and thread. Otherwise this process becomes the supervisor: it forks the
    workers, replaces those that die, and returns once stopped.

    Every other option of the command line is a keyword here, named like its flag: for example
    `keep_alive=5.0`, `graceful_timeout=30.0`, `max_requests=1000`, `access_log=True` (or a file
    name), `log_level="debug"`, `socket_mode=0o660`, `uwsgi_allow_from=["10.0.0.0/8"]`
    (see `velocior --help` or docs/cli.md). `VELOCIOR_<NAME>` environment variables apply under
    the keywords.

    Called from the main thread, the usual signals work: TERM stops gracefully, INT (Ctrl-C) and
    QUIT stop at once; with a supervisor also HUP (reload), TTIN/TTOU (one worker more/less).
    Logging goes to the loggers `velocior.error` and `velocior.access`; handlers are added only to
    those the program has not configured itself.

    Raises `velocior.errors.ConfigError` (bad option), `BindError` (a socket cannot be bound),
    `AppImportError` (a string `app` cannot be imported) and `WorkerBootError` (workers cannot
    boot).
    """
    if not isinstance(app, str) and not callable(app):
        raise TypeError(f"app must be a WSGI callable or a 'module:app' string, not "
                        f"{type(app).__name__}")
    kwargs: dict[str, object] = dict(options)
    kwargs["threads"] = threads
    kwargs["workers"] = workers
    if http is not None:
        kwargs["http"] = [http] if isinstance(http, str) else list(http)
    if uwsgi is not None:
        kwargs["uwsgi"] = [uwsgi] if isinstance(uwsgi, str) else list(uwsgi)
    cfg = config.from_kwargs(kwargs)
    try:
        logs.setup(cfg.log_level, cfg.access_log, cfg.error_log, respect_existing=True)
    except OSError as e:
        raise ConfigError(f"cannot open a log file: {e}") from None
    run(cfg, app)


class _StopBeforeServing(BaseException):
    """A stop signal arrived while binding or importing the app: unwind and exit normally."""


class _EarlySignals:
    """Signal handling before the server (or the supervisor) installs its own, and after.

    Without it a TERM sent just after the sockets are bound (a supervisor of ours restarting fast,
    a test) would kill the process by the default action: exit status -15, unix socket files and
    pid file left behind. Before serving, a stop signal unwinds cleanly; after, it is ignored
    while the clean-up runs.
    """

    STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
    IGNORE = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1)

    def __init__(self) -> None:
        self.active = threading.current_thread() is threading.main_thread()
        self.previous: dict[int, Any] = {}

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        raise _StopBeforeServing(signum)

    def _ignore(self, signum: int, frame: FrameType | None) -> None:
        pass

    def install(self) -> None:
        if self.active:
            for s in self.STOP:
                self.previous[s] = signal.signal(s, self._stop)
            for s in self.IGNORE:
                self.previous[s] = signal.signal(s, self._ignore)

    def quiet(self) -> None:
        if self.active:
            for s in self.STOP:
                signal.signal(s, self._ignore)

    def restore(self) -> None:
        for s, old in self.previous.items():
            signal.signal(s, old)
        self.previous.clear()


def run(cfg: Config, app: AppRef) -> None:
    """Bind, then serve in this process or under the supervisor, then clean up.

    Sockets are bound before the app is imported, so that clients connecting while a slow app
    loads wait in the listen queue instead of being refused.
    """
    early = _EarlySignals()
    early.install()
    try:
        _run(cfg, app, early)
    except _StopBeforeServing as e:
        logs.error_log.info("%s: stopped before serving", signal_name(e.args[0]))
    finally:
        early.restore()
        logs.flush()
    if _stuck_threads:
        # App threads still inside requests (a quick stop does not wait for them) would be ended
        # mid-call by interpreter finalization, which aborts the process: leave without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


# App threads of the single-process server still running a request after it stopped.
_stuck_threads = 0


def _run(cfg: Config, app: AppRef, early: _EarlySignals) -> None:
    listeners = open_listeners(cfg.http, cfg.uwsgi, cfg.backlog, cfg.socket_mode)
    pidfile: str | None = None
    try:
        pidfile = _write_pid(cfg.pid)
        spec = app if isinstance(app, str) else ""
        if cfg.use_supervisor():
            # Imported here: a single process (and so the bench's figure) need not hold it.
            from velocior.supervisor import Supervisor

            preloaded: Any = None
            if not isinstance(app, str):
                preloaded = app
            elif cfg.preload:
                preloaded = load_app(app)
            Supervisor(cfg, listeners, preloaded, spec).run()
        else:
            the_app = load_app(app) if isinstance(app, str) else app
            _run_single(cfg, the_app, listeners, spec)
    finally:
        early.quiet()
        for lst in listeners:
            lst.close()
        if pidfile is not None:
            _remove_pid(pidfile)


def _run_single(cfg: Config, app: Any, listeners: list[Listener], spec: str) -> None:
    try:
        from velocior._velocior import Server
    except ImportError as e:
        raise ConfigError(f"the compiled part of velocior cannot be loaded ({e}): reinstall "
                          "velocior") from None
    try:
        server = Server(app, [lst.spec() for lst in listeners], cfg.server_options())
    except (ValueError, TypeError, OSError) as e:
        raise ConfigError(f"cannot start the server: {e}") from None
    logs.error_log.info("velocior %s: serving %s in one process (pid %d)", _version(),
                        spec or getattr(app, "__name__", "the app"), os.getpid())
    # Our copies of the sockets are shut down by the stop signal's handler (see run_server).
    reason = run_server(server, SINGLE, [lst.sock for lst in listeners if not lst.inherited])
    logs.error_log.info("stopped (%s) after %d requests", reason, server.requests_served)
    global _stuck_threads
    _stuck_threads = server.busy_threads
    if _stuck_threads:
        logs.error_log.warning("%d app thread(s) still inside a request: exiting without them",
                               _stuck_threads)


def _version() -> str:
    from velocior import __version__

    return __version__


def _write_pid(path: str | None) -> str | None:
    if not path:
        return None
    path = os.path.abspath(path)
    try:
        old = _read_pid(path)
        if old is not None and old != os.getpid() and _alive(old):
            logs.error_log.warning("pid file %s named running process %d: overwriting it", path,
                                   old)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"cannot write the pid file {path}: {e.strerror or e}") from None
    return path


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or "0") or None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_pid(path: str) -> None:
    if _read_pid(path) == os.getpid():
        try:
            os.unlink(path)
        except OSError:
            pass
