"""The smallest app: `Hello, World!` for every request; also a factory for `module:factory()`."""

from __future__ import annotations

from typing import Any, Callable


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = b"Hello, World!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def create_app() -> Callable[..., list[bytes]]:
    return app


application = app
