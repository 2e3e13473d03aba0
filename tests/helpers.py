"""Black-box client helpers: a byte-exact HTTP/1.x response reader on raw sockets, a launcher that
adds a uwsgi listener to `support.ServerProcess`, and /proc readers for the server's memory.

Nothing here normalises what the server sends: headers keep their case and order, bodies are the
bytes that came off the socket, and a connection that closes early is reported as such.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

from apps.lab import gen_chunk
from support import ServerProcess, free_port, wait_for_tcp, wait_for_unix

DEFAULT_TIMEOUT = 15.0


class Closed(Exception):
    """The peer closed (EOF) or reset the connection before the expected bytes arrived."""


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes = b""
    framing: str = "none"  # "length" | "chunked" | "close" | "none"
    complete: bool = True  # False: the connection ended inside the body
    interim: list[int] = field(default_factory=list)  # 1xx statuses seen before this response
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        vals = self.header_all(name)
        return vals[0] if vals else None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header_names(self) -> list[str]:
        return [k.lower() for k, _ in self.headers]

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body.decode("ascii"))  # type: ignore[no-any-return]


STATUS_LINE = re.compile(rb"^HTTP/(\d)\.(\d) (\d{3}) ([^\r\n]*)$")


class Conn:
    """One client connection with its own receive buffer."""

    def __init__(self, sock: socket.socket, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float = DEFAULT_TIMEOUT,
            source: str | None = None) -> Conn:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if source is not None:
            s.bind((source, 0))
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(s, timeout)

    @classmethod
    def unix(cls, path: str, timeout: float = DEFAULT_TIMEOUT) -> Conn:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s, timeout)

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def fill(self) -> None:
        if self.eof:
            raise Closed("connection already closed")
        try:
            data = self.sock.recv(262144)
        except (ConnectionResetError, ConnectionAbortedError) as e:
            self.eof = True
            raise Closed(f"reset: {e}") from None
        if not data:
            self.eof = True
            raise Closed("EOF")
        self.buf += data

    def read_until(self, marker: bytes) -> bytes:
        start = 0
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                end = i + len(marker)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            start = max(0, len(self.buf) - len(marker) + 1)
            self.fill()

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self) -> bytes:
        try:
            while True:
                self.fill()
        except Closed:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_head(self) -> Response:
        raw = self.read_until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        m = STATUS_LINE.match(lines[0])
        if not m:
            raise AssertionError(f"bad status line {lines[0][:200]!r}")
        headers = []
        for ln in lines[1:]:
            name, sep, value = ln.partition(b":")
            if not sep or not name or name != name.strip():
                raise AssertionError(f"malformed response header line {ln!r}")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        return Response(version=f"HTTP/{m.group(1).decode()}.{m.group(2).decode()}",
                        status=int(m.group(3)), reason=m.group(4).decode("latin-1"),
                        headers=headers, raw_head=raw)

    def read_response(self, head: bool = False, allow_truncated: bool = False,
                      skip_interim: bool = True) -> Response:
        """Read one response. HEAD responses (and 1xx/204/304) carry no body.

        With allow_truncated, a connection that ends inside the body gives a response whose
        `complete` is False instead of raising `Closed`.
        """
        interim: list[int] = []
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200 and skip_interim:
                interim.append(resp.status)
                continue
            break
        resp.interim = interim
        if head or 100 <= resp.status < 200 or resp.status in (204, 304):
            resp.framing = "none"
            return resp
        te = resp.header_all("transfer-encoding")
        cls = resp.header_all("content-length")
        if te:
            assert not cls, f"both Transfer-Encoding and Content-Length: {resp.raw_head!r}"
            assert [v.lower() for v in te] == ["chunked"], f"odd Transfer-Encoding {te}"
            resp.framing = "chunked"
            self._read_chunked(resp, allow_truncated)
        elif cls:
            assert len(cls) == 1, f"several Content-Length headers: {resp.raw_head!r}"
            assert cls[0].isdigit(), f"bad Content-Length {cls[0]!r}"
            resp.framing = "length"
            n = int(cls[0])
            try:
                resp.body = self.read_exact(n)
            except Closed:
                if not allow_truncated:
                    raise
                resp.body = bytes(self.buf)
                self.buf.clear()
                resp.complete = False
        else:
            resp.framing = "close"
            resp.body = self.read_to_eof()
        return resp

    def _read_chunked(self, resp: Response, allow_truncated: bool) -> None:
        parts: list[bytes] = []
        try:
            while True:
                line = self.read_until(b"\r\n")[:-2]
                size_text = line.split(b";", 1)[0]
                assert re.fullmatch(rb"[0-9A-Fa-f]+", size_text), f"bad chunk size {line!r}"
                size = int(size_text, 16)
                if size == 0:
                    while True:
                        t = self.read_until(b"\r\n")
                        if t == b"\r\n":
                            break
                        k, _, v = t[:-2].partition(b":")
                        resp.trailers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
                    break
                parts.append(self.read_exact(size))
                assert self.read_exact(2) == b"\r\n", "chunk data not followed by CRLF"
        except Closed:
            if not allow_truncated:
                raise
            resp.complete = False
        resp.body = b"".join(parts)

    def wait_closed(self, timeout: float | None = None) -> bytes:
        """Wait for EOF or reset; return whatever arrived first. Fails if still open."""
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            return self.read_to_eof()
        except (TimeoutError, socket.timeout):
            raise AssertionError(
                f"connection still open after {timeout}s; buffered {self.buf[:200]!r}") from None
        finally:
            self.sock.settimeout(self.timeout)

    def nothing_within(self, seconds: float) -> bool:
        """True if no byte arrives and the connection stays open for `seconds`."""
        self.sock.settimeout(seconds)
        try:
            self.fill()
            return False
        except (TimeoutError, socket.timeout):
            return True
        except Closed:
            return False
        finally:
            self.sock.settimeout(self.timeout)


def request(method: str, target: str, headers: Iterable[tuple[str, str]] = (),
            body: bytes = b"", version: str = "HTTP/1.1", host: str | None = "test",
            content_length: bool = True) -> bytes:
    """Build request bytes. Content-Length is added for a non-empty body unless told not to."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    names = set()
    for k, v in headers:
        lines.append(f"{k}: {v}")
        names.add(k.lower())
    if body and content_length and "content-length" not in names \
            and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(parts: Iterable[bytes], trailer: bytes = b"") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return out + b"0\r\n" + trailer + b"\r\n"


