"""The uwsgi protocol: packets built byte by byte by the suite (tests/uwsgi_client.py) and sent
straight to the server's uwsgi sockets, over TCP and a unix socket."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import uwsgi_client as uw
from apps.lab import parts_body
from helpers import (
    Closed,
    check_alive,
    gen_body,
    qs,
    start_server,
    stop_checked,
    wait_log_since,
)
from support import TESTS, ServerProcess


@pytest.fixture(params=["tcp", "unix"])
def target(request: pytest.FixtureRequest, lab: ServerProcess) -> tuple[str, int] | str:
    if request.param == "tcp":
        return ("127.0.0.1", lab.uwsgi_port)  # type: ignore[attr-defined]
    return lab.uwsgi_path  # type: ignore[attr-defined,no-any-return]


def echo(target: tuple[str, int] | str, vars: list[uw.Var], body: bytes = b"") -> dict:  # type: ignore[type-arg]
    resp, rest = uw.roundtrip(target, vars, body)
    assert resp.status == 200, resp
    assert rest == b""
    return resp.json()


def test_vars_go_into_environ_as_they_are(target: tuple[str, int] | str) -> None:
    vars = uw.cgi_vars(method="POST", path="/echo/a%20b", query="x=1&y=%20",
                       body=b"hello", content_type="text/plain",
                       headers=[("X-Custom", "c"), ("User-Agent", "uw-test")])
    vars += [("UWSGI_CUSTOM_VAR", "custom value"), ("SCRIPT_NAME", "")]
    env = echo(target, vars, b"hello")
    for k, v in vars:
        assert isinstance(k, str) and isinstance(v, str)
        if k in ("CONTENT_LENGTH", "CONTENT_TYPE", "SCRIPT_NAME") and v == "":
            assert env.get(k, "") == ""
            continue
        assert env.get(k) == v, (k, env.get(k), v)
    # PATH_INFO is taken as sent (nginx decoded it already): no second percent-decoding
    assert env["PATH_INFO"] == "/echo/a%20b"
    # REMOTE_ADDR and friends are trusted from the vars of an allowed peer
    assert env["REMOTE_ADDR"] == "203.0.113.7" and env["REMOTE_PORT"] == "54321"
    assert env["SERVER_NAME"] == "example.test" and env["SERVER_PORT"] == "80"
    assert base64.b64decode(env["body_b64"]) == b"hello"
    w = env["wsgi"]
    assert w["url_scheme"] == "http"
    assert w["input_terminated"] is True
    assert w["version"] == [1, 0]
    assert w["non_str_cgi_keys"] == []
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env


def test_body_framed_by_content_length_alone(target: tuple[str, int] | str) -> None:
    # nginx passes the client's Transfer-Encoding header along although it de-chunked the body
    vars = uw.cgi_vars(method="POST", path="/echo", body=b"hello",
                       headers=[("Transfer-Encoding", "chunked")])
    with uw.send_packet(target, uw.packet(vars, b"hello")) as c:
        resp = c.read_response()
        assert resp.status == 200
        env = resp.json()
        assert base64.b64decode(env["body_b64"]) == b"hello"
        assert env["HTTP_TRANSFER_ENCODING"] == "chunked"
        assert c.wait_closed() == b""


def test_bytes_after_the_body_are_ignored(target: tuple[str, int] | str) -> None:
    vars = uw.cgi_vars(method="POST", path="/echo", body=b"12345")
    second = uw.packet(uw.cgi_vars(path="/echo", query="second=1"))
    with uw.send_packet(target, uw.packet(vars, b"12345") + second) as c:
        resp = c.read_response()
        assert base64.b64decode(resp.json()["body_b64"]) == b"12345"
        # one response per connection: the second packet is never answered
        try:
            rest = c.wait_closed()
        except Closed:
            rest = b""
        assert b"HTTP/1.1" not in rest


def test_empty_content_length_and_type_mean_absent(target: tuple[str, int] | str) -> None:
    vars = uw.cgi_vars(method="POST", path="/echo")
    assert ("CONTENT_LENGTH", "") in vars and ("CONTENT_TYPE", "") in vars
    env = echo(target, vars)
    assert env.get("CONTENT_LENGTH", "") == ""
    assert env.get("CONTENT_TYPE", "") == ""
    assert base64.b64decode(env["body_b64"]) == b""


def test_no_content_length_var_at_all(target: tuple[str, int] | str) -> None:
    vars = [(k, v) for k, v in uw.cgi_vars(path="/input", query=qs(ops="read,readline"))
            if k not in ("CONTENT_LENGTH", "CONTENT_TYPE")]
    resp, _ = uw.roundtrip(target, vars)
    assert resp.json() == ["", ""]  # reading a body-less request returns at once


def test_large_body_read_in_pieces(target: tuple[str, int] | str) -> None:
    body = bytes(range(256)) * (8 * 4096)  # 8 MiB
    resp, rest = uw.roundtrip(target, uw.cgi_vars(method="POST", path="/hash", body=body), body)
    assert resp.json() == {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert rest == b""


def test_large_list_items_over_uwsgi(target: tuple[str, int] | str) -> None:
    sizes = "10,20000,5,70000,3"
    resp, rest = uw.roundtrip(target, uw.cgi_vars(path="/parts", query=qs(sizes=sizes)))
    assert resp.status == 200 and resp.body == b"".join(parts_body(sizes))
    assert rest == b""


def test_unread_body_over_uwsgi(target: tuple[str, int] | str) -> None:
    body = b"u" * (1 << 20)
    with uw.connect(target) as c:
        try:
            c.send(uw.packet(uw.cgi_vars(method="POST", path="/noread", body=body), body))
        except OSError:
            pass  # the server may close before taking the whole body: that is fine
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"ok, body not read"
        assert c.wait_closed() == b""


def test_wsgi_input_methods_over_uwsgi(target: tuple[str, int] | str) -> None:
    body = b"one\ntwo\nthree"
    vars = uw.cgi_vars(method="POST", path="/input", body=body,
                       query=qs(ops="readline,read:2,readlines,read"))
    resp, _ = uw.roundtrip(target, vars, body)
    assert resp.json() == ["one\n", "tw", ["o\n", "three"], ""]


def test_packet_sent_byte_by_byte(target: tuple[str, int] | str) -> None:
    data = uw.packet(uw.cgi_vars(method="POST", path="/echo", body=b"slow body"), b"slow body")
    with uw.connect(target) as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
        resp = c.read_response()
        assert base64.b64decode(resp.json()["body_b64"]) == b"slow body"


def test_packet_arriving_after_the_accept(target: tuple[str, int] | str) -> None:
    # Nothing to read when the connection is accepted: the server must wait for the packet
    # (the path where the socket joins the reactor late), then answer and close.
    data = uw.packet(uw.cgi_vars(method="POST", path="/echo", body=b"late"), b"late")
    with uw.connect(target) as c:
        time.sleep(0.2)
        c.send(data[:10])
        time.sleep(0.1)
        c.send(data[10:])
        resp = c.read_response()
        assert base64.b64decode(resp.json()["body_b64"]) == b"late"
        assert c.wait_closed(15.0) == b""


# --- response framing ------------------------------------------------------------------------


def test_list_response_has_content_length_then_close(target: tuple[str, int] | str) -> None:
    with uw.send_packet(target, uw.packet(uw.cgi_vars(path="/hello"))) as c:
        resp = c.read_response()
        assert resp.raw_head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert resp.header("content-length") == "13"
        assert resp.header("transfer-encoding") is None
        assert resp.body == b"Hello, World!"
        assert c.wait_closed() == b""


@pytest.mark.parametrize("path,query,expected", [
    ("/gen", "n=1000", gen_body(1000)),
    ("/write", "", b"A-B-C-D"),
    ("/write", "gen=1", b"A-B-C-D"),
])
def test_streamed_response_never_chunked(target: tuple[str, int] | str, path: str, query: str,
                                         expected: bytes) -> None:
    with uw.send_packet(target, uw.packet(uw.cgi_vars(path=path, query=query))) as c:
        resp = c.read_response()
        assert resp.status == 200
        assert resp.header("transfer-encoding") is None, resp.raw_head
        assert resp.framing in ("length", "close")
        assert resp.body == expected
        assert c.wait_closed() == b""


def test_app_content_length_kept_on_uwsgi(target: tuple[str, int] | str) -> None:
    resp, rest = uw.roundtrip(target, uw.cgi_vars(path="/cl", query=qs(declared=30, actual=30,
                                                                      gen=1)))
    assert resp.header("content-length") == "30" and resp.body == b"0123456789" * 3
    assert rest == b""


def test_status_line_reason_passed_through(target: tuple[str, int] | str) -> None:
    resp, _ = uw.roundtrip(target, uw.cgi_vars(path="/headers",
                                               query=qs(status="418 I'm a teapot", body="t")))
    assert resp.raw_head.startswith(b"HTTP/1.1 418 I'm a teapot\r\n")
    assert resp.body == b"t"


def test_head_over_uwsgi(target: tuple[str, int] | str) -> None:
    with uw.send_packet(target, uw.packet(uw.cgi_vars(method="HEAD", path="/hello"))) as c:
        resp = c.read_response(head=True)
        assert resp.status == 200 and resp.header("content-length") == "13"
        assert c.wait_closed() == b""  # no body bytes follow the head


def test_app_error_over_uwsgi(target: tuple[str, int] | str) -> None:
    resp, _ = uw.roundtrip(target, uw.cgi_vars(path="/error", query="mode=before"))
    assert resp.status == 500
    assert b"secret-detail" not in resp.raw_head + resp.body


def test_app_error_after_start_over_uwsgi_with_length(target: tuple[str, int] | str) -> None:
    with uw.send_packet(target, uw.packet(uw.cgi_vars(path="/error", query="mode=after-cl"))) as c:
        resp = c.read_response(allow_truncated=True)
        assert resp.header("content-length") == "100"
        assert resp.body == b"partial body;" and not resp.complete


def test_repeated_vars_are_joined(target: tuple[str, int] | str) -> None:
    vars = uw.cgi_vars(path="/echo") + [("HTTP_X_REPEAT", "a"), ("HTTP_COOKIE", "a=1"),
                                        ("HTTP_X_REPEAT", "b"), ("HTTP_COOKIE", "b=2")]
    env = echo(target, vars)
    assert env["HTTP_X_REPEAT"] == "a, b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    same = echo(target, uw.cgi_vars(path="/echo") + [("HTTP_X_SAME", "1"), ("HTTP_X_SAME", "1")])
    assert same["HTTP_X_SAME"] == "1, 1"  # equal one-character values: still two vars


def test_vars_replace_the_servers_defaults(target: tuple[str, int] | str) -> None:
    # nginx configs set SCRIPT_NAME for an app mounted under a prefix: it replaces the default.
    env = echo(target, uw.cgi_vars(path="/echo") + [("SCRIPT_NAME", "/app"),
                                                    ("SERVER_SOFTWARE", "nginx-set")])
    assert env["SCRIPT_NAME"] == "/app" and env["SERVER_SOFTWARE"] == "nginx-set"
    twice = echo(target, uw.cgi_vars(path="/echo") + [("SCRIPT_NAME", "/a"), ("SCRIPT_NAME", "/b")])
    assert twice["SCRIPT_NAME"] == "/a, /b"
    # wsgi.* keys are the server's: a var cannot replace them
    env = echo(target, uw.cgi_vars(path="/echo") + [("wsgi.url_scheme", "gopher"),
                                                    ("wsgi.input", "x")])
    assert env["wsgi"]["url_scheme"] == "http"
    assert env["wsgi"]["input_methods"] == ["read", "readline", "readlines", "__iter__"]


def test_environ_follows_each_packet_after_a_run_of_the_same_vars(
        target: tuple[str, int] | str) -> None:
    # Runs of packets with the same names let the server start from the environ it learned:
    # every change must still show, and nothing of an earlier packet may stay.
    def plain(**kw: object) -> list[uw.Var]:
        return uw.cgi_vars(path="/echo", **kw)  # type: ignore[arg-type]

    def scheme_vars(scheme: str) -> list[uw.Var]:
        return [(k, scheme if k == "REQUEST_SCHEME" else v) for k, v in plain()]

    for _ in range(3):
        env = echo(target, plain(query="a=1"))
        assert env["QUERY_STRING"] == "a=1" and env["wsgi"]["url_scheme"] == "http"
    # a value that decides another key (the url scheme), same names
    env = echo(target, scheme_vars("https"))
    assert env["wsgi"]["url_scheme"] == "https" and env["QUERY_STRING"] == ""
    assert echo(target, scheme_vars("http"))["wsgi"]["url_scheme"] == "http"
    # a body: CONTENT_LENGTH and CONTENT_TYPE appear, then are absent again
    env = echo(target, plain(method="POST", body=b"hello", content_type="text/plain"), b"hello")
    assert env["CONTENT_LENGTH"] == "5" and env["CONTENT_TYPE"] == "text/plain"
    assert base64.b64decode(env["body_b64"]) == b"hello"
    env = echo(target, plain())
    assert env.get("CONTENT_LENGTH", "") == "" and env.get("CONTENT_TYPE", "") == ""
    # one var fewer, one more, one renamed: no key left over from the learned packet
    def relearn() -> None:
        for _ in range(2):
            echo(target, plain())

    relearn()
    fewer = [(k, v) for k, v in plain() if k != "DOCUMENT_ROOT"]
    assert "DOCUMENT_ROOT" not in echo(target, fewer)
    relearn()
    more = echo(target, plain(headers=[("X-Extra", "1")]))
    assert more["HTTP_X_EXTRA"] == "1" and more["DOCUMENT_ROOT"] == "/var/www/html"
    relearn()
    renamed = [("DOCUMENT_ROOTS" if k == "DOCUMENT_ROOT" else k, v) for k, v in plain()]
    env = echo(target, renamed)
    assert "DOCUMENT_ROOT" not in env and env["DOCUMENT_ROOTS"] == "/var/www/html"
    # a repeated var in the run: joined, and the next packet is clean again
    relearn()
    dup = plain() + [("HTTP_X_D", "a"), ("HTTP_X_D", "b")]
    assert echo(target, dup)["HTTP_X_D"] == "a, b"
    assert echo(target, dup)["HTTP_X_D"] == "a, b"
    assert "HTTP_X_D" not in echo(target, plain())


def test_server_port_kept_without_server_name(target: tuple[str, int] | str) -> None:
    # Without SERVER_NAME the server fills it in, but a SERVER_PORT nginx sent stays, whether the
    # environ is built in full or from a learned run of the same vars.
    for port in ["8080", "8080", "8080", "9090", "8080"]:
        vars = [(k, port if k == "SERVER_PORT" else v) for k, v in uw.cgi_vars(path="/echo")
                if k != "SERVER_NAME"]
        env = echo(target, vars)
        assert env["SERVER_PORT"] == port and env["SERVER_NAME"] == "localhost"


def test_var_values_follow_each_request(target: tuple[str, int] | str) -> None:
    # Values are remembered by position to share their str: a change must always show.
    for v in ["a", "a", "bb", "caf\xe9", "a", "z" * 300, "a"]:
        env = echo(target, uw.cgi_vars(path="/echo", query=v) + [("HTTP_X_V", v)])
        assert env["QUERY_STRING"] == v and env["HTTP_X_V"] == v


@pytest.mark.parametrize("extra,scheme", [
    ([("HTTPS", "on")], "https"),
    ([("REQUEST_SCHEME", "https")], "https"),
    ([("REQUEST_SCHEME", "http")], "http"),
    ([], "http"),
])
def test_url_scheme_from_vars(target: tuple[str, int] | str, extra: list[uw.Var],
                              scheme: str) -> None:
    vars = [(k, v) for k, v in uw.cgi_vars(path="/echo") if k != "REQUEST_SCHEME"] + extra
    assert echo(target, vars)["wsgi"]["url_scheme"] == scheme


# --- malformed packets -----------------------------------------------------------------------


def malformed(lab: ServerProcess, target: tuple[str, int] | str, data: bytes,
              *words: str, status: int | None = None) -> None:
    mark = len(lab.log())
    raw = uw.raw_roundtrip(target, data)
    if status is not None:
        assert raw.startswith(b"HTTP/1.1 %d " % status), raw[:200]
    else:
        # either a 4xx/5xx answer or just the close, never a success
        assert raw == b"" or raw.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), raw[:200]
    new = wait_log_since(lab, mark, *words)
    assert new.strip(), "nothing logged"


def test_modifier1_not_zero_is_501(lab: ServerProcess, target: tuple[str, int] | str) -> None:
    data = uw.packet(uw.cgi_vars(path="/hello"), modifier1=5)
    malformed(lab, target, data, "modifier", status=501)


def test_var_running_past_the_block(lab: ServerProcess, target: tuple[str, int] | str) -> None:
    block = uw.encode_vars([("REQUEST_METHOD", "GET")])
    # the value length says 200 bytes but the block ends after 3
    bad = block + struct.pack("<H", 4) + b"PATH" + struct.pack("<H", 200) + b"/xy"
    data = struct.pack("<BHB", 0, len(bad), 0) + bad
    malformed(lab, target, data, "uwsgi")


def test_too_many_vars(lab: ServerProcess, target: tuple[str, int] | str) -> None:
    vars = uw.cgi_vars(path="/hello") + [(f"V{i}", "x") for i in range(600)]
    malformed(lab, target, uw.packet(vars), "uwsgi")


def test_empty_var_key(lab: ServerProcess, target: tuple[str, int] | str) -> None:
    malformed(lab, target, uw.packet(uw.cgi_vars(path="/hello") + [("", "v")]), "uwsgi")


def test_bad_content_length_var(lab: ServerProcess, target: tuple[str, int] | str) -> None:
    vars = [(k, v) for k, v in uw.cgi_vars(method="POST", path="/echo")
            if k != "CONTENT_LENGTH"] + [("CONTENT_LENGTH", "12abc")]
    malformed(lab, target, uw.packet(vars, b"12abc"), "uwsgi")


def test_truncated_packet_then_eof(lab: ServerProcess, target: tuple[str, int] | str) -> None:
    data = uw.packet(uw.cgi_vars(path="/hello"))
    with uw.connect(target) as c:
        c.send(data[:len(data) // 2])
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed() == b""  # nothing answered for half a packet
    check_alive(lab)


def test_server_survives_malformed_packets(lab: ServerProcess,
                                           target: tuple[str, int] | str) -> None:
    junk = [b"\x00", b"\x00\xff\xff\x00" + b"\x01" * 50, b"GET / HTTP/1.1\r\n\r\n",
            struct.pack("<BHB", 0, 4, 0) + b"\x05\x00ab"]
    for data in junk:
        with uw.connect(target) as c:
            c.send(data)
            c.sock.shutdown(socket.SHUT_WR)
            raw = c.wait_closed()
            assert not raw.startswith(b"HTTP/1.1 2"), raw[:200]
    resp, _ = uw.roundtrip(target, uw.cgi_vars(path="/hello"))
    assert resp.body == b"Hello, World!"


# --- who may connect -------------------------------------------------------------------------


def test_uwsgi_peer_not_allowed_is_refused() -> None:
    """Loopback peers are always allowed, so this runs in a private network namespace where the
    peers have addresses of their own (tests/netns_allow.py); it fails, never skips, if that
    cannot be set up."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(["unshare", "-n", sys.executable, str(TESTS / "netns_allow.py")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=str(TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the refused peer got nothing but the close, and the refusal was logged with its address
    assert out["refused_raw"] == "", out
    assert not out["refused_log"].startswith("NOT LOGGED"), out["refused_log"]
    assert "Hello, World!" not in out["log"]
    # the listed peer and loopback are served
    assert out["allowed"] == {"status": 200, "remote": "203.0.113.7", "rest": ""}, out
    assert out["loopback"] == {"status": 200, "remote": "203.0.113.7", "rest": ""}, out


@pytest.fixture(scope="module")
def limited() -> Iterator[ServerProcess]:
    srv = start_server("apps.echo:app", "--max-uwsgi-vars-bytes", "2048", uwsgi=True)
    yield srv
    stop_checked(srv)


def test_vars_block_over_the_limit(limited: ServerProcess) -> None:
    target = ("127.0.0.1", limited.uwsgi_port)  # type: ignore[attr-defined]
    vars = uw.cgi_vars(path="/hello") + [("HTTP_X_BIG", "v" * 3000)]
    malformed(limited, target, uw.packet(vars), "uwsgi")
    # just under the limit is fine
    vars = uw.cgi_vars(path="/hello") + [("HTTP_X_BIG", "v" * 1500)]
    resp, _ = uw.roundtrip(target, vars)
    assert resp.body == b"Hello, World!"
