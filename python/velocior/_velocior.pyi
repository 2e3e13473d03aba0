"""The compiled core of Velocior (Rust): the event loop, both protocols and the WSGI adapter.

Most programs use `velocior.serve()` or the `velocior` command instead; this is what they drive.
"""

from collections.abc import Callable, Iterable
from typing import Any

WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

class Server:
    """One worker's server: serves a WSGI app on already listening sockets.

    `listeners` holds `(fd, protocol, display)` triples: `fd` an already bound, listening socket
    (TCP or unix), which the Server duplicates (the caller keeps and closes its own); `protocol`
    "http" or "uwsgi"; `display` the address shown in log lines ("http://127.0.0.1:8000",
    "unix:/run/x.sock").

    `options` (all optional; an unknown key raises ValueError):

    - threads (int, 1): 1: the loop thread calls the app; N > 1: a pool of N Python threads.
    - keepalive_timeout (float s, 5): idle time allowed between requests on a kept-alive
      connection.
    - header_timeout (float s, 10): time to deliver a whole request head (from accept or the
      previous response).
    - body_timeout (float s, 30): a body read that makes no progress for this long closes the
      connection.
    - write_timeout (float s, 30): a response write that makes no progress for this long closes
      the connection.
    - graceful_timeout (float s, 30): after stop(graceful): in-flight requests get this long.
    - max_connections (int, 1000): open connections per worker; at the cap, idle keep-alive ones
      are closed first.
    - max_requests (int, 0): 0 = unlimited; else run() returns "max-requests" (gracefully) after
      this many.
    - worker_timeout (float s, 0): 0 = off; an app call running longer: one line on stderr naming
      the request, then the process kills itself (SIGKILL) so the supervisor replaces it.
    - uwsgi_allow_from (list[str], ["127.0.0.0/8", "::1"]): CIDRs allowed to connect to TCP uwsgi
      listeners.
    - access_log (bool, False): combined-format lines on logger `velocior.access`.
    - server_header (str or None, "velocior"): Server header value; None: no header.
    - multiprocess (bool, False): wsgi.multiprocess.
    - url_scheme (str, "http"): wsgi.url_scheme for HTTP listeners (uwsgi follows the HTTPS /
      REQUEST_SCHEME vars).
    - max_body_in_memory (int, 65536): bodies up to this are read before the app is called.
    - native_response (bool, False): benchmark floor: parse each request fully, then answer a
      fixed `200 OK` `Hello, World!` without calling Python.
    - max_head_bytes, max_headers, max_target_bytes, max_uwsgi_vars_bytes (int, the protocol
      crate's Limits defaults): protocol limits.

    Logging goes through Python `logging`: loggers `velocior.error` (a startup line per listener,
    errors with reasons and tracebacks) and `velocior.access`.
    """

    def __init__(
        self,
        app: WSGIApplication,
        listeners: list[tuple[int, str, str]],
        options: dict[str, object],
    ) -> None: ...
    def run(self, wakeup_fd: int = -1) -> str:
        """Serve until stopped, releasing the GIL while waiting; return why it stopped.

        "stopped": stop() graceful (in-flight requests finished or graceful_timeout hit);
        "quick": stop(graceful=False); "max-requests": max_requests were served.
        `wakeup_fd`: the read end of the pipe given to `signal.set_wakeup_fd()`; when a byte
        arrives the loop runs Python's signal handlers on its thread; if a handler raises
        (KeyboardInterrupt), run() stops at once (quick) and re-raises it.
        """
    def stop(self, graceful: bool = True) -> None:
        """Ask run() to stop. Safe from a signal handler (same thread) and from any thread."""
    @property
    def requests_served(self) -> int:
        """Requests answered so far."""
    @property
    def busy_threads(self) -> int:
        """App threads (threads > 1) still inside a request: after a quick stop they may go on
        running the app, and the interpreter must not be finalized under them (os._exit)."""
