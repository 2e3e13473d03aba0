"""The supervisor: forks the workers, keeps their number, and turns signals into process changes.

Cold path, plain Python. Theory of operation:

- The listening sockets are bound before this runs and stay open here for its whole life, so a
  connection that arrives while workers come and go waits in the listen queue: it is never refused.
- Each worker is forked from this process and starts the Rust runtime only after the fork. It
  reports on a pipe: b"R" once the app is imported and the Server is built ("ready"), or b"E" and a
  one-line reason when it cannot boot. A worker that exits before "R" failed to boot; one that
  exits after it died while serving. Boot failures at start stop everything (exit code 3, one
  line), during a reload they cancel the reload, later they are retried with a growing delay (no
  fork loop); a worker that dies while serving is always replaced at once.
- One loop: signal handlers only queue the signal (and, through `signal.set_wakeup_fd`, wake the
  `select` below); the loop then handles queued signals, reaps exited workers, starts or stops
  workers to match the target, and enforces kill deadlines.
- Generations: HUP starts a full set of workers of a new generation; once all of them are ready,
  the older ones get TERM and drain. Until then the old ones keep serving: no request fails.
"""

from __future__ import annotations

import collections
import importlib
import os
import select
import signal
import sys
import threading
import time

from velocior import logs
from velocior.config import Config
from velocior.errors import AppImportError, ConfigError, WorkerBootError
from velocior.listeners import Listener
from velocior.loader import load_app
from velocior.runner import WORKER, run_server, shut_down, signal_name

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

log = logs.error_log

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN,
           signal.SIGTTOU, signal.SIGUSR1, signal.SIGCHLD)

# Beyond --graceful-timeout (which the worker enforces itself) before the supervisor SIGKILLs it.
KILL_MARGIN = 2.0
# Consecutive boot failures, while no worker serves, after which the supervisor gives up.
MAX_BOOT_FAILURES = 3
MAX_BOOT_DELAY = 30.0
# After a stop signal, how long idle workers get to close their copies of the listening sockets
# before the supervisor shuts the sockets down under whoever still holds them.
SHUTDOWN_GRACE = 0.5


class Worker:
    """A worker process, as the supervisor sees it."""

    __slots__ = ("pid", "generation", "pipe", "started", "ready", "error", "stopping",
                 "kill_at", "killed", "data")

    def __init__(self, pid: int, generation: int, pipe: int | None, started: float) -> None:
        self.pid = pid
        self.generation = generation
        self.pipe = pipe  # the read end of its boot report pipe, until that closes
        self.started = started
        self.ready = False
        self.error: str | None = None
        self.stopping = False
        self.kill_at: float | None = None
        self.killed = False
        self.data = b""  # what it wrote on the pipe

    def __repr__(self) -> str:
        return (f"Worker(pid={self.pid}, generation={self.generation}, ready={self.ready}, "
                f"stopping={self.stopping})")


