"""PEP 3333 adapter, seen from outside: environ, start_response and exc_info, write(), close(),
app errors, header validation, the app's Content-Length, wsgi.input, wsgi.errors."""

from __future__ import annotations

import base64
import json
import time

import pytest
from apps.lab import parts_body
from helpers import (
    Closed,
    Conn,
    http_get,
    log_since,
    qs,
    request,
    state,
    token,
    wait_log_since,
    wait_state,
)
from support import ServerProcess

# --- environ -------------------------------------------------------------------------------


def echo(lab: ServerProcess, raw: bytes) -> tuple[dict, Conn]:  # type: ignore[type-arg]
    c = Conn.tcp(lab.host, lab.port)
    c.send(raw)
    r = c.read_response()
    assert r.status == 200, r
    return r.json(), c


def test_environ_cgi_keys(lab: ServerProcess) -> None:
    raw = request("POST", "/echo/a%20b/%C3%A9%2Fc?x=1&y=%20z",
                  [("Content-Type", "text/plain; charset=utf-8"), ("X-Repeat", "a"),
                   ("X-Single", "s"), ("X-Repeat", "b"), ("x-MiXeD-case", "m")],
                  body=b"hello")
    env, c = echo(lab, raw)
    client_port = c.sock.getsockname()[1]
    c.close()
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    # percent-decoded bytes, as latin-1 characters (PEP 3333 native strings)
    assert env["PATH_INFO"] == "/echo/a b/\u00c3\u00a9/c"
    assert env["QUERY_STRING"] == "x=1&y=%20z"
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "5"
    # SERVER_NAME / SERVER_PORT follow the Host header (port defaulting to the scheme's), as in
    # gunicorn and PEP 3333's URL reconstruction; see test_environ_server_name_and_port
    assert env["SERVER_NAME"] == "test"
    assert env["SERVER_PORT"] == "80"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["HTTP_HOST"] == "test"
    assert env["HTTP_X_REPEAT"] == "a, b"
    assert env["HTTP_X_SINGLE"] == "s"
    assert env["HTTP_X_MIXED_CASE"] == "m"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert base64.b64decode(env["body_b64"]) == b"hello"


@pytest.mark.parametrize("host,name,port", [
    ("example.org:8080", "example.org", "8080"),
    ("example.org", "example.org", "80"),
    ("[::1]:9000", "[::1]", "9000"),
    (None, "127.0.0.1", None),  # no Host (HTTP/1.0): the address the request came in on
])
def test_environ_server_name_and_port(lab: ServerProcess, host: str | None, name: str,
                                      port: str | None) -> None:
    version = "HTTP/1.1" if host else "HTTP/1.0"
    env, c = echo(lab, request("GET", "/echo", version=version, host=host))
    c.close()
    assert env["SERVER_NAME"] == name
    assert env["SERVER_PORT"] == (port or str(lab.port))


def test_environ_wsgi_keys(lab: ServerProcess) -> None:
    env = http_get(lab, "/echo").json()
    w = env["wsgi"]
    assert w["version"] == [1, 0] and w["version_type"] == "tuple"
    assert w["url_scheme"] == "http"
    assert w["multithread"] is False  # default: the loop thread alone calls the app
    assert w["multiprocess"] is False
    assert w["run_once"] is False
    assert w["input_terminated"] is True
    assert w["file_wrapper_callable"] is True
    assert w["input_methods"] == ["read", "readline", "readlines", "__iter__"]
    assert w["errors_methods"] == ["write", "writelines", "flush"]
    assert w["environ_type"] == "dict"
    assert w["non_str_cgi_keys"] == []


def test_environ_without_body(lab: ServerProcess) -> None:
    env = http_get(lab, "/echo").json()
    assert env.get("CONTENT_LENGTH", "") == ""
    assert env.get("CONTENT_TYPE", "") == ""
    assert env["QUERY_STRING"] == ""
    assert env["PATH_INFO"] == "/echo"


