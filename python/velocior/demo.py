"""A small demo WSGI application: `velocior velocior.demo:app`, then open http://127.0.0.1:8000.

Pages: `/` (this overview), `/hello` (plain text), `/environ` (the WSGI environ of the request),
`/echo` (a form whose body comes back), `/stream` (a streamed, chunked response), `/json`.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from velocior import __version__

StartResponse = Callable[..., Any]

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem;
       color: #1d2330; background: #fbfbfd; }
h1 { font-weight: 650; letter-spacing: -0.02em; margin-bottom: 0; }
h1 span { color: #d9480f; }
.tag { color: #5c6370; margin-top: 0; }
a { color: #1c5fd6; }
code, pre { background: #eef0f5; border-radius: 4px; padding: 0.1em 0.35em; }
pre { padding: 0.8em; overflow-x: auto; }
table { border-collapse: collapse; font-size: 14px; }
td { border-top: 1px solid #e3e5ea; padding: 0.2em 0.6em; vertical-align: top; }
td:first-child { font-family: monospace; white-space: nowrap; }
"""


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html lang=en><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width'><title>{title}</title>"
            f"<style>{_STYLE}</style><body>{body}</body></html>").encode()


def _home(environ: dict[str, Any]) -> bytes:
    host = html.escape(environ.get("HTTP_HOST", "127.0.0.1:8000"))
    return _page("Velocior", f"""
<h1>Velocior <span>&#9889;</span></h1>
<p class=tag>A fast WSGI server written in Rust &middot; version {__version__} &middot;
worker pid {os.getpid()}</p>
<p>It works: this page is a WSGI application served by Velocior, over HTTP/1.1 here, or over the
uwsgi protocol behind nginx.</p>
<ul>
<li><a href="/hello">/hello</a> &mdash; the smallest response, plain text</li>
<li><a href="/environ">/environ</a> &mdash; the WSGI environ of your request</li>
<li><a href="/echo">/echo</a> &mdash; post a form, get its body back</li>
<li><a href="/stream">/stream</a> &mdash; a response streamed in chunks</li>
<li><a href="/json">/json</a> &mdash; a small JSON document</li>
</ul>
<p>Serve your own app:</p>
<pre>velocior --http 127.0.0.1:8000 --workers 2 myproject.wsgi:application
curl http://{host}/hello</pre>
<p>Or from Python: <code>velocior.serve(app, http="127.0.0.1:8000")</code>.
Options: <code>velocior --help</code>.</p>""")


def _environ_page(environ: dict[str, Any]) -> bytes:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(repr(environ[k]))}</td></tr>"
                   for k in sorted(environ))
    return _page("environ", f"<h1>environ</h1><p><a href='/'>back</a></p><table>{rows}</table>")


def _echo(environ: dict[str, Any]) -> bytes:
    if environ["REQUEST_METHOD"] != "POST":
        return _page("echo", """<h1>echo</h1><p><a href='/'>back</a></p>
<form method=post><textarea name=text rows=4 cols=50>Hello, Velocior!</textarea><br>
<button>Send</button></form>""")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(min(length, 1 << 20)) if length else b""
    return _page("echo", f"<h1>echo</h1><p><a href='/echo'>again</a></p>"
                         f"<p>{len(body)} bytes received:</p>"
                         f"<pre>{html.escape(body.decode('utf-8', 'replace'))}</pre>")


def _stream() -> Iterator[bytes]:
    yield b"Counting, one chunk every 0.2 s:\n"
    for i in range(1, 11):
        time.sleep(0.2)
        yield f"{i}\n".encode()
    yield b"Done.\n"


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The demo application (WSGI)."""
    path = environ.get("PATH_INFO", "/")
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                                  ("Content-Length", "13")])
        return [b"Hello, World!"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return _stream()
    if path == "/json":
        doc = {"server": "velocior", "version": __version__, "pid": os.getpid(),
               "method": environ["REQUEST_METHOD"], "path": path,
               "query": environ.get("QUERY_STRING", "")}
        body = json.dumps(doc, indent=2).encode() + b"\n"
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    pages: dict[str, Callable[[dict[str, Any]], bytes]] = {
        "/": _home, "/environ": _environ_page, "/echo": _echo}
    page = pages.get(path)
    if page is None:
        body = _page("not found", f"<h1>404</h1><p>Nothing at {html.escape(path)}. "
                                  "<a href='/'>Home</a></p>")
        start_response("404 Not Found", [("Content-Type", "text/html; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]
    body = page(environ)
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


application = app
