"""Run a `velocior._velocior.Server` in this process until a signal stops it.

While `Server.run()` waits inside Rust no Python bytecode runs, so a Python signal handler would
never get its turn. `signal.set_wakeup_fd` makes the interpreter write a byte to a pipe on every
signal; the Rust loop watches the read end and then runs the Python handlers on its own thread.
The handlers below decide what a signal means: the policy stays in Python.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from velocior import logs

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from velocior._velocior import Server

    Handler = Callable[[int, FrameType | None], None]


SINGLE = "single"
WORKER = "worker"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


class _Policy:
    """What each signal does to a server run by a single process or by a worker."""

    def __init__(self, server: Server, role: str, sockets: list[socket.socket]) -> None:
        self.server = server
        self.role = role
        self.sockets = sockets
        self.quick_requested = False

    def _stop_listening(self, frame: FrameType | None) -> None:
        """Make new connections fail now, not when the loop gets to close its sockets.

        When the handler runs from the loop (the interrupted frame is run_server's, waiting in
        Server.run), the loop closes its copies right away: closing ours is enough. When it
        interrupted the app (one thread: the loop waits for the app call to return), a slow
        request would keep the sockets listening, connections queued and later reset: shutdown()
        acts on the socket itself, whichever descriptor is used, so the kernel refuses new
        connections at once.
        """
        in_app = frame is not None and frame.f_code is not _RUN_CODE
        for sock in self.sockets:
            if in_app:
                shut_down(sock)
            else:
                sock.close()
        self.sockets = []

    def graceful(self, signum: int, frame: FrameType | None) -> None:
        # A worker's stops are logged by the supervisor, once for all workers.
        logs.error_log.log(logging.INFO if self.role == SINGLE else logging.DEBUG,
                           "%s: graceful stop (in-flight requests are finished)",
                           signal_name(signum))
        self.server.stop(graceful=True)
        self._stop_listening(frame)

    def quick(self, signum: int, frame: FrameType | None) -> None:
        if self.quick_requested and self.role == SINGLE and signum == signal.SIGINT:
            # Ctrl-C again: the app itself is stuck in a request; interrupt it.
            raise KeyboardInterrupt
        self.quick_requested = True
        if self.role == SINGLE:
            logs.error_log.info("%s: stopping", signal_name(signum))
        self.server.stop(graceful=False)
        self._stop_listening(frame)

    def not_here(self, signum: int, frame: FrameType | None) -> None:
        if self.role == SINGLE:
            logs.error_log.warning("%s ignored: reloading and scaling need the supervisor "
                                   "(--supervise or --workers N)", signal_name(signum))
        # In a worker these belong to the supervisor: they reach workers too when sent to the
        # whole process group, and their default actions (hang up, stop the process) must not
        # apply.

    def reopen_logs(self, signum: int, frame: FrameType | None) -> None:
        logs.reopen()

    def table(self) -> dict[int, Handler]:
        return {
            signal.SIGTERM: self.graceful,
            signal.SIGINT: self.quick,
            signal.SIGQUIT: self.quick,
            signal.SIGHUP: self.not_here,
            signal.SIGTTIN: self.not_here,
            signal.SIGTTOU: self.not_here,
            signal.SIGUSR1: self.reopen_logs,
        }


def shut_down(sock: socket.socket) -> None:
    """Stop a listening socket for every process and descriptor that shares it, then close it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def run_server(server: Server, role: str = SINGLE,
               sockets: list[socket.socket] | None = None) -> str:
    """Serve until stopped; return why run() stopped ("stopped", "quick", "max-requests", or
    "interrupted" after a second Ctrl-C).

    `sockets`: listening sockets this process alone serves; they are shut down as soon as a stop
    signal arrives (never pass sockets shared with other workers that keep serving).

    Signal handlers are installed only from the main thread (Python allows no other); from another
    thread the server runs without them and the caller stops it with `server.stop()`.
    """
    if threading.current_thread() is not threading.main_thread():
        return server.run(-1)
    policy = _Policy(server, role, list(sockets or ()))
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    previous: dict[int, object] = {}
    old_wakeup = -1
    try:
        for signum, handler in policy.table().items():
            previous[signum] = signal.signal(signum, handler)
        old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        try:
            return server.run(r)
        except KeyboardInterrupt:
            return "interrupted"
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for signum, old in previous.items():
            signal.signal(signum, old)  # type: ignore[arg-type]
        os.close(r)
        os.close(w)


_RUN_CODE = run_server.__code__