def test_environ_header_values(lab: ServerProcess) -> None:
    raw = (b"GET /echo? HTTP/1.1\r\nHost: test\r\nX-Latin: caf\xe9\r\n"
           b"X-Spaces: \t  padded value \t\r\nX-Empty:\r\nX-Tab: a\tb\r\n\r\n")
    env, c = echo(lab, raw)
    c.close()
    assert env["HTTP_X_LATIN"] == "caf\u00e9"
    assert env["HTTP_X_SPACES"] == "padded value"
    assert env["HTTP_X_EMPTY"] == ""
    assert env["HTTP_X_TAB"] == "a\tb"
    assert env["QUERY_STRING"] == ""


def test_environ_absolute_form_target(lab: ServerProcess) -> None:
    env, c = echo(lab, b"GET http://test/echo/abs%21?q=1 HTTP/1.1\r\nHost: test\r\n\r\n")
    c.close()
    assert env["PATH_INFO"] == "/echo/abs!"
    assert env["QUERY_STRING"] == "q=1"


def test_environ_invalid_percent_escapes_kept(lab: ServerProcess) -> None:
    env, c = echo(lab, request("GET", "/echo/%zz/%4/100%"))
    c.close()
    assert env["PATH_INFO"] == "/echo/%zz/%4/100%"


def test_environ_http10(lab: ServerProcess) -> None:
    env, c = echo(lab, request("GET", "/echo", version="HTTP/1.0", host=None))
    c.close()
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in env


def test_repeated_headers_are_joined(lab: ServerProcess) -> None:
    env, c = echo(lab, b"GET /echo HTTP/1.1\r\nHost: test\r\nX-Repeat: a\r\nCookie: a=1\r\n"
                       b"X-Same: 1\r\nX-Repeat: b\r\nX-Same: 1\r\nCookie: b=2\r\n"
                       b"X-Empty:\r\nX-Empty:\r\n\r\n")
    c.close()
    assert env["HTTP_X_REPEAT"] == "a, b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_SAME"] == "1, 1"  # equal one-character values: still two headers
    assert env["HTTP_X_EMPTY"] == ", "


def test_header_values_follow_each_request(lab: ServerProcess) -> None:
    # Values are remembered by position to share their str: a change must always show.
    values = ["one", "one", "two", "caf\xe9", "one", "x" * 200, "x" * 200, "one"]
    with Conn.tcp(lab.host, lab.port) as c:
        for v in values:
            c.send(request("GET", "/echo", [("User-Agent", v), ("X-Second", v[::-1])]))
        for v in values:
            env = c.read_response().json()
            assert env["HTTP_USER_AGENT"] == v and env["HTTP_X_SECOND"] == v[::-1]


def test_host_keys_follow_each_request_on_a_connection(lab: ServerProcess) -> None:
    # From its second request on, a connection's environ starts from its own template (peer
    # and Host keys): a new Host must still show, and so must a missing one (HTTP/1.0).
    hosts = ["a.test:1", "a.test:1", "b.test", "b.test:8080", "[::1]:99", "a.test:1", None]
    with Conn.tcp(lab.host, lab.port) as c:
        for h in hosts:
            version = "HTTP/1.1" if h else "HTTP/1.0"
            c.send(request("GET", "/echo", [("Connection", "keep-alive")], host=h,
                           version=version))
        for h in hosts:
            env = c.read_response().json()
            assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
            if h is None:
                assert "HTTP_HOST" not in env and env["SERVER_NAME"] == "127.0.0.1"
                continue
            name, _, port = h.rpartition(":") if not h.endswith("test") else (h, "", "80")
            assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == (h, name, port)


def test_environ_is_fresh_per_request(lab: ServerProcess) -> None:
    # a header of the first request must not leak into the second one on the same connection
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("POST", "/echo", [("X-Only-First", "1"), ("Content-Type", "a/b")],
                       body=b"abc") + request("GET", "/echo"))
        first = c.read_response().json()
        second = c.read_response().json()
    assert first["HTTP_X_ONLY_FIRST"] == "1"
    assert "HTTP_X_ONLY_FIRST" not in second
    assert second.get("CONTENT_TYPE", "") == ""
    assert second.get("CONTENT_LENGTH", "") == ""
    assert base64.b64decode(second["body_b64"]) == b""


def test_wsgi_errors_reach_the_log(lab: ServerProcess) -> None:
    mark = len(lab.log())
    assert http_get(lab, "/errors").status == 200
    wait_log_since(lab, mark, "marker-errors-1", "marker-errors-2 continued")


# --- write() and start_response ---------------------------------------------------------------


