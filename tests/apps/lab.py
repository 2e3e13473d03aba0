"""The test suite's laboratory WSGI app: one route per behaviour under test.

Routes pick their behaviour from PATH_INFO and the query string. Things the client cannot see on
the wire (was close() called? did start_response raise? how often was read() called?) are recorded
in STATE under a client-chosen `token` and read back with `/state?token=...` on another
connection. The server runs a single process in these tests, so module globals are shared.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, Callable

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]

STATE: dict[str, dict[str, Any]] = {}
EVENTS: dict[str, threading.Event] = {}
LOCK = threading.Lock()


def record(token: str | None, **kv: Any) -> None:
    if not token:
        return
    with LOCK:
        st = STATE.setdefault(token, {})
        for k, v in kv.items():
            if k.endswith("+"):
                st[k[:-1]] = st.get(k[:-1], 0) + v
            else:
                st[k] = v


def event(token: str) -> threading.Event:
    with LOCK:
        return EVENTS.setdefault(token, threading.Event())


def query(environ: Environ) -> dict[str, str]:
    return {k: v[-1] for k, v in urllib.parse.parse_qs(
        environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def text(start_response: StartResponse, body: bytes, status: str = "200 OK",
         headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain")] + (headers or []))
    return [body]


def as_json(start_response: StartResponse, obj: object) -> list[bytes]:
    payload = json.dumps(obj, sort_keys=True).encode("ascii")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [payload]


def read_body(environ: Environ, chunk: int = 65536) -> bytes:
    """CONTENT_LENGTH bytes when given, else until the (terminated) stream ends."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    parts = []
    if length:
        remaining = int(length)
        while remaining > 0:
            data = stream.read(min(remaining, chunk))
            if not data:
                break
            parts.append(data)
            remaining -= len(data)
    else:
        while True:
            data = stream.read(chunk)
            if not data:
                break
            parts.append(data)
    return b"".join(parts)


def gen_chunk(i: int) -> bytes:
    """Chunk i of /gen: varied sizes, and an empty chunk now and then (must not end the body)."""
    if i % 100 == 50:
        return b""
    return (b"%06d|" % i) * (1 + i % 7)


class Recorded:
    """An iterable result whose close() and exhaustion are recorded under a token."""

    def __init__(self, token: str, chunks: Iterator[bytes]) -> None:
        self.token = token
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        for c in self.chunks:
            record(self.token, **{"yielded+": 1})
            yield c
        record(self.token, exhausted=True)

    def close(self) -> None:
        record(self.token, **{"closed+": 1})


class CountingFile(io.FileIO):
    """A real file (it has fileno()) that counts Python-level reads."""

    token = ""

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        record(self.token, **{"reads+": 1})
        return super().read(size)

    def readinto(self, b: Any) -> int:  # type: ignore[override]
        record(self.token, **{"reads+": 1})
        return super().readinto(b)

    def close(self) -> None:
        record(self.token, file_closed=True)
        super().close()


# --- routes ---------------------------------------------------------------------------------


def r_hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return text(start_response, b"Hello, World!")