def describe_status(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exit code {code}"
    return f"killed by signal {-code} ({signal_name(-code)})"


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send TERM to this worker when the supervisor dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    logs.flush()
    os._exit(0)


def _ignore(signum: int, frame: FrameType | None) -> None:
    pass


def _tell(fd: int, message: bytes) -> None:
    try:
        os.write(fd, message)
    except OSError:
        pass


def worker_main(app: Any, app_spec: str, listeners: list[Listener], options: dict[str, object],
                ready_fd: int, parent: int) -> int:
    """The body of a worker process; returns its exit code."""
    _die_with_parent(parent)
    max_requests = options.get("max_requests")
    jitter = options.pop("max_requests_jitter", 0)
    if isinstance(max_requests, int) and max_requests > 0 and isinstance(jitter, int) and jitter:
        import random  # only with --max-requests-jitter: a worker need not hold it otherwise

        options["max_requests"] = max_requests + random.randint(0, jitter)
    if app is None:
        try:
            app = load_app(app_spec)
        except AppImportError as e:
            _tell(ready_fd, b"E" + str(e).encode("utf-8", "replace"))
            return AppImportError.exit_code
    try:
        from velocior._velocior import Server

        server = Server(app, [lst.spec() for lst in listeners], options)
    except Exception as e:  # noqa: BLE001 - reported to the supervisor as a boot failure
        _tell(ready_fd, b"E" + f"cannot start the server: {type(e).__name__}: {e}".encode())
        return WorkerBootError.exit_code
    # The Server holds its own duplicates; without closing ours, a worker stopping gracefully
    # would leave the sockets listening (connections queued, never answered) until it exits.
    for lst in listeners:
        lst.sock.close()
    _tell(ready_fd, b"R")
    os.close(ready_fd)
    reason = run_server(server, WORKER)
    if reason == "max-requests":
        log.info("worker %d served %d requests (max-requests): exiting", os.getpid(),
                 server.requests_served)
    return 0


class Supervisor:
    """Forks and watches the workers. `run()` returns on a stop, raises WorkerBootError when the
    workers cannot boot."""

    def __init__(self, cfg: Config, listeners: list[Listener], app: Any = None,
                 app_spec: str = "") -> None:
        self.cfg = cfg
        self.listeners = listeners
        self.app = app
        self.app_spec = app_spec
        self.options = cfg.server_options()
        if cfg.max_requests_jitter:
            self.options["max_requests_jitter"] = cfg.max_requests_jitter
        self.target = cfg.workers
        self.workers: dict[int, Worker] = {}
        self.generation = 0
        self.reload_from: int | None = None
        self.booted_once = False
        self.boot_failures = 0
        self.next_spawn = 0.0
        self.stopping: str | None = None  # None, "graceful" or "quick"
        self.shutdown_at: float | None = None
        self.failure: WorkerBootError | None = None
        self.queue: collections.deque[int] = collections.deque()
        self.pid = os.getpid()
        self._wake_r = -1
        self._wake_w = -1

    # --- main loop ---

    def run(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError("several workers (or --supervise, --max-requests, --timeout) need "
                              "the supervisor, which must run in the main thread")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        previous = {s: signal.signal(s, self._on_signal) for s in HANDLED}
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            log.info("supervisor %d: %d worker%s for %s", self.pid, self.target,
                     "s" if self.target > 1 else "", self.app_spec or "the app")
            while not (self.stopping and not self.workers):
                self._tick()
                if self.stopping and not self.workers:
                    break
                self._wait()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, old in previous.items():
                signal.signal(s, old)
            self._abandon()
            os.close(self._wake_r)
            os.close(self._wake_w)
        if self.failure is not None:
            raise self.failure
        log.info("supervisor %d: stopped", self.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.queue.append(signum)

    def _tick(self) -> None:
        while self.queue:
            self._handle(self.queue.popleft())
        self._reap()
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.kill_at is not None and now >= w.kill_at and not w.killed:
                log.warning("worker %d did not stop in time: killing it", w.pid)
                self._kill(w, signal.SIGKILL)
                w.killed = True
        if self.stopping:
            if self.shutdown_at is not None and now >= self.shutdown_at and self.workers:
                self._shut_listeners_down()
            return
        self._finish_reload()
        self._scale(now)

    def _wait(self) -> None:
        now = time.monotonic()
        deadlines = [w.kill_at for w in self.workers.values() if w.kill_at and not w.killed]
        if self.next_spawn > now:
            deadlines.append(self.next_spawn)
        if self.shutdown_at is not None:
            deadlines.append(self.shutdown_at)
        timeout = min([1.0] + [max(0.0, d - now) for d in deadlines])
        fds = [self._wake_r] + [w.pipe for w in self.workers.values() if w.pipe is not None]
        readable, _, _ = select.select(fds, [], [], timeout)
        for fd in readable:
            if fd == self._wake_r:
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                continue
            for w in list(self.workers.values()):
                if w.pipe == fd:
                    self._read_pipe(w)

    # --- signals ---

    def _handle(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return
        name = signal_name(signum)
        if signum == signal.SIGTERM:
            if not self.stopping:
                log.info("%s: graceful stop of %d worker(s)", name, len(self.workers))
                self._begin_stop(graceful=True)
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            if self.stopping == "quick" and signum == signal.SIGINT:
                log.info("%s again: killing the workers", name)
                for w in self.workers.values():
                    self._kill(w, signal.SIGKILL)
                    w.killed = True
            elif self.stopping != "quick":
                log.info("%s: quick stop", name)
                self._begin_stop(graceful=False)
        elif self.stopping:
            return
        elif signum == signal.SIGHUP:
            self._begin_reload()
        elif signum == signal.SIGTTIN:
            self.target += 1
            log.info("%s: %d workers", name, self.target)
        elif signum == signal.SIGTTOU:
            if self.target > 1:
                self.target -= 1
                log.info("%s: %d worker%s", name, self.target, "s" if self.target > 1 else "")
            else:
                log.info("%s ignored: already at one worker", name)
        elif signum == signal.SIGUSR1:
            logs.reopen()
            for w in self.workers.values():
                self._kill(w, signal.SIGUSR1)

    def _begin_stop(self, graceful: bool) -> None:
        self.stopping = "graceful" if graceful else "quick"
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        deadline = time.monotonic() + self.cfg.graceful_timeout + KILL_MARGIN
        for w in self.workers.values():
            self._kill(w, sig)
            w.stopping = True
            w.kill_at = deadline if w.kill_at is None else min(w.kill_at, deadline)
        # New connections must fail, not queue until the last worker (perhaps busy in a slow
        # request) closes its copy. Idle workers close theirs within milliseconds; if any worker
        # still runs after SHUTDOWN_GRACE, shutdown() stops the shared socket for every process.
        # (Not at once: an idle worker would see its accept() fail before it handled the TERM.)
        for lst in self.listeners:
            lst.remove_file()
        if self.shutdown_at is None:
            self.shutdown_at = time.monotonic() + SHUTDOWN_GRACE

    def _shut_listeners_down(self) -> None:
        self.shutdown_at = None
        for lst in self.listeners:
            if not lst.inherited:
                shut_down(lst.sock)
            lst.close()

    def _begin_reload(self) -> None:
        if self.reload_from is None:
            self.reload_from = self.generation
        self.generation += 1
        # New workers import the app afresh: drop the finders' cached directory listings first.
        importlib.invalidate_caches()
        if self.app is not None:
            log.info("SIGHUP: restarting %d workers (with --preload they run the code loaded at "
                     "start)", self.target)
        else:
            log.info("SIGHUP: reloading: starting %d new workers", self.target)

    def _finish_reload(self) -> None:
        current = [w for w in self.workers.values()
                   if w.generation == self.generation and not w.stopping]
        if len(current) < self.target or not all(w.ready for w in current):
            return
        old = [w for w in self.workers.values()
               if w.generation < self.generation and not w.stopping]
        if self.reload_from is not None:
            log.info("reload: %d new workers ready; stopping %d old ones", len(current),
                     len(old))
            self.reload_from = None
        for w in old:
            self._stop(w)

    # --- workers ---

    def _scale(self, now: float) -> None:
        current = [w for w in self.workers.values()
                   if w.generation == self.generation and not w.stopping]
        if len(current) < self.target:
            if now >= self.next_spawn:
                for _ in range(self.target - len(current)):
                    if not self._spawn():
                        break
        elif len(current) > self.target:
            # TTOU: the oldest go first (the newest have the freshest memory).
            for w in sorted(current, key=lambda w: w.started)[:len(current) - self.target]:
                self._stop(w)

    def _stop(self, w: Worker) -> None:
        self._kill(w, signal.SIGTERM)
        w.stopping = True
        w.kill_at = time.monotonic() + self.cfg.graceful_timeout + KILL_MARGIN

    def _kill(self, w: Worker, sig: int) -> None:
        try:
            os.kill(w.pid, sig)
        except ProcessLookupError:
            pass

    def _spawn(self) -> bool:
        r, wfd = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:
            os.close(r)
            os.close(wfd)
            log.error("cannot fork a worker: %s; retrying in 1 s", e)
            self.next_spawn = time.monotonic() + 1.0
            return False
        if pid == 0:  # the worker: never returns from this branch
            code = 1
            try:
                os.close(r)
                self._become_worker()
                code = worker_main(self.app, self.app_spec, self.listeners, dict(self.options),
                                   wfd, self.pid)
            except BaseException:  # noqa: BLE001 - the worker must end here, whatever happened
                try:
                    log.exception("worker %d failed", os.getpid())
                except BaseException:  # noqa: BLE001
                    pass
            finally:
                logs.flush()
                os._exit(code)
        os.close(wfd)
        os.set_blocking(r, False)
        self.workers[pid] = Worker(pid, self.generation, r, time.monotonic())
        log.debug("worker %d started (generation %d)", pid, self.generation)
        return True

    def _become_worker(self) -> None:
        """Undo, in a fresh child, what belongs to the supervisor."""
        for s in HANDLED:
            signal.signal(s, signal.SIG_DFL)
        # Until the server runs (and installs the real handlers) a stop request simply ends the
        # worker, which has served nothing yet; and no signal meant for the supervisor may hang
        # it up, stop it (TTIN/TTOU) or make it dump core (QUIT).
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(s, _exit_now)
        for s in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
            signal.signal(s, _ignore)
        signal.set_wakeup_fd(-1)
        os.close(self._wake_r)
        os.close(self._wake_w)
        for w in self.workers.values():
            if w.pipe is not None:
                os.close(w.pipe)
        self.workers.clear()

    def _read_pipe(self, w: Worker) -> None:
        while w.pipe is not None:
            try:
                data = os.read(w.pipe, 4096)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if data:
                w.data += data
                if w.data.startswith(b"R") and not w.ready:
                    self._on_ready(w)
                continue
            os.close(w.pipe)
            w.pipe = None
            if w.data.startswith(b"E"):
                w.error = " ".join(w.data[1:].decode("utf-8", "replace").split())

    def _on_ready(self, w: Worker) -> None:
        w.ready = True
        self.booted_once = True
        self.boot_failures = 0
        log.info("worker %d ready", w.pid)

    def _reap(self) -> None:
        for pid in list(self.workers):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            w = self.workers.pop(pid)
            self._read_pipe(w)
            if w.pipe is not None:
                os.close(w.pipe)
                w.pipe = None
            self._exited(w, status)

    def _exited(self, w: Worker, status: int) -> None:
        how = describe_status(status)
        if self.stopping or w.stopping:
            log.info("worker %d stopped (%s)", w.pid, how)
        elif not w.ready:
            self._boot_failed(w, w.error or f"worker {w.pid} exited before it was ready ({how})")
        elif os.waitstatus_to_exitcode(status) == 0:
            log.info("worker %d exited (%s); starting a new one", w.pid, how)
        else:
            log.error("worker %d died (%s); starting a new one", w.pid, how)

    def _boot_failed(self, w: Worker, reason: str) -> None:
        if not self.booted_once:
            self.failure = WorkerBootError(f"worker failed to boot: {reason}")
            self._begin_stop(graceful=False)
            return
        if w.generation < self.generation:
            # A generation already being replaced (HUP again while it booted): nothing to retry.
            log.error("worker of a replaced generation failed to boot: %s", reason)
            return
        if self.reload_from is not None and w.generation == self.generation:
            log.error("reload cancelled, the old workers keep serving: a new worker failed to "
                      "boot: %s", reason)
            for other in self.workers.values():
                if other.generation == self.generation and not other.stopping:
                    self._stop(other)
            self.generation = self.reload_from
            self.reload_from = None
            return
        self.boot_failures += 1
        serving = any(x.ready and not x.stopping for x in self.workers.values())
        if not serving and self.boot_failures >= MAX_BOOT_FAILURES:
            self.failure = WorkerBootError(
                f"worker failed to boot {self.boot_failures} times in a row: {reason}")
            self._begin_stop(graceful=False)
            return
        delay = min(2.0 ** (self.boot_failures - 1), MAX_BOOT_DELAY)
        self.next_spawn = time.monotonic() + delay
        log.error("worker failed to boot: %s; retrying in %g s", reason, delay)

    def _abandon(self) -> None:
        """On the way out after an unexpected error: no worker may outlive the supervisor."""
        for w in self.workers.values():
            self._kill(w, signal.SIGKILL)
        for w in self.workers.values():
            try:
                os.waitpid(w.pid, 0)
            except ChildProcessError:
                pass
            if w.pipe is not None:
                os.close(w.pipe)
        self.workers.clear()