@pytest.mark.parametrize("target", ["/write", "/write?gen=1"])
@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_write_callable_bytes_come_first_in_order(lab: ServerProcess, target: str,
                                                  version: str) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", target, version=version))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"A-B-C-D"
        if version == "HTTP/1.0":
            assert r.header("transfer-encoding") is None


def test_exc_info_replaces_headers_before_anything_is_sent(lab: ServerProcess) -> None:
    r = http_get(lab, "/excinfo?mode=before")
    assert r.status == 503 and r.reason == "Replaced"
    assert r.header("x-new") == "1"
    assert r.header("x-old") is None
    assert r.body == b"replaced body"


def test_exc_info_on_first_call_is_allowed(lab: ServerProcess) -> None:
    r = http_get(lab, "/excinfo?mode=fresh")
    assert r.status == 500
    assert r.body == b"fresh error page"


def test_second_start_response_without_exc_info_raises(lab: ServerProcess) -> None:
    tok = token("twice")
    r = http_get(lab, "/excinfo?" + qs(mode="twice", token=tok))
    # the app caught the error and carried on with its first status
    assert r.status == 200 and r.body == b"after second call"
    assert state(lab, tok)["second_call"] == "raised"


def test_exc_info_after_headers_sent_reraises(lab: ServerProcess) -> None:
    tok = token("late")
    mark = len(lab.log())
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/excinfo?" + qs(mode="after", token=tok)))
        r = c.read_response(allow_truncated=True)
        assert r.status == 200  # already on the wire, it cannot change any more
        assert r.body == b"first part;"
        assert not r.complete  # the connection is closed: the client sees a truncated body
        assert c.eof
    st = state(lab, tok)
    assert st["reraised"] is True and st["same"] is True, st
    wait_log_since(lab, mark, "marker-after")


# --- close() -------------------------------------------------------------------------------


def test_close_called_on_normal_end(lab: ServerProcess) -> None:
    tok = token("close-ok")
    r = http_get(lab, "/close?" + qs(token=tok))
    assert r.body == b"one;two;three"
    st = wait_state(lab, tok, "closed")
    assert st["closed"] == 1 and st["exhausted"] is True


def test_close_called_after_head_request(lab: ServerProcess) -> None:
    tok = token("close-head")
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("HEAD", "/close?" + qs(token=tok)))
        assert c.read_response(head=True).status == 200
    assert wait_state(lab, tok, "closed")["closed"] == 1


def test_close_called_when_iteration_raises(lab: ServerProcess) -> None:
    tok = token("close-raise")
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/close?" + qs(token=tok, mode="raise")))
        r = c.read_response(allow_truncated=True)
        assert r.body == b"one;" and not r.complete
    st = wait_state(lab, tok, "closed")
    assert st["closed"] == 1 and "exhausted" not in st


def test_close_called_when_iteration_raises_before_first_chunk(lab: ServerProcess) -> None:
    tok = token("close-raise-first")
    r = http_get(lab, "/close?" + qs(token=tok, mode="raise-first"))
    assert r.status == 500
    assert wait_state(lab, tok, "closed")["closed"] == 1


def test_close_called_on_client_disconnect_mid_response(lab: ServerProcess) -> None:
    tok = token("close-gone")
    c = Conn.tcp(lab.host, lab.port)
    c.send(request("GET", "/close?" + qs(token=tok, mode="stream")))
    r = c.read_head()
    assert r.status == 200
    c.read_until(b"chunk 000003")  # the response is flowing
    c.close()
    st = wait_state(lab, tok, "closed")
    assert st["closed"] == 1
    # stopped because the client left, not because the (long) body ran out
    assert "exhausted" not in st
    yielded = st["yielded"]
    time.sleep(0.3)
    assert state(lab, tok)["yielded"] == yielded  # iteration stopped for good


# --- app errors ----------------------------------------------------------------------------


def assert_short_500(r: object, secret: str) -> None:
    from helpers import Response
    assert isinstance(r, Response)
    assert r.status == 500, r.raw_head
    assert len(r.body) < 512, r.body
    wire = r.raw_head + r.body
    assert b"Traceback" not in wire
    assert secret.encode() not in wire


