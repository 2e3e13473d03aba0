"""An app wrapped in wsgiref.validate.validator: any PEP 3333 breach by the server raises inside
the app (AssertionError, or WSGIWarning turned into an error here) and shows up as a 500 and a
traceback in the log; an iterable the server forgets to close() is reported when collected."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any, Callable
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)

_FILE = os.path.join(tempfile.mkdtemp(prefix="velocior-validated-"), "data.bin")
with open(_FILE, "wb") as _f:
    _f.write(bytes(range(256)) * 1000)


def _read_all(stream: Any, length: str) -> bytes:
    parts = []
    if length:
        remaining = int(length)
        while remaining > 0:
            data = stream.read(min(remaining, 8192))
            if not data:
                break
            parts.append(data)
            remaining -= len(data)
    else:
        while True:
            data = stream.read(8192)
            if not data:
                break
            parts.append(data)
    return b"".join(parts)


def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    path = environ["PATH_INFO"]
    plain = [("Content-Type", "text/plain")]
    if path == "/":
        start_response("200 OK", plain)
        return [b"validated hello"]
    if path == "/body":
        body = _read_all(environ["wsgi.input"], environ.get("CONTENT_LENGTH", ""))
        start_response("200 OK", plain)
        return [b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())]
    if path == "/lines":
        inp = environ["wsgi.input"]
        first = inp.readline()
        part = inp.readline(3)
        rest = inp.readlines()
        start_response("200 OK", plain)
        return [first, b"|", part, b"|", b"".join(rest)]
    if path == "/iter":
        lines = list(environ["wsgi.input"])
        start_response("200 OK", plain)
        return [b"%d lines" % len(lines)]
    if path == "/gen":
        def gen() -> Iterator[bytes]:
            for i in range(200):
                yield b"%d," % i
        start_response("200 OK", plain)
        return gen()
    if path == "/write":
        write = start_response("200 OK", plain)
        write(b"written;")
        return [b"returned"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(os.path.getsize(_FILE)))])
        return environ["wsgi.file_wrapper"](open(_FILE, "rb"), 4096)
    if path == "/nocontent":
        start_response("204 No Content", [])
        return []
    if path == "/errors":
        environ["wsgi.errors"].write("validated errors stream\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", plain)
        return [b"ok"]
    start_response("404 Not Found", plain)
    return [b"not found"]


app = validator(inner)
application = app
