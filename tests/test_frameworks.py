"""Real frameworks served end to end: a Flask app and a single-file Django project, over HTTP
(http.client) and over uwsgi packets."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator

import django  # noqa: F401 - a test dependency: missing means failing, never skipping
import flask  # noqa: F401
import pytest
import uwsgi_client as uw
from helpers import start_server, stop, wait_log_since
from support import ServerProcess


@pytest.fixture(scope="module")
def flask_srv() -> Iterator[ServerProcess]:
    srv = start_server("apps.flask_app:app", uwsgi=True)
    yield srv
    stop(srv)


@pytest.fixture(scope="module")
def django_srv() -> Iterator[ServerProcess]:
    srv = start_server("apps.django_app:application", uwsgi=True)
    yield srv
    stop(srv)


def call(srv: ServerProcess, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                     f"{v}\r\n".encode())
    for k, data in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; '
                     f'filename="{k}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


# --- Flask -----------------------------------------------------------------------------------


def test_flask_hello(flask_srv: ServerProcess) -> None:
    status, headers, body = call(flask_srv, "GET", "/")
    assert status == 200 and body == b"Hello from Flask"
    assert headers["content-type"].startswith("text/html")


def test_flask_json_roundtrip(flask_srv: ServerProcess) -> None:
    payload = {"name": "velocior", "n": [1, 2, 3], "text": "h\u00e9llo"}
    status, _, body = call(flask_srv, "POST", "/json?x=1", json.dumps(payload).encode(),
                           {"Content-Type": "application/json"})
    assert status == 200
    assert json.loads(body) == {"received": payload, "args": {"x": "1"}}


def test_flask_multipart_upload(flask_srv: ServerProcess) -> None:
    ctype, data = multipart({"title": "report"}, {"upload": bytes(range(256)) * 4096})
    status, _, body = call(flask_srv, "POST", "/form", data, {"Content-Type": ctype})
    assert status == 200
    assert json.loads(body) == {"form": {"title": "report"}, "files": {"upload": 1 << 20}}


def test_flask_streamed_response(flask_srv: ServerProcess) -> None:
    status, headers, body = call(flask_srv, "GET", "/stream")
    assert status == 200
    assert headers.get("transfer-encoding") == "chunked"
    assert body == "".join(f"line {i}\n" for i in range(100)).encode()


def test_flask_request_properties(flask_srv: ServerProcess) -> None:
    status, _, body = call(flask_srv, "GET", "/headers", headers={"User-Agent": "ua/1"})
    assert status == 200
    assert json.loads(body) == {"host": f"{flask_srv.host}:{flask_srv.port}", "user_agent": "ua/1",
                                "scheme": "http", "remote": "127.0.0.1", "path": "/headers"}


def test_flask_redirect_and_404(flask_srv: ServerProcess) -> None:
    status, headers, _ = call(flask_srv, "GET", "/redirect")
    assert status == 302 and headers["location"] == "/"
    assert call(flask_srv, "GET", "/missing")[0] == 404


def test_flask_view_error_is_500_and_logged(flask_srv: ServerProcess) -> None:
    mark = len(flask_srv.log())
    status, _, body = call(flask_srv, "GET", "/boom")
    assert status == 500 and b"flask view failure" not in body
    wait_log_since(flask_srv, mark, "flask view failure")


def test_flask_over_uwsgi(flask_srv: ServerProcess) -> None:
    target = ("127.0.0.1", flask_srv.uwsgi_port)  # type: ignore[attr-defined]
    resp, rest = uw.roundtrip(target, uw.cgi_vars(path="/headers", https=True, server_port=443,
                                                  headers=[("User-Agent", "nginx-ua")]))
    assert resp.status == 200 and rest == b""
    assert json.loads(resp.body) == {"host": "example.test", "user_agent": "nginx-ua",
                                     "scheme": "https", "remote": "203.0.113.7",
                                     "path": "/headers"}
    body = json.dumps({"a": 1}).encode()
    resp, _ = uw.roundtrip(target, uw.cgi_vars(method="POST", path="/json", body=body,
                                               content_type="application/json"), body)
    assert json.loads(resp.body) == {"received": {"a": 1}, "args": {}}


def test_flask_server_alive(flask_srv: ServerProcess) -> None:
    assert flask_srv.proc.poll() is None
    assert "panicked" not in flask_srv.log()


# --- Django ----------------------------------------------------------------------------------


def test_django_hello(django_srv: ServerProcess) -> None:
    status, headers, body = call(django_srv, "GET", "/")
    assert status == 200 and body == b"Hello from Django"
    assert headers["content-type"] == "text/plain"


def test_django_echo(django_srv: ServerProcess) -> None:
    status, _, body = call(django_srv, "POST", "/echo/?a=1&b=two", b"raw body \xc3\xa9",
                           {"Content-Type": "text/plain; charset=utf-8",
                            "Cookie": "session=abc; theme=dark"})
    assert status == 200
    assert json.loads(body) == {
        "method": "POST", "path": "/echo/", "query": {"a": "1", "b": "two"},
        "body": "raw body \u00e9", "content_type": "text/plain",
        "host": f"{django_srv.host}:{django_srv.port}", "secure": False,
        "cookie": {"session": "abc", "theme": "dark"},
    }


def test_django_multipart_upload(django_srv: ServerProcess) -> None:
    ctype, data = multipart({"k": "v"}, {"f": b"\x00\xff" * 300000})
    status, _, body = call(django_srv, "POST", "/form/", data, {"Content-Type": ctype})
    assert status == 200
    assert json.loads(body) == {"form": {"k": "v"}, "files": {"f": 600000}}


def test_django_streaming_response(django_srv: ServerProcess) -> None:
    status, _, body = call(django_srv, "GET", "/stream/")
    assert status == 200
    assert [json.loads(x) for x in body.splitlines()] == [{"i": i} for i in range(100)]


def test_django_404(django_srv: ServerProcess) -> None:
    assert call(django_srv, "GET", "/nope/")[0] == 404


def test_django_over_uwsgi(django_srv: ServerProcess) -> None:
    target = ("127.0.0.1", django_srv.uwsgi_port)  # type: ignore[attr-defined]
    body = b"from nginx"
    resp, rest = uw.roundtrip(target, uw.cgi_vars(
        method="POST", path="/echo/", query="q=1", body=body, content_type="text/plain",
        https=True, server_port=443), body)
    assert resp.status == 200 and rest == b""
    got = json.loads(resp.body)
    assert got["body"] == "from nginx" and got["secure"] is True
    assert got["host"] == "example.test" and got["query"] == {"q": "1"}
    resp, _ = uw.roundtrip(target, uw.cgi_vars(path="/stream/"))
    assert resp.header("transfer-encoding") is None
    assert len(resp.body.splitlines()) == 100


def test_django_server_alive(django_srv: ServerProcess) -> None:
    assert django_srv.proc.poll() is None
    assert "panicked" not in django_srv.log()