@pytest.mark.parametrize("mode,exc,secret", [
    ("before", "ZeroDivisionError", "secret-detail-before-start"),
    ("after-start", "LookupError", "secret-detail-after-start-response"),
])
def test_app_exception_before_response_started(lab: ServerProcess, mode: str, exc: str,
                                               secret: str) -> None:
    mark = len(lab.log())
    r = http_get(lab, "/error?" + qs(mode=mode))
    assert_short_500(r, secret)
    # the traceback: the exception and the app's frame that raised it
    wait_log_since(lab, mark, f"{exc}: {secret}", "lab.py")


@pytest.mark.parametrize("mode", ["after", "after-cl"])
def test_app_exception_after_response_started(lab: ServerProcess, mode: str) -> None:
    mark = len(lab.log())
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/error?" + qs(mode=mode)) + request("GET", "/hello"))
        r = c.read_response(allow_truncated=True)
        assert r.status == 200
        assert r.body == b"partial body;"
        assert not r.complete
        assert c.eof  # closed: the pipelined /hello is never answered
    wait_log_since(lab, mark, "ArithmeticError: secret-detail-after-body", "lab.py")


BAD_APPS = [
    # mode, words one of which the log line must contain
    ("nonbytes", ("byte", "str")),
    ("status-noreason", ("status",)),
    ("status-word", ("status",)),
    ("status-crlf", ("status",)),
    ("status-bytes", ("status",)),
    ("nostart", ("start_response",)),
    ("header-int", ("header",)),
    ("header-notuple", ("header",)),
    ("header-not-latin1", ("latin-1",)),
    ("status-not-latin1", ("latin-1",)),
    ("write-str", ("byte", "str")),
    ("not-iterable", ("iter",)),
]


@pytest.mark.parametrize("mode,words", BAD_APPS, ids=[m for m, _ in BAD_APPS])
def test_misbehaving_app_gets_500_and_a_log_line(lab: ServerProcess, mode: str,
                                                 words: tuple[str, ...]) -> None:
    mark = len(lab.log())
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/bad?" + qs(mode=mode)))
        r = c.read_response()
        assert r.status == 500, r.raw_head
        assert b"X-Injected" not in r.raw_head
    wait_log_any(lab, mark, words)


def test_latin1_status_and_header_sent_as_latin1_bytes(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/bad?mode=latin1"))
        r = c.read_response()
    assert r.raw_head.startswith(b"HTTP/1.1 200 Tr\xe8s bien\r\n"), r.raw_head
    assert b"\r\nX-Latin: caf\xe9 \xff\r\n" in r.raw_head
    assert r.body == b"x"


def wait_log_any(lab: ServerProcess, mark: int, words: tuple[str, ...]) -> None:
    deadline = time.monotonic() + 10
    while True:
        new = log_since(lab, mark).lower()
        if any(w in new for w in words):
            return
        assert time.monotonic() < deadline, f"no log line naming any of {words}:\n{new}"
        time.sleep(0.05)


def test_nonbytes_after_first_chunk_truncates(lab: ServerProcess) -> None:
    mark = len(lab.log())
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/bad?mode=nonbytes-gen"))
        r = c.read_response(allow_truncated=True)
        assert r.status == 200 and r.body == b"fine;" and not r.complete
    wait_log_any(lab, mark, ("byte", "int"))


# --- header validation ---------------------------------------------------------------------

INJECTION_MODES = ["value-crlf", "value-lf", "value-cr", "value-nul", "name-crlf", "name-lf",
                   "name-nul", "name-colon", "name-space"]


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_header_injection_refused(lab: ServerProcess, mode: str) -> None:
    mark = len(lab.log())
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/inject?" + qs(mode=mode)) + request("GET", "/hello"))
        r = c.read_response()
        wire = r.raw_head + r.body
        assert r.status == 500, wire
        assert b"X-Injected" not in wire and b"X Injected" not in wire
        assert b"\x00" not in wire
        assert b"should never be sent" not in wire
        assert r.header("x-fine") is None  # none of the app's headers are sent with the 500
        # the rest of the connection: either closed or the next response, nothing injected
        try:
            nxt = c.read_response()
            assert nxt.body == b"Hello, World!"
        except Closed:
            pass
        assert b"X-Injected" not in c.buf
    wait_log_since(lab, mark, "header")


# --- the app's own Content-Length ------------------------------------------------------------


@pytest.mark.parametrize("gen", ["", "1"])
def test_app_content_length_shorter_body_closes(lab: ServerProcess, gen: str) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/cl?" + qs(declared=100, actual=50, gen=gen))
               + request("GET", "/hello"))
        r = c.read_response(allow_truncated=True)
        assert r.header("content-length") == "100"
        assert r.body == (b"0123456789" * 5)
        assert not r.complete and c.eof


