"""WSGI apps for the tests through nginx (tests/test_nginx.py, tests/test_scaleout.py).

One app, `app`, routes on PATH_INFO so that one server answers every case. Files the apps serve,
and the records their close() writes, live in the directory named by $VELOCIOR_TEST_FILES.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable
from urllib.parse import parse_qs

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

FILES = os.environ.get("VELOCIOR_TEST_FILES", "")

# Request headers (as environ keys) the differential echo reports. Others are left out on purpose:
# nginx adds its own on proxy_pass (X-Forwarded-*, Connection) and the HTTP_* set differs.
# REMOTE_ADDR and SERVER_NAME/PORT are left out too: they describe the hop (see test_nginx.py).
ECHO_HEADERS = ("HTTP_HOST", "HTTP_COOKIE", "HTTP_ACCEPT", "HTTP_USER_AGENT")

STATUSES = {
    200: "200 OK",
    201: "201 Created",
    202: "202 Accepted",
    299: "299 Custom Reason With Spaces",
    301: "301 Moved Permanently",
    404: "404 Not Found",
    410: "410 Gone Fishing",
    418: "418 I'm a teapot",
    451: "451 Unavailable For Legal Reasons",
    503: "503 Service Unavailable",
    599: "599 Odd But Valid",
}


def chunk(i: int) -> bytes:
    """Chunk `i` of the streaming app: varied sizes and contents, so a lost, doubled or reordered
    chunk shows in the bytes."""
    size = 1 + (i * 7919) % 4000
    return f"[{i:04d}:{size}]".encode() + bytes((i + k) % 251 for k in range(size))


def stream_body(n: int) -> bytes:
    return b"".join(chunk(i) for i in range(n))


def _path_bytes(environ: Environ) -> bytes:
    # PEP 3333: PATH_INFO is the raw bytes decoded as latin-1.
    return str(environ.get("PATH_INFO", "")).encode("latin-1")


def _json(start_response: StartResponse, obj: object, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(obj, sort_keys=True, ensure_ascii=True).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _query(environ: Environ) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""),
                                          keep_blank_values=True).items()}


def _record(name: str, obj: object) -> None:
    """Write a record file atomically, for the test to read."""
    if not FILES:
        raise RuntimeError("VELOCIOR_TEST_FILES is not set: nowhere to write " + name)
    path = os.path.join(FILES, name)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)


class RecordedStream:
    """An iterable result whose close() writes how far iteration went to a record file."""

    def __init__(self, token: str, n: int, size: int, delay: float) -> None:
        self.token, self.n, self.size, self.delay = token, n, size, delay
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        block = b"x" * self.size
        for _ in range(self.n):
            self.sent += 1
            yield block
            if self.delay:
                time.sleep(self.delay)

    def close(self) -> None:
        _record(f"closed-{self.token}.json", {"sent": self.sent, "total": self.n})


def echo_env(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """What must be the same whichever way the request came in."""
    report = {
        "REQUEST_METHOD": environ["REQUEST_METHOD"],
        "SCRIPT_NAME": environ.get("SCRIPT_NAME", ""),
        "PATH_INFO_utf8": _path_bytes(environ).decode("utf-8", "backslashreplace"),
        "QUERY_STRING": environ.get("QUERY_STRING", ""),
        # PEP 3333 allows CONTENT_LENGTH / CONTENT_TYPE empty or absent when there is no body.
        "CONTENT_LENGTH": environ.get("CONTENT_LENGTH") or "",
        "CONTENT_TYPE": environ.get("CONTENT_TYPE") or "",
        "SERVER_PROTOCOL": environ.get("SERVER_PROTOCOL"),
        "wsgi.url_scheme": environ["wsgi.url_scheme"],
        "headers": {k: environ[k] for k in ECHO_HEADERS if k in environ},
        "x_test": {k: v for k, v in environ.items() if k.startswith("HTTP_X_TEST")},
        "body": environ["wsgi.input"].read().decode("latin-1"),
    }
    return _json(start_response, report)


def full_environ(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Every str-valued key, as the server set it."""
    report = {k: v for k, v in environ.items() if isinstance(v, str)}
    report["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    report["_body_length"] = str(len(environ["wsgi.input"].read()))
    return _json(start_response, report)


def body_echo(environ: Environ, start_response: StartResponse) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", environ.get("CONTENT_TYPE") or "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def body_digest(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Reads the body in pieces; `?mark=NAME` writes a record when the app is first called, so a
    test can see the app run before the client finished sending (unbuffered uploads)."""
    q = _query(environ)
    if "mark" in q:
        _record(f"mark-{q['mark']}.json", {"called": True})
    digest = hashlib.sha256()
    length = 0
    stream = environ["wsgi.input"]
    while True:
        data = stream.read(256 * 1024)
        if not data:
            break
        digest.update(data)
        length += len(data)
    return _json(start_response, {
        "length": length,
        "sha256": digest.hexdigest(),
        "CONTENT_LENGTH": environ.get("CONTENT_LENGTH"),
        "HTTP_TRANSFER_ENCODING": environ.get("HTTP_TRANSFER_ENCODING"),
    })


def stream(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    n = int(_query(environ).get("n", "1000"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (chunk(i) for i in range(n))


def file_download(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    name = os.path.basename(_query(environ)["name"])
    path = os.path.join(FILES, name)
    f = open(path, "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(os.path.getsize(path)))])
    wrapper = environ["wsgi.file_wrapper"]
    return wrapper(f, 256 * 1024)  # type: ignore[no-any-return]


def error(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("deliberate failure from nginx_apps.error")


def status(environ: Environ, start_response: StartResponse) -> list[bytes]:
    code = int(_path_bytes(environ).rsplit(b"/", 1)[1])
    headers = [("Content-Type", "text/plain")]
    if code == 301:
        headers.append(("Location", "/moved-here"))
    body = f"status {code}\n".encode()
    headers.append(("Content-Length", str(len(body))))
    start_response(STATUSES[code], headers)
    return [body]


def no_body(environ: Environ, start_response: StartResponse) -> list[bytes]:
    code = int(_path_bytes(environ).rsplit(b"/", 1)[1])
    if code == 204:
        start_response("204 No Content", [("X-Kind", "no-content")])
    else:
        start_response("304 Not Modified", [("ETag", '"v1"'), ("X-Kind", "not-modified")])
    return []


def cookies(environ: Environ, start_response: StartResponse) -> list[bytes]:
    body = json.dumps({"HTTP_COOKIE": environ.get("HTTP_COOKIE"),
                       "HTTP_X_TEST_MULTI": environ.get("HTTP_X_TEST_MULTI")}).encode()
    start_response("200 OK", [
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1; Path=/; HttpOnly"),
        ("Set-Cookie", "b=2; Path=/; Max-Age=60"),
        ("X-Repeated", "first"),
        ("X-Repeated", "second"),
        ("Cache-Control", "no-store"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


def big_headers(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Reports the size of each X-Test-Big-* request header it received."""
    sizes = {k: len(v) for k, v in environ.items() if k.startswith("HTTP_X_TEST_BIG")}
    return _json(start_response, sizes)


def x_accel(environ: Environ, start_response: StartResponse) -> list[bytes]:
    name = os.path.basename(_query(environ)["name"])
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("X-Accel-Redirect", f"/protected/{name}")])
    return [b"the app's own body, which nginx must replace with the file\n"]


