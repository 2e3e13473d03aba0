"""Timeouts and the connection cap. The servers here run with 1-second timeouts so the tests are
quick; the assertions are about what happens (closed, served, dropped), never about how fast."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from helpers import (
    Closed,
    Conn,
    http_get,
    qs,
    request,
    start_server,
    state,
    stop_checked,
    token,
    wait_state,
)
from support import ServerProcess

TIMEOUTS = ["--header-timeout", "1", "--keep-alive", "1", "--body-timeout", "1",
            "--write-timeout", "1"]


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    s = start_server("apps.echo:app", *TIMEOUTS)
    yield s
    stop_checked(s)


def assert_closed_without_success(c: Conn) -> None:
    """Closed by the server (bounded wait); a 408/400 answer first is fine, a 2xx is not."""
    raw = c.wait_closed(20)
    assert raw == b"" or raw.startswith((b"HTTP/1.1 408 ", b"HTTP/1.1 400 ")), raw[:200]


def test_silent_client_is_closed(srv: ServerProcess) -> None:
    with Conn.tcp(srv.host, srv.port) as c:
        assert_closed_without_success(c)


def test_partial_head_is_closed(srv: ServerProcess) -> None:
    with Conn.tcp(srv.host, srv.port) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        assert_closed_without_success(c)


def test_trickled_head_is_closed(srv: ServerProcess) -> None:
    """Slowloris: a header line every 200 ms is progress, but the whole head never completes."""
    with Conn.tcp(srv.host, srv.port) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        for i in range(100):  # 20 s at most
            try:
                c.send(b"X-Slow-%d: v\r\n" % i)
            except OSError:
                break
            if not c.nothing_within(0.2):
                break
        else:
            raise AssertionError("a trickling client kept its connection for 20 s")
        if not c.eof:
            assert_closed_without_success(c)


def test_idle_keep_alive_is_closed(srv: ServerProcess) -> None:
    with Conn.tcp(srv.host, srv.port) as c:
        c.send(request("GET", "/hello"))
        assert c.read_response().body == b"Hello, World!"
        assert c.wait_closed(20) == b""


def test_slow_app_is_not_cut_by_connection_timeouts(srv: ServerProcess) -> None:
    # the app runs longer than every timeout: none of them applies while the app works
    with Conn.tcp(srv.host, srv.port) as c:
        c.send(request("GET", "/sleep?s=2.5"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"slept"


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_stalled_body_closes_and_app_read_fails(srv: ServerProcess, use_chunked: bool) -> None:
    tok = token("stall")
    with Conn.tcp(srv.host, srv.port) as c:
        if use_chunked:
            # beyond what the server reads before calling the app, then stop mid-chunk
            c.send(request("POST", "/readsome?" + qs(token=tok),
                           [("Transfer-Encoding", "chunked")])
                   + b"20000\r\n" + b"a" * 100000)
        else:
            c.send(request("POST", "/readsome?" + qs(token=tok),
                           [("Content-Length", "1000000")]) + b"a" * 100000)
        raw = c.wait_closed(20)
    assert not raw.startswith(b"HTTP/1.1 2"), raw[:200]
    # if the app was already reading (the body is larger than what is read before the app is
    # called, so it should be), its read failed: it was not handed a short body as complete
    st = state(srv, tok)
    if st:
        st = wait_state(srv, tok, "outcome")
        assert st["outcome"] == "raised", st
        assert st["got"] <= 100000
    assert http_get(srv, "/hello").status == 200


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_body_cut_by_client_eof_is_not_complete(srv: ServerProcess, use_chunked: bool) -> None:
    tok = token("eof")
    with Conn.tcp(srv.host, srv.port) as c:
        if use_chunked:
            c.send(request("POST", "/readsome?" + qs(token=tok),
                           [("Transfer-Encoding", "chunked")]) + b"100\r\n" + b"b" * 10)
        else:
            c.send(request("POST", "/readsome?" + qs(token=tok),
                           [("Content-Length", "1000")]) + b"b" * 10)
        c.sock.shutdown(socket.SHUT_WR)
        raw = c.wait_closed(20)
    assert not raw.startswith(b"HTTP/1.1 2"), raw[:200]
    st = state(srv, tok)
    # the app may not even have been called (the server saw the EOF first); if it was, its read
    # failed instead of returning a short body as complete
    if st:
        st = wait_state(srv, tok, "outcome")
        assert st["outcome"] == "raised", st


def test_client_that_stops_reading_is_dropped(srv: ServerProcess) -> None:
    tok = token("nowrite")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect((srv.host, srv.port))
    stalled = Conn(s)
    try:
        stalled.send(request("GET", "/big?" + qs(mb=1024, token=tok)))
        stalled.read_head()
        # while that client is stuck, everybody else is served
        for _ in range(3):
            assert http_get(srv, "/hello").body == b"Hello, World!"
        # ... and the server gives up on it: the response is abandoned and close() called
        st = wait_state(srv, tok, "closed", timeout=30)
        assert st["closed"] == 1 and "exhausted" not in st
        got = len(stalled.read_to_eof()) if not stalled.eof else 0
        assert got < (1 << 30)
    finally:
        stalled.close()
    assert http_get(srv, "/hello").status == 200


def test_many_stalled_readers_do_not_block_the_server(srv: ServerProcess) -> None:
    toks = [token("nowrite-many") for _ in range(4)]
    socks = []
    try:
        for t in toks:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.connect((srv.host, srv.port))
            s.sendall(request("GET", "/big?" + qs(mb=256, token=t)))
            socks.append(s)
        assert http_get(srv, "/hello").body == b"Hello, World!"
        for t in toks:
            assert wait_state(srv, t, "closed", timeout=30)["closed"] == 1
    finally:
        for s in socks:
            s.close()


# --- the connection cap ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def capped() -> Iterator[ServerProcess]:
    s = start_server("apps.echo:app", "--max-connections", "4", "--header-timeout", "2",
                     "--keep-alive", "60")
    yield s
    stop_checked(s)


def test_connection_cap_closes_idle_keep_alive_first(capped: ServerProcess) -> None:
    conns = []
    try:
        for i in range(10):
            c = Conn.tcp(capped.host, capped.port)
            conns.append(c)
            c.send(request("GET", f"/echo?n={i}"))
            r = c.read_response()  # every newcomer is served: idle ones make room
            assert r.json()["QUERY_STRING"] == f"n={i}"
        alive = 0
        for c in conns:
            try:
                c.send(request("GET", "/hello"))
                if c.read_response().body == b"Hello, World!":
                    alive += 1
            except (Closed, OSError):
                pass
        # the idle keep-alive connections over the cap were closed by the server
        assert 1 <= alive <= 4, alive
    finally:
        for c in conns:
            c.close()


def test_silent_connection_flood_does_not_lock_out_clients(capped: ServerProcess) -> None:
    silent = [Conn.tcp(capped.host, capped.port) for _ in range(12)]
    try:
        result: list[object] = []

        def client() -> None:
            try:
                with Conn.tcp(capped.host, capped.port, timeout=30) as c:
                    c.send(request("GET", "/hello"))
                    result.append(c.read_response().body)
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                result.append(e)

        t = threading.Thread(target=client)
        t.start()
        t.join(40)
        assert result == [b"Hello, World!"]
    finally:
        for c in silent:
            c.close()