@pytest.mark.parametrize("gen", ["", "1"])
def test_app_content_length_longer_body_cut_and_logged(lab: ServerProcess, gen: str) -> None:
    mark = len(lab.log())
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/cl?" + qs(declared=10, actual=50, gen=gen))
               + request("GET", "/hello"))
        r = c.read_response()
        assert r.header("content-length") == "10"
        assert r.body == b"0123456789"
        # the surplus never reaches the wire: what follows is the next response or the end
        try:
            nxt = c.read_response()
            assert nxt.status == 200 and nxt.body == b"Hello, World!"
        except Closed:
            assert c.buf == b""
    wait_log_since(lab, mark, "content-length")


# Large list items go to the socket from the app's own bytes, not copied: same bytes, same order.
PARTS = ["70000", "10,20000,5,70000,3", "16384,1,16383,100000"]


@pytest.mark.parametrize("sizes", PARTS)
@pytest.mark.parametrize("as_tuple", ["", "1"])
def test_large_list_items_sent_whole_and_in_order(lab: ServerProcess, sizes: str,
                                                  as_tuple: str) -> None:
    expected = b"".join(parts_body(sizes))
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/parts?" + qs(sizes=sizes, tuple=as_tuple))
               + request("HEAD", "/parts?" + qs(sizes=sizes)) + request("GET", "/hello"))
        r = c.read_response()
        assert r.header("content-length") == str(len(expected))
        assert r.body == expected
        head = c.read_response(head=True)
        assert head.header("content-length") == str(len(expected)) and head.body == b""
        assert c.read_response().body == b"Hello, World!"


@pytest.mark.parametrize("declared", [20005, 20020, 90000])
def test_large_list_items_cut_at_the_apps_content_length(lab: ServerProcess,
                                                         declared: int) -> None:
    mark = len(lab.log())
    full = b"".join(parts_body("10,20000,5,70000,3"))
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/parts?" + qs(sizes="10,20000,5,70000,3", declared=declared))
               + request("GET", "/hello"))
        r = c.read_response()
        assert r.header("content-length") == str(declared)
        assert r.body == full[:declared]
        try:
            nxt = c.read_response()
            assert nxt.status == 200 and nxt.body == b"Hello, World!"
        except Closed:
            assert c.buf == b""
    wait_log_since(lab, mark, "content-length")


def test_app_content_length_with_iterator_is_not_chunked(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/cl?" + qs(declared=60, actual=60, gen=1))
               + request("GET", "/hello"))
        r = c.read_response()
        assert r.framing == "length" and r.header("transfer-encoding") is None
        assert r.body == (b"0123456789" * 6)
        assert c.read_response().body == b"Hello, World!"


@pytest.mark.parametrize("header", ["Transfer-Encoding:chunked", "Content-Length:999",
                                    "Connection:keep-alive", "Keep-Alive:timeout=99"])
def test_app_framing_headers_do_not_break_framing(lab: ServerProcess, header: str) -> None:
    # the server owns framing: the app's word on it must not produce a second or wrong framing
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/headers?" + qs(h=header, body="abc")) + request("GET", "/hello"))
        r = c.read_response(allow_truncated=True)
        assert r.status == 200
        if header.startswith("Content-Length"):
            # the app's own Content-Length is respected: 999 promised, 3 sent, so it is closed
            assert r.body == b"abc" and not r.complete
            return
        assert r.body == b"abc" and r.complete
        assert c.read_response().body == b"Hello, World!"


def test_list_response_gets_content_length(lab: ServerProcess) -> None:
    r = http_get(lab, "/hello")
    assert r.framing == "length" and r.header("content-length") == "13"


@pytest.mark.parametrize("n", [0, 1, 3])
def test_tuple_response_gets_content_length(lab: ServerProcess, n: int) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", f"/tuple?n={n}") + request("GET", "/hello"))
        r = c.read_response()
        expected = b"".join(b"%d;" % i for i in range(n))
        assert r.framing == "length" and r.header("content-length") == str(len(expected))
        assert r.body == expected
        assert c.read_response().body == b"Hello, World!"


