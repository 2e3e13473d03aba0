"""The WSGI apps every server runs in the benchmark (the same code for all of them).

`app` routes on PATH_INFO, hello first so the keep-alive figure pays one comparison only:
  /        "Hello, World!" (13 bytes, list of one bytes object)
  /64k     a 64 KiB body in one bytes object
  /echo    the request body read whole from wsgi.input and sent back (the 1 MiB POST scenario)
  /stream  a generator of STREAM_CHUNKS chunks of STREAM_CHUNK_SIZE bytes (no Content-Length, so
           HTTP/1.1 servers answer chunked, and the per-chunk write path is what is measured)

Module attributes `hello`, `big`, `echo`, `stream` are the single-purpose apps, for a quick check.
"""

from __future__ import annotations

# The app a real deployment would run imports no typing machinery; neither does this one, so
# the peak RSS the bench reports is the server's (typing alone is about 1.8 MiB here).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    StartResponse = Callable[..., Any]
    Environ = dict[str, Any]

HELLO = b"Hello, World!"
BIG = b"x" * (64 * 1024)
STREAM_CHUNKS = 100
STREAM_CHUNK_SIZE = 256
STREAM_CHUNK = b"s" * (STREAM_CHUNK_SIZE - 1) + b"\n"

_HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
_BIG_HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))]
_STREAM_HEADERS = [("Content-Type", "text/plain")]


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", _HELLO_HEADERS)
    return [HELLO]


def big(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", _BIG_HEADERS)
    return [BIG]


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    # Read in pieces: some servers hand out a socket-backed stream whose read(n) may return less.
    parts = []
    remaining = length
    while remaining > 0:
        part = stream.read(min(remaining, 256 * 1024))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    body = b"".join(parts)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _chunks() -> Iterator[bytes]:
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK


def stream(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", _STREAM_HEADERS)
    return _chunks()


def not_found(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]


_ROUTES = {"/64k": big, "/echo": echo, "/stream": stream}


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/":
        start_response("200 OK", _HELLO_HEADERS)
        return [HELLO]
    return _ROUTES.get(path, not_found)(environ, start_response)


application = app