def r_tuple(environ: Environ, start_response: StartResponse) -> tuple[bytes, ...]:
    n = int(query(environ).get("n", "3"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return tuple(b"%d;" % i for i in range(n))


def r_echo(environ: Environ, start_response: StartResponse) -> list[bytes]:
    body = read_body(environ)
    out: dict[str, Any] = {k: v for k, v in environ.items() if isinstance(v, str)}
    out["body_b64"] = base64.b64encode(body).decode("ascii")
    errors = environ["wsgi.errors"]
    inp = environ["wsgi.input"]
    out["wsgi"] = {
        "version": list(environ["wsgi.version"]),
        "version_type": type(environ["wsgi.version"]).__name__,
        "url_scheme": environ["wsgi.url_scheme"],
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "run_once": environ["wsgi.run_once"],
        "input_terminated": environ.get("wsgi.input_terminated"),
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
        "input_methods": [m for m in ("read", "readline", "readlines", "__iter__")
                          if callable(getattr(inp, m, None))],
        "errors_methods": [m for m in ("write", "writelines", "flush")
                           if callable(getattr(errors, m, None))],
        "environ_type": type(environ).__name__,
        "non_str_cgi_keys": sorted(k for k, v in environ.items()
                                   if "." not in k and not isinstance(v, str)),
    }
    payload = json.dumps(out, sort_keys=True).encode("ascii")
    headers = [("Content-Type", "application/json")]
    if environ["REQUEST_METHOD"] == "HEAD":
        headers.append(("X-Echo-B64", base64.b64encode(payload).decode("ascii")))
    start_response("200 OK", headers)
    return [payload]


def r_hash(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Read the body in 64 KiB pieces (never whole) and report its length and sha256."""
    h = hashlib.sha256()
    n = 0
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    remaining = int(length) if length else None
    while remaining is None or remaining > 0:
        want = 65536 if remaining is None else min(65536, remaining)
        data = stream.read(want)
        if not data:
            break
        h.update(data)
        n += len(data)
        if remaining is not None:
            remaining -= len(data)
    return as_json(start_response, {"len": n, "sha256": h.hexdigest()})


def r_gen(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    n = int(query(environ).get("n", "1000"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for i in range(n):
        yield gen_chunk(i)


def r_write(environ: Environ, start_response: StartResponse) -> Any:
    q = query(environ)
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"A-")
    write(b"B-")
    if q.get("gen"):
        def rest() -> Iterator[bytes]:
            yield b"C-"
            write(b"")  # an empty write is allowed and sends nothing
            yield b"D"
        return rest()
    return [b"C-", b"D"]


def r_excinfo(environ: Environ, start_response: StartResponse) -> Any:
    q = query(environ)
    tok = q.get("token")
    mode = q.get("mode", "before")
    if mode == "before":
        # Headers set, nothing sent yet: exc_info replaces them.
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Old", "1")])
        try:
            raise ValueError("handled inside the app")
        except ValueError:
            start_response("503 Replaced", [("Content-Type", "text/plain"), ("X-New", "1")],
                           sys.exc_info())
        return [b"replaced body"]
    if mode == "twice":
        # A second call without exc_info is an error the server must raise.
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            start_response("201 Created", [("Content-Type", "text/plain")])
            record(tok, second_call="accepted")
        except Exception as e:  # noqa: BLE001 - any exception counts, we record its type
            record(tok, second_call="raised", error=type(e).__name__)
        return [b"after second call"]
    if mode == "fresh":
        # exc_info on the first call is allowed (nothing was started).
        try:
            raise KeyError("x")
        except KeyError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"fresh error page"]

    # mode == "after": the head and a first chunk are on the wire; exc_info must re-raise.
    def body() -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first part;"
        try:
            raise RuntimeError("late failure marker-after")
        except RuntimeError:
            try:
                start_response("500 Late", [("Content-Type", "text/plain")], sys.exc_info())
            except Exception as e:  # noqa: BLE001 - record what was raised, then propagate
                record(tok, reraised=True, same=("marker-after" in str(e)),
                       error=type(e).__name__)
                raise
            record(tok, reraised=False)
        yield b"must not be sent"
    return body()


def r_close(environ: Environ, start_response: StartResponse) -> Any:
    q = query(environ)
    tok = q["token"]
    mode = q.get("mode", "normal")
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks() -> Iterator[bytes]:
        if mode == "normal":
            yield b"one;"
            yield b"two;"
            yield b"three"
        elif mode == "raise":
            yield b"one;"
            raise RuntimeError("iteration failure marker-close-raise")
        elif mode == "raise-first":
            raise RuntimeError("iteration failure marker-close-raise-first")
        elif mode == "stream":
            # Until the client goes away; bounded so a server that never notices still ends.
            for i in range(20000):
                yield b"chunk %06d\n" % i
                time.sleep(0.005)
    return Recorded(tok, chunks())


def r_error(environ: Environ, start_response: StartResponse) -> Any:
    mode = query(environ).get("mode", "before")
    if mode == "before":
        raise ZeroDivisionError("secret-detail-before-start")
    if mode == "after-start":
        # start_response called but no byte sent: still a clean 500.
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise LookupError("secret-detail-after-start-response")

    def body() -> Iterator[bytes]:
        if mode == "after-cl":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        else:
            start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial body;"
        raise ArithmeticError("secret-detail-after-body")
    return body()


def r_bad(environ: Environ, start_response: StartResponse) -> Any:
    mode = query(environ).get("mode")
    if mode == "nonbytes":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["a str, not bytes"]
    if mode == "nonbytes-gen":
        def body() -> Iterator[Any]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"fine;"
            yield 12345
        return body()
    if mode == "status-noreason":
        start_response("200", [("Content-Type", "text/plain")])
        return [b"x"]
    if mode == "status-word":
        start_response("OK 200", [("Content-Type", "text/plain")])
        return [b"x"]
    if mode == "status-crlf":
        start_response("200 OK\r\nX-Injected: yes", [("Content-Type", "text/plain")])
        return [b"x"]
    if mode == "status-bytes":
        start_response(b"200 OK", [("Content-Type", "text/plain")])
        return [b"x"]
    if mode == "nostart":
        return [b"start_response was never called"]
    if mode == "header-int":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Number", 5)])
        return [b"x"]
    if mode == "header-notuple":
        start_response("200 OK", ["Content-Type: text/plain"])
        return [b"x"]
    if mode == "header-not-latin1":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Price", "5 \u20ac")])
        return [b"x"]
    if mode == "status-not-latin1":
        start_response("200 \u2713", [("Content-Type", "text/plain")])
        return [b"x"]
    if mode == "latin1":
        # Latin-1 text beyond ASCII goes out as latin-1 bytes (PEP 3333), in name-safe values.
        start_response("200 Tr\u00e8s bien", [("Content-Type", "text/plain"),
                                              ("X-Latin", "caf\u00e9 \u00ff")])
        return [b"x"]
    if mode == "write-str":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write("not bytes")
        return [b"x"]
    if mode == "not-iterable":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return 42
    raise ValueError(f"unknown mode {mode}")


INJECTIONS = {
    "value-crlf": ("X-Bad", "a\r\nX-Injected: yes"),
    "value-lf": ("X-Bad", "a\nX-Injected: yes"),
    "value-cr": ("X-Bad", "a\rX-Injected: yes"),
    "value-nul": ("X-Bad", "a\x00X-Injected: yes"),
    "name-crlf": ("X-Bad\r\nX-Injected", "yes"),
    "name-lf": ("X-Bad\nX-Injected", "yes"),
    "name-nul": ("X-Bad\x00X-Injected", "yes"),
    "name-colon": ("X-Injected: yes\r\nX-Bad", "v"),
    "name-space": ("X Injected", "yes"),
}


def r_inject(environ: Environ, start_response: StartResponse) -> list[bytes]:
    name, value = INJECTIONS[query(environ)["mode"]]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Fine", "ok"), (name, value)])
    return [b"should never be sent with the bad header"]


def r_cl(environ: Environ, start_response: StartResponse) -> Any:
    q = query(environ)
    declared = int(q["declared"])
    actual = int(q["actual"])
    body = (b"0123456789" * (actual // 10 + 1))[:actual]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(declared))])
    if q.get("gen"):
        def gen() -> Iterator[bytes]:
            for i in range(0, len(body), 7):
                yield body[i:i + 7]
        return gen()
    return [body]


def parts_body(sizes: str) -> list[bytes]:
    """Items of the given sizes, each with its own content (so order and cuts show)."""
    out = []
    for i, n in enumerate(int(x) for x in sizes.split(",")):
        pattern = b"%d:%c;" % (i, 97 + i % 26)
        out.append((pattern * (n // len(pattern) + 1))[:n])
    return out


def r_bodyecho(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """The request body read in 256 KiB pieces, joined and sent back."""
    stream = environ["wsgi.input"]
    parts = []
    while True:
        part = stream.read(256 * 1024)
        if not part:
            break
        parts.append(part)
    body = b"".join(parts)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def r_parts(environ: Environ, start_response: StartResponse) -> Any:
    """A list (or tuple) response of items of `sizes` bytes; `declared`: the app's own
    Content-Length."""
    q = query(environ)
    body = parts_body(q["sizes"])
    headers = [("Content-Type", "application/octet-stream")]
    if "declared" in q:
        headers.append(("Content-Length", q["declared"]))
    start_response("200 OK", headers)
    return tuple(body) if q.get("tuple") else body


def r_file(environ: Environ, start_response: StartResponse) -> Any:
    q = query(environ)
    path = q["path"]
    tok = q.get("token", "")
    kind = q.get("kind", "real")
    blksize = int(q.get("blksize", "65536"))
    seek = int(q.get("seek", "0"))
    size = os.path.getsize(path)
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl", "1") == "1":
        headers.append(("Content-Length", str(size - seek)))
    filelike: Any
    if kind == "real":
        f = CountingFile(path, "r")
        f.token = tok
        filelike = f
    else:  # "bytesio": not a real file, the wrapper must be iterated
        with open(path, "rb") as fh:
            filelike = io.BytesIO(fh.read())
    if seek:
        filelike.seek(seek)
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](filelike, blksize)


def r_input(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Run the comma-separated ops on wsgi.input; answer the list of results (latin-1 strings)."""
    inp = environ["wsgi.input"]
    results: list[Any] = []
    for op in query(environ).get("ops", "read").split(","):
        name, _, arg = op.partition(":")
        if name == "read":
            results.append(inp.read(int(arg)) if arg else inp.read())
        elif name == "readline":
            results.append(inp.readline(int(arg)) if arg else inp.readline())
        elif name == "readlines":
            results.append(inp.readlines(int(arg)) if arg else inp.readlines())
        elif name == "iter":
            results.append(list(inp))
        elif name == "readnone":
            results.append(inp.read(None))
        elif name == "readneg":
            results.append(inp.read(-1))
        else:
            raise ValueError(op)

    def enc(v: Any) -> Any:
        if isinstance(v, bytes):
            return v.decode("latin-1")
        if isinstance(v, list):
            assert all(isinstance(x, bytes) for x in v), v
            return [x.decode("latin-1") for x in v]
        raise TypeError(type(v))
    return as_json(start_response, [enc(r) for r in results])


def r_noread(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return text(start_response, b"ok, body not read")


def r_block(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Block (up to 60 s) until /release with the same token: an app that blocks on something."""
    tok = query(environ)["token"]
    record(tok, started=True)
    released = event(tok).wait(60)
    return text(start_response, b"released" if released else b"gave up waiting")


def r_release(environ: Environ, start_response: StartResponse) -> list[bytes]:
    event(query(environ)["token"]).set()
    return text(start_response, b"ok")


def r_waitfile(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Create `started`, then wait (up to 60 s) for the file `release` to exist."""
    q = query(environ)
    with open(q["started"], "w") as f:
        f.write("started")
    deadline = time.monotonic() + 60
    while not os.path.exists(q["release"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return text(start_response, b"finished after release")


def r_big(environ: Environ, start_response: StartResponse) -> Any:
    q = query(environ)
    tok = q.get("token", "")
    mb = int(q.get("mb", "100"))
    block = b"x" * (1 << 20)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(mb << 20))])
    return Recorded(tok, iter([block] * mb))


def r_errors(environ: Environ, start_response: StartResponse) -> list[bytes]:
    err = environ["wsgi.errors"]
    err.write("wsgi.errors line marker-errors-1\n")
    err.writelines(["marker-errors-2 ", "continued\n"])
    err.flush()
    return text(start_response, b"wrote to wsgi.errors")


def r_headers(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Answer with the headers given as h=Name:Value query pairs (repeatable)."""
    pairs = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    hdrs = [tuple(h.split(":", 1)) for h in pairs.get("h", [])]
    status = pairs.get("status", ["200 OK"])[0]
    start_response(status, [(k, v) for k, v in hdrs])
    body = pairs.get("body", [""])[0].encode("latin-1")
    return [body] if body else []


def r_sleep(environ: Environ, start_response: StartResponse) -> list[bytes]:
    time.sleep(float(query(environ).get("s", "0.2")))
    return text(start_response, b"slept")


def r_state(environ: Environ, start_response: StartResponse) -> list[bytes]:
    with LOCK:
        st = dict(STATE.get(query(environ)["token"], {}))
    return as_json(start_response, st)


def r_readsome(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Read the body with read(n) and record what happened (for stalled-body tests)."""
    q = query(environ)
    tok = q["token"]
    record(tok, started=True)
    got = 0
    try:
        while True:
            data = environ["wsgi.input"].read(4096)
            if not data:
                break
            got += len(data)
        record(tok, outcome="eof", got=got)
    except Exception as e:  # noqa: BLE001 - we record which exception the server raised
        record(tok, outcome="raised", error=type(e).__name__, got=got)
        raise
    return text(start_response, b"read %d" % got)


ROUTES: dict[str, Callable[[Environ, StartResponse], Any]] = {
    "/hello": r_hello,
    "/tuple": r_tuple,
    "/echo": r_echo,
    "/hash": r_hash,
    "/gen": r_gen,
    "/write": r_write,
    "/excinfo": r_excinfo,
    "/close": r_close,
    "/error": r_error,
    "/bad": r_bad,
    "/inject": r_inject,
    "/cl": r_cl,
    "/file": r_file,
    "/parts": r_parts,
    "/bodyecho": r_bodyecho,
    "/input": r_input,
    "/noread": r_noread,
    "/block": r_block,
    "/release": r_release,
    "/waitfile": r_waitfile,
    "/big": r_big,
    "/errors": r_errors,
    "/headers": r_headers,
    "/sleep": r_sleep,
    "/state": r_state,
    "/readsome": r_readsome,
}


def app(environ: Environ, start_response: StartResponse) -> Any:
    path = environ.get("PATH_INFO", "") or "/"
    first = "/" + path.lstrip("/").split("/", 1)[0]
    route = ROUTES.get(first)
    if route is None:
        return text(start_response, b"no route " + path.encode("latin-1"), "404 Not Found")
    return route(environ, start_response)


def echo_app(environ: Environ, start_response: StartResponse) -> Any:
    """The lab routes, and the environ echo (/echo) for every other path."""
    path = environ.get("PATH_INFO", "") or "/"
    route = ROUTES.get("/" + path.lstrip("/").split("/", 1)[0], r_echo)
    return route(environ, start_response)