def test_iterator_response_is_chunked_on_http11(lab: ServerProcess) -> None:
    r = http_get(lab, "/gen?n=5")
    assert r.framing == "chunked"


def test_empty_iterator_response(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/gen?n=0") + request("GET", "/hello"))
        r = c.read_response()
        assert r.status == 200 and r.body == b""
        assert c.read_response().body == b"Hello, World!"


# --- wsgi.input ----------------------------------------------------------------------------

BODY = b"line1\nline2\nlonger line 3\nlast-no-newline"
LINES = [b"line1\n", b"line2\n", b"longer line 3\n", b"last-no-newline"]

INPUT_CASES = [
    ("read", [BODY]),
    ("read:5,read:3,read", [b"line1", b"\nli", BODY[8:]]),
    ("read:0,read:1000,read:10", [b"", BODY, b""]),
    ("readline,readline:3,readline,readline", [b"line1\n", b"lin", b"e2\n", b"longer line 3\n"]),
    ("readline,readline,readline,readline,readline", LINES + [b""]),
    ("readline:100,read:4", [b"line1\n", b"line"]),
    ("readlines", [LINES]),
    ("read:3,readlines", [b"lin", [b"e1\n"] + LINES[1:]]),
    ("iter", [LINES]),
    ("readline,iter", [LINES[0], LINES[1:]]),
]


def run_input(lab: ServerProcess, ops: str, body: bytes, use_chunked: bool) -> list:  # type: ignore[type-arg]
    from helpers import chunked
    with Conn.tcp(lab.host, lab.port) as c:
        target = "/input?" + qs(ops=ops)
        if use_chunked:
            pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
            c.send(request("POST", target, [("Transfer-Encoding", "chunked")]) + chunked(pieces)
                   + request("GET", "/hello"))
        else:
            c.send(request("POST", target, body=body) + request("GET", "/hello"))
        r = c.read_response()
        assert r.status == 200, r.body
        # the body was consumed exactly: the pipelined request is intact
        assert c.read_response().body == b"Hello, World!"
        return r.json()  # type: ignore[return-value]


def decoded(v: object) -> object:
    if isinstance(v, bytes):
        return v.decode("latin-1")
    assert isinstance(v, list)
    return [x.decode("latin-1") for x in v]


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("ops,expected", INPUT_CASES, ids=[o for o, _ in INPUT_CASES])
def test_wsgi_input_methods(lab: ServerProcess, ops: str, expected: list,  # type: ignore[type-arg]
                            use_chunked: bool) -> None:
    assert run_input(lab, ops, BODY, use_chunked) == [decoded(v) for v in expected]


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_wsgi_input_streamed_large_body(lab: ServerProcess, use_chunked: bool) -> None:
    # well beyond what is read before the app is called: the lines cross buffer refills
    lines = [b"%07d " % i + b"y" * (i % 97) + b"\n" for i in range(6000)]
    body = b"".join(lines)
    assert len(body) > 256 * 1024
    got = run_input(lab, "readline,readline:5,iter", body, use_chunked)
    assert got[0] == lines[0].decode()
    assert got[1] == lines[1][:5].decode()
    assert got[2] == [lines[1][5:].decode()] + [x.decode() for x in lines[2:]]


def test_wsgi_input_read_without_body_returns_at_once(lab: ServerProcess) -> None:
    for ops in ("read", "readline", "readlines", "iter", "read:10"):
        r = http_get(lab, "/input?" + qs(ops=ops))
        assert r.status == 200
        assert r.json() in ([""], [[]]), (ops, r.body)


def test_wsgi_input_reading_past_content_length(lab: ServerProcess) -> None:
    assert run_input(lab, "read:100,read:100,readline", b"12345", False) == ["12345", "", ""]


def test_echo_json_is_valid(lab: ServerProcess) -> None:
    # guards the helpers themselves: /echo answers JSON with the fields the tests rely on
    env = http_get(lab, "/echo").json()
    assert {"REQUEST_METHOD", "PATH_INFO", "wsgi", "body_b64"} <= set(env)
    json.dumps(env)