def gen_body(n: int) -> bytes:
    """What /gen?n=N sends."""
    return b"".join(gen_chunk(i) for i in range(n))


def qs(**params: object) -> str:
    return urllib.parse.urlencode({k: str(v) for k, v in params.items()})


def http_get(srv: ServerProcess, target: str, **kw: object) -> Response:
    """One request on a fresh connection, closed afterwards."""
    with Conn.tcp(srv.host, srv.port) as c:
        c.send(request("GET", target, **kw))  # type: ignore[arg-type]
        return c.read_response()


def state(srv: ServerProcess, token: str) -> dict:  # type: ignore[type-arg]
    """What the lab app recorded under `token` (see apps/lab.py)."""
    return http_get(srv, "/state?" + qs(token=token)).json()


def wait_state(srv: ServerProcess, token: str, key: str, timeout: float = 20.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        st = state(srv, token)
        if st.get(key):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"token {token}: {key!r} never set; state {st}\n{srv.log()}")
        time.sleep(0.05)


_token_counter = [0]


def token(prefix: str = "t") -> str:
    _token_counter[0] += 1
    return f"{prefix}{os.getpid()}-{_token_counter[0]}-{time.monotonic_ns()}"


# ---------------------------------------------------------------------------------------------
# Launching


def start_server(app: str, *args: str, uwsgi: bool = False, uwsgi_unix: bool = False,
                 env: dict[str, str] | None = None) -> ServerProcess:
    """Start `python -m velocior --http 127.0.0.1:P [--uwsgi 127.0.0.1:U] [--uwsgi PATH] ARGS APP`.

    Sets `srv.uwsgi_port` / `srv.uwsgi_path` (None when not asked for).
    """
    extra: list[str] = []
    uport = None
    upath = None
    if uwsgi:
        uport = free_port()
        extra += ["--uwsgi", f"127.0.0.1:{uport}"]
    if uwsgi_unix:
        upath = os.path.join(tempfile.mkdtemp(prefix="velocior-usock-"), "u.sock")
        extra += ["--uwsgi", upath]
    srv = ServerProcess(app, *extra, *args, env=env)
    try:
        if uport is not None:
            wait_for_tcp("127.0.0.1", uport, proc=srv.proc)
        if upath is not None:
            wait_for_unix(upath, proc=srv.proc)
    except Exception:
        srv.stop()
        raise RuntimeError(f"uwsgi listener did not come up: {read_log(srv)}") from None
    srv.uwsgi_port = uport  # type: ignore[attr-defined]
    srv.uwsgi_path = upath  # type: ignore[attr-defined]
    LIVE_SERVERS.append(srv)
    return srv


# Servers started by start_server and not yet stopped: conftest adds their log tails to failure
# reports.
LIVE_SERVERS: list[ServerProcess] = []


def check_alive(srv: ServerProcess) -> None:
    """The server is still running, still answers, and never panicked."""
    assert srv.proc.poll() is None, f"server died with {srv.proc.returncode}:\n{srv.log()}"
    r = http_get(srv, "/hello")
    assert r.status == 200 and r.body == b"Hello, World!", r
    log = srv.log()
    assert "panicked" not in log, log


def stop_checked(srv: ServerProcess) -> None:
    """Module teardown: the server survived everything the module did, then stops."""
    try:
        check_alive(srv)
    finally:
        stop(srv)


def read_log(srv: ServerProcess) -> str:
    """The server's log, also after stop() (ServerProcess.log() needs the file still open)."""
    with open(srv.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def stop(srv: ServerProcess) -> int:
    if srv in LIVE_SERVERS:
        LIVE_SERVERS.remove(srv)
    return srv.stop()


# ---------------------------------------------------------------------------------------------
# /proc


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def peak_rss_mib(pid: int) -> float:
    """Largest VmHWM (peak resident set) over the server process and its children."""
    return max(status_kib(p, "VmHWM") for p in process_tree(pid)) / 1024.0


def socket_fds(pid: int) -> int:
    n = 0
    for p in process_tree(pid):
        for fd in os.listdir(f"/proc/{p}/fd"):
            try:
                if os.readlink(f"/proc/{p}/fd/{fd}").startswith("socket:"):
                    n += 1
            except OSError:
                pass
    return n


def log_since(srv: ServerProcess, mark: int) -> str:
    return srv.log()[mark:]


def wait_log_since(srv: ServerProcess, mark: int, *needles: str, timeout: float = 10.0) -> str:
    """Wait until the log written after `mark` contains every needle (case-insensitive)."""
    deadline = time.monotonic() + timeout
    while True:
        text = srv.log()[mark:]
        low = text.lower()
        if all(n.lower() in low for n in needles):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{needles!r} not all in the new server log:\n{text}")
        time.sleep(0.05)
