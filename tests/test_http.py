"""HTTP/1.1 connection behaviour on raw sockets: keep-alive, pipelining, HTTP/1.0, HEAD,
100-continue, chunked request bodies, Connection: close, Date/Server, parse errors, threads."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apps.lab import parts_body
from helpers import (
    Conn,
    check_alive,
    chunked,
    gen_body,
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


def test_keep_alive_sequential_requests(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        for i in range(5):
            c.send(request("GET", f"/echo?i={i}"))
            r = c.read_response()
            assert r.status == 200
            assert r.version == "HTTP/1.1"
            assert (r.header("connection") or "").lower() != "close"
            assert r.json()["QUERY_STRING"] == f"i={i}"
        # still open and usable: one more request after the loop
        c.send(request("GET", "/hello"))
        assert c.read_response().body == b"Hello, World!"


def test_http_client_keep_alive(lab: ServerProcess) -> None:
    conn = http.client.HTTPConnection(lab.host, lab.port, timeout=15)
    try:
        for i in range(3):
            conn.request("POST", f"/echo?n={i}", body=b"x" * (i + 1),
                         headers={"Content-Type": "text/plain"})
            resp = conn.getresponse()
            data = json.loads(resp.read())
            assert resp.status == 200
            assert data["CONTENT_LENGTH"] == str(i + 1)
            assert data["CONTENT_TYPE"] == "text/plain"
        assert conn.sock is not None  # http.client drops the socket when the server closes
    finally:
        conn.close()


def test_pipelining_16_requests_in_one_write(lab: ServerProcess) -> None:
    reqs = []
    for i in range(16):
        if i % 5 == 3:
            reqs.append(request("POST", f"/echo?i={i}", body=b"body-%d" % i))
        elif i % 5 == 4:
            reqs.append(request("HEAD", f"/echo?i={i}"))
        elif i % 5 == 2:
            reqs.append(request("GET", f"/gen?n={10 + i}"))
        else:
            reqs.append(request("GET", f"/echo?i={i}"))
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(b"".join(reqs))
        for i in range(16):
            head = i % 5 == 4
            r = c.read_response(head=head)
            assert r.status == 200, (i, r)
            if i % 5 == 2:
                assert r.body == gen_body(10 + i), i
                continue
            if head:
                assert r.body == b""
                echo = json.loads(base64.b64decode(r.header("x-echo-b64") or ""))
            else:
                echo = r.json()
            assert echo["QUERY_STRING"] == f"i={i}", (i, echo["QUERY_STRING"])
            if i % 5 == 3:
                assert echo["body_b64"] == base64.b64encode(b"body-%d" % i).decode()
        # nothing more than 16 responses
        assert c.buf == b""
        assert c.nothing_within(0.3)


def test_pipelined_requests_split_at_every_byte_boundary(lab: ServerProcess) -> None:
    one = request("GET", "/hello")
    data = one * 3
    # the whole pipeline sent in two pieces, split at a few interesting places
    for cut in (1, len(one) - 3, len(one) - 1, len(one), len(one) + 5, 2 * len(one) - 2):
        with Conn.tcp(lab.host, lab.port) as c:
            c.send(data[:cut])
            time.sleep(0.02)
            c.send(data[cut:])
            for _ in range(3):
                assert c.read_response().body == b"Hello, World!"


@pytest.mark.parametrize("silence", [0.3, 1.5])
def test_client_silent_after_connecting_is_served(lab: ServerProcess, silence: float) -> None:
    # TCP listeners defer the accept until the first bytes arrive (or about a second has passed):
    # a client that connects, waits, then speaks is served either way.
    with Conn.tcp(lab.host, lab.port) as c:
        time.sleep(silence)
        c.send(request("GET", "/hello"))
        assert c.read_response().body == b"Hello, World!"
        c.send(request("GET", "/hello"))
        assert c.read_response().body == b"Hello, World!"


def test_http10_closes_without_keep_alive(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/hello", version="HTTP/1.0", host=None))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"Hello, World!"
        assert r.header("transfer-encoding") is None
        assert c.wait_closed() == b""


def test_http10_keep_alive_when_asked(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        for i in range(3):
            c.send(request("GET", f"/echo?i={i}", [("Connection", "keep-alive")],
                           version="HTTP/1.0", host=None))
            r = c.read_response()
            assert r.status == 200
            assert r.framing == "length", r.raw_head
            assert (r.header("connection") or "").lower() == "keep-alive", r.raw_head
            echo = r.json()
            assert echo["SERVER_PROTOCOL"] == "HTTP/1.0"
            assert echo["QUERY_STRING"] == f"i={i}"


@pytest.mark.parametrize("keep_alive", [False, True])
def test_http10_streamed_response_is_not_chunked(lab: ServerProcess, keep_alive: bool) -> None:
    hdrs = [("Connection", "keep-alive")] if keep_alive else []
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/gen?n=300", hdrs, version="HTTP/1.0", host=None))
        r = c.read_response()
        assert r.status == 200
        assert r.header("transfer-encoding") is None, r.raw_head
        assert r.body == gen_body(300)
        # a body of unknown length on HTTP/1.0 can only end with the connection
        if r.framing == "close":
            assert c.eof
        else:
            assert r.framing == "length"


def test_head_has_get_headers_and_no_body(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/hello") + request("HEAD", "/hello") + request("GET", "/hello"))
        get = c.read_response()
        head = c.read_response(head=True)
        after = c.read_response()
        assert get.status == head.status == 200
        assert get.body == b"Hello, World!" and after.body == b"Hello, World!"
        assert head.body == b""
        assert head.header("content-length") == get.header("content-length") == "13"
        assert head.header("content-type") == get.header("content-type")
        assert sorted(head.header_names()) == sorted(get.header_names())


def test_head_on_streamed_and_file_responses_sends_no_body(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("HEAD", "/gen?n=500") + request("HEAD", "/write?gen=1")
               + request("GET", "/hello"))
        r1 = c.read_response(head=True)
        r2 = c.read_response(head=True)
        assert r1.status == r2.status == 200
        # if any body byte had been sent, this would not parse as the /hello response
        last = c.read_response()
        assert last.status == 200 and last.body == b"Hello, World!"


def test_head_keeps_app_content_length(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("HEAD", "/cl?declared=1234&actual=1234") + request("GET", "/hello"))
        r = c.read_response(head=True)
        assert r.header("content-length") == "1234"
        assert c.read_response().body == b"Hello, World!"


def test_expect_100_continue_sent_when_app_reads(lab: ServerProcess) -> None:
    body = b"z" * 5000
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("POST", "/echo", [("Expect", "100-continue"),
                                         ("Content-Length", str(len(body)))]))
        interim = c.read_head()
        assert interim.status == 100, interim.raw_head
        assert interim.raw_head.startswith(b"HTTP/1.1 100 ")
        c.send(body)
        r = c.read_response()
        assert r.status == 200 and r.interim == []
        assert r.json()["body_b64"] == base64.b64encode(body).decode()
        # the connection carries on
        c.send(request("GET", "/hello"))
        assert c.read_response().body == b"Hello, World!"


def test_expect_100_continue_with_chunked_body(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("POST", "/echo", [("Expect", "100-continue"),
                                         ("Transfer-Encoding", "chunked")]))
        assert c.read_head().status == 100
        c.send(chunked([b"abc", b"defg"]))
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body_b64"] == base64.b64encode(b"abcdefg").decode()


def test_expect_100_continue_never_sent_when_app_does_not_read(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("POST", "/noread", [("Expect", "100-continue"),
                                           ("Content-Length", "100")]))
        r = c.read_response(skip_interim=False)
        assert r.status == 200, r.raw_head
        assert r.body == b"ok, body not read"


def test_expect_100_continue_not_sent_for_bodiless_request(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/echo", [("Expect", "100-continue")]))
        r = c.read_response(skip_interim=False)
        assert r.status == 200


def test_chunked_upload_with_extensions_and_trailer(lab: ServerProcess) -> None:
    body = (b"3;name=value\r\nabc\r\n"
            b"A\r\n0123456789\r\n"
            b"1;x=\"quoted\"\r\nZ\r\n"
            b"0\r\nX-Trailer: t\r\n\r\n")
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + body
               + request("GET", "/hello"))
        r = c.read_response()
        assert r.status == 200
        echo = r.json()
        assert base64.b64decode(echo["body_b64"]) == b"abc0123456789Z"
        assert echo.get("CONTENT_LENGTH", "") in ("", "14")
        assert "HTTP_CONTENT_LENGTH" not in echo
        assert c.read_response().body == b"Hello, World!"


def test_chunked_upload_sent_byte_by_byte(lab: ServerProcess) -> None:
    data = request("POST", "/echo?bb=1", [("Transfer-Encoding", "chunked")]) + chunked(
        [b"hello ", b"chunked ", b"world"])
    with Conn.tcp(lab.host, lab.port) as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
        r = c.read_response()
        assert r.status == 200
        assert base64.b64decode(r.json()["body_b64"]) == b"hello chunked world"


def test_large_chunked_upload_streams(lab: ServerProcess) -> None:
    parts = [bytes([i % 251]) * (10000 + i) for i in range(200)]  # ~3 MB, beyond any buffer
    whole = b"".join(parts)
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("POST", "/hash", [("Transfer-Encoding", "chunked")]) + chunked(parts))
        r = c.read_response()
        assert r.json() == {"len": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}


def test_connection_close_from_client(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/hello", [("Connection", "close")]) + request("GET", "/echo"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, World!"
        assert (r.header("connection") or "").lower() == "close"
        # the request after Connection: close is not answered
        assert c.wait_closed() == b""


def test_connection_close_on_streamed_response(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/gen?n=40", [("Connection", "close")]))
        r = c.read_response()
        assert r.body == gen_body(40)
        assert c.wait_closed() == b""


IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d GMT$")


def test_date_and_server_headers(lab: ServerProcess) -> None:
    before = time.time()
    r = http_get(lab, "/hello")
    after = time.time()
    dates = r.header_all("date")
    assert len(dates) == 1 and IMF_FIXDATE.match(dates[0]), dates
    when = email.utils.parsedate_to_datetime(dates[0]).timestamp()
    # the Date header tells the current time (to the second; a cached value may lag by one)
    assert before - 2 <= when <= after + 1, (before, dates[0], after)
    assert r.header_all("server") == ["velocior"]


def test_app_date_and_server_headers_are_not_duplicated(lab: ServerProcess) -> None:
    r = http_get(lab, "/headers?" + qs(h="Server:my-app/1.0") + "&"
                 + qs(h="Date:Tue, 15 Nov 1994 08:12:31 GMT") + "&" + qs(body="x"))
    assert r.status == 200
    assert r.header_all("server") == ["my-app/1.0"]
    assert r.header_all("date") == ["Tue, 15 Nov 1994 08:12:31 GMT"]


def test_204_and_304_have_no_body(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/headers?" + qs(status="204 No Content"))
               + request("GET", "/headers?" + qs(status="304 Not Modified"))
               + request("GET", "/hello"))
        r1 = c.read_response()
        r2 = c.read_response()
        assert (r1.status, r2.status) == (204, 304)
        assert r1.header("transfer-encoding") is None and r2.header("transfer-encoding") is None
        assert c.read_response().body == b"Hello, World!"


def test_many_concurrent_keep_alive_connections(lab: ServerProcess) -> None:
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            with Conn.tcp(lab.host, lab.port) as c:
                for i in range(3):
                    c.send(request("GET", f"/echo?c={n}&i={i}"))
                    r = c.read_response()
                    if r.json()["QUERY_STRING"] != f"c={n}&i={i}":
                        errors.append(f"{n}/{i}: {r.body[:100]!r}")
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(f"{n}: {e!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


# --- parse errors --------------------------------------------------------------------------

PARSE_ERRORS = [
    ("no-colon", b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400),
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bare-lf", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n", 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n", 400),
    ("cl-and-te", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("two-cl", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
     400),
    ("bad-cl", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\nx", 400),
    ("te-not-chunked-last", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip"
                            b"\r\n\r\n", 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("bad-request-line", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("target-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("head-too-large", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    ("too-many-headers", b"GET / HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", 431),
    ("unknown-method", b"FROBNICATE / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    ("unsupported-coding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked"
                           b"\r\n\r\n0\r\n\r\n", 501),
    ("http-1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    ("http-2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
]


@pytest.mark.parametrize("raw,status", [(r, s) for _, r, s in PARSE_ERRORS],
                         ids=[n for n, _, _ in PARSE_ERRORS])
def test_parse_error_status_and_close(lab: ServerProcess, raw: bytes, status: int) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        # a valid request pipelined after the bad one must never be answered
        c.send(raw + request("GET", "/hello"))
        r = c.read_response()
        assert r.status == status, (r.status, r.raw_head)
        assert (r.header("connection") or "").lower() == "close", r.raw_head
        assert c.wait_closed() == b""


def test_parse_error_after_good_request_on_same_connection(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/hello") + b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n")
        assert c.read_response().body == b"Hello, World!"
        assert c.read_response().status == 400
        assert c.wait_closed() == b""


def test_bad_chunked_body_rejected_and_closed(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("POST", "/echo", [("Transfer-Encoding", "chunked")])
               + b"zz\r\nhello\r\n0\r\n\r\n" + request("GET", "/hello"))
        try:
            r = c.read_response(allow_truncated=True)
        except AssertionError:
            raise
        except Exception:  # noqa: BLE001 - closed without any response is acceptable
            r = None
        if r is not None:
            assert r.status >= 400, r.raw_head
        assert b"Hello, World!" not in c.wait_closed()


def test_server_still_serves_after_parse_errors(lab: ServerProcess) -> None:
    check_alive(lab)


# --- threads -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def threaded() -> Iterator[ServerProcess]:
    srv = start_server("apps.echo:app", "--threads", "4")
    yield srv
    stop_checked(srv)


def test_threads_blocking_app_does_not_block_others(threaded: ServerProcess) -> None:
    tok = token("block")
    with Conn.tcp(threaded.host, threaded.port) as blocked:
        blocked.send(request("GET", "/block?" + qs(token=tok)))
        wait_state(threaded, tok, "started")
        # the blocked request holds one pool thread; others are served meanwhile
        for _ in range(5):
            r = http_get(threaded, "/hello")
            assert r.body == b"Hello, World!"
        assert state(threaded, tok) == {"started": True}
        assert blocked.nothing_within(0.2)  # still waiting for its answer
        assert http_get(threaded, "/release?" + qs(token=tok)).status == 200
        r = blocked.read_response()
        assert r.body == b"released"


def test_threads_large_list_items_sent_whole_and_in_order(threaded: ServerProcess) -> None:
    # Large items are handed from the pool thread to the loop without a copy.
    sizes = "10,20000,5,70000,3"
    expected = b"".join(parts_body(sizes))
    with Conn.tcp(threaded.host, threaded.port) as c:
        c.send(request("GET", "/parts?" + qs(sizes=sizes)) + request("GET", "/hello"))
        assert c.read_response().body == expected
        assert c.read_response().body == b"Hello, World!"


def test_threads_environ_multithread(threaded: ServerProcess) -> None:
    r = http_get(threaded, "/echo")
    assert r.json()["wsgi"]["multithread"] is True


def test_threads_several_blocked_at_once(threaded: ServerProcess) -> None:
    toks = [token("multi") for _ in range(3)]
    conns = [Conn.tcp(threaded.host, threaded.port) for _ in toks]
    try:
        for c, t in zip(conns, toks):
            c.send(request("GET", "/block?" + qs(token=t)))
        for t in toks:
            wait_state(threaded, t, "started")  # 3 of the 4 threads busy at once
        assert http_get(threaded, "/hello").status == 200
        for t in toks:
            http_get(threaded, "/release?" + qs(token=t))
        for c in conns:
            assert c.read_response().body == b"released"
    finally:
        for c in conns:
            c.close()


def test_reactor_helper_thread_runs_at_idle_priority(lab: ServerProcess) -> None:
    # async-io's helper thread would otherwise take turns polling the reactor with the loop
    # thread (a futex hand-off per turn); at SCHED_IDLE it only runs when the CPU is idle.
    tasks = Path(f"/proc/{lab.pid}/task")
    policies: dict[str, int] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        policies = {}
        for t in tasks.iterdir():
            try:
                name = (t / "comm").read_text().strip()
                policies[f"{name}/{t.name}"] = os.sched_getscheduler(int(t.name))
            except (OSError, ValueError):
                continue  # a thread that just ended
        helpers = [p for k, p in policies.items() if k.startswith("async-io/")]
        if helpers and all(p == os.SCHED_IDLE for p in helpers):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no async-io thread at SCHED_IDLE: {policies}")
    # the loop thread itself keeps the normal policy
    assert os.sched_getscheduler(lab.pid) == os.SCHED_OTHER
