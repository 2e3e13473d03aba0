"""--max-body-size: 413 for a declared length over the limit (HTTP and uwsgi), before the body is
read; a chunked body that grows past it gets 413 when it is read ahead, and fails the app's read
(500) when it is streamed: never silently truncated."""

from __future__ import annotations

import uwsgi_client as uw
from helpers import Conn, chunked, read_log, request, start_server, stop

LIMIT = 1000


def test_max_body_size() -> None:
    srv = start_server("apps.lab:app", "--max-body-size", str(LIMIT), uwsgi=True)
    try:
        with Conn.tcp(srv.host, srv.port) as c:
            # At the limit: accepted and read whole.
            c.send(request("POST", "/hash", body=b"x" * LIMIT))
            r = c.read_response()
            assert r.status == 200 and r.json()["len"] == LIMIT
            # Over it: 413 from the head alone (no body is sent), then the connection closes.
            c.send(b"POST /hash HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n")
            r = c.read_response()
            assert r.status == 413
            assert c.wait_closed(10) == b""
        over = chunked([b"y" * 600, b"y" * 600])
        with Conn.tcp(srv.host, srv.port) as c:
            c.send(request("POST", "/hash", body=over, headers=[("Transfer-Encoding", "chunked")]))
            assert c.read_response().status == 413
        resp, rest = uw.roundtrip(("127.0.0.1", srv.uwsgi_port),  # type: ignore[attr-defined]
                                  uw.cgi_vars(method="POST", path="/hash", body=b"z" * (LIMIT + 1)),
                                  b"z" * (LIMIT + 1))
        assert resp.status == 413 and rest == b""
        log = read_log(srv)
        assert "over --max-body-size" in log
        assert "exceeds --max-body-size" in log
    finally:
        assert stop(srv) == 0
    # Streamed (nothing read ahead): the app's wsgi.input.read() raises, the app answers 500.
    srv = start_server("apps.lab:app", "--max-body-size", str(LIMIT), "--max-body-in-memory", "0")
    try:
        with Conn.tcp(srv.host, srv.port) as c:
            # Expect: 100-continue keeps the body back until the app reads: nothing is read ahead.
            c.send(request("POST", "/hash", headers=[("Transfer-Encoding", "chunked"),
                                                     ("Expect", "100-continue")]))
            assert c.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 100 ")
            c.send(over)
            assert c.read_response().status == 500
        assert "exceeds --max-body-size" in read_log(srv)
    finally:
        assert stop(srv) == 0