def slow(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    q = _query(environ)
    if "mark" in q:
        _record(f"mark-{q['mark']}.json", {"called": True})
    time.sleep(float(q.get("sleep", "3")))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return RecordedStream(q.get("token", "slow"), 1, 16, 0.0)


def abortable(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """A long download (n blocks of `size` bytes, `delay` s apart) whose close() is recorded."""
    q = _query(environ)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return RecordedStream(q["token"], int(q.get("n", "2000")), int(q.get("size", "65536")),
                          float(q.get("delay", "0.01")))


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]


def whoami(environ: Environ, start_response: StartResponse) -> list[bytes]:
    body = os.environ.get("VELOCIOR_TEST_BACKEND", "?").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


ROUTES: dict[bytes, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
    b"/echo-env": echo_env,
    b"/environ": full_environ,
    b"/echo": body_echo,
    b"/upload/digest": body_digest,
    b"/digest": body_digest,
    b"/stream": stream,
    b"/file": file_download,
    b"/error": error,
    b"/status": status,
    b"/nobody": no_body,
    b"/cookies": cookies,
    b"/big-headers": big_headers,
    b"/xaccel": x_accel,
    b"/slow": slow,
    b"/abortable": abortable,
    b"/hello": hello,
    b"/whoami": whoami,
}


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = _path_bytes(environ)
    for prefix, handler in ROUTES.items():
        if path == prefix or path.startswith(prefix + b"/"):
            return handler(environ, start_response)
    body = b"no such test route\n"
    start_response("404 Not Found", [("Content-Type", "text/plain"),
                                     ("Content-Length", str(len(body)))])
    return [body]
