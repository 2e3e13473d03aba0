"""Velocior behind a real nginx, configured from the templates in nginx/ (rendered, not copied).

One Velocior process listens on HTTP, uwsgi over a unix socket and uwsgi over TCP; one nginx
serves the unix, TCP and proxy_pass templates (each on its own port) and the test-only server
blocks of nginx/test/extras.conf (TLS, short read timeout). The app is tests/nginx_apps.py.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nginx_apps
import pytest
from nginx_support import (
    Backend,
    Nginx,
    free_ports,
    give_socket_to_group,
    make_public_tmpdir,
    self_signed_cert,
    wait_until,
)

HOST = "example.test"
BIG_FILE_MIB = 100
PROTECTED_TEXT = b"served by nginx from the protected directory\n" * 100


@dataclass
class Stack:
    files: str
    backend: Backend
    nginx: Nginx
    # "direct", "unix", "tcp", "proxy", "proxy_unix", "tls", "timeout"
    ports: dict[str, int]
    big_sha256: str

    def diag(self) -> str:
        return (f"--- velocior log ---\n{self.backend.log()[-3000:]}\n"
                f"--- nginx error log ---\n{self.nginx.error_log()[-3000:]}")


def make_big_file(path: str, mib: int) -> str:
    """`mib` MiB of incompressible bytes; returns the sha256."""
    digest = hashlib.sha256()
    seed = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(mib):
            block = hashlib.sha256(b"%d" % i).digest() + seed[32:]
            digest.update(block)
            f.write(block)
    os.chmod(path, 0o644)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    files = make_public_tmpdir("velocior-nginx-files-")
    big_sha = make_big_file(os.path.join(files, "big.bin"), BIG_FILE_MIB)
    make_big_file(os.path.join(files, "small.bin"), 1)
    Path(files, "protected.txt").write_bytes(PROTECTED_TEXT)
    os.chmod(os.path.join(files, "protected.txt"), 0o644)
    cert, key = self_signed_cert(files)
    sock = os.path.join(files, "velocior.sock")
    http_sock = os.path.join(files, "velocior-http.sock")
    direct, uwsgi_tcp, l_unix, l_tcp, l_proxy, l_tls, l_timeout, l_proxy_unix = free_ports(8)
    backend = Backend(
        "nginx_apps:app",
        http=[f"127.0.0.1:{direct}", f"unix:{http_sock}"],
        uwsgi=[f"unix:{sock}", f"127.0.0.1:{uwsgi_tcp}"],
        # As docs/deployment.md says for proxy_pass: room for every request nginx lets through
        # (`large_client_header_buffers 4 16k`), above Velocior's HTTP defaults (16 KiB, 8190).
        args=["--max-head-bytes", "65536", "--max-target-bytes", "16384"],
        env={"VELOCIOR_TEST_FILES": files},
        ready=[("127.0.0.1", direct), ("127.0.0.1", uwsgi_tcp), sock, http_sock],
        log_dir=files,
    )
    nginx = nginx_proxy_unix = None
    try:
        # As a systemd unit with Group=www-data would: nginx's workers (www-data) may connect.
        give_socket_to_group(sock)
        give_socket_to_group(http_sock)
        nginx = Nginx(
            [("unix", {"LISTEN": l_unix}), ("tcp", {"LISTEN": l_tcp}),
             ("proxy", {"LISTEN": l_proxy}), "extras"],
            {"SERVER_NAME": HOST, "SOCKET": sock, "UWSGI_ADDR": f"127.0.0.1:{uwsgi_tcp}",
             "HTTP_ADDR": f"127.0.0.1:{direct}", "PROTECTED_DIR": files,
             "TLS_LISTEN": l_tls, "TLS_CERT": cert, "TLS_KEY": key, "TIMEOUT_LISTEN": l_timeout},
            wait_ports=[l_unix, l_tcp, l_proxy, l_tls, l_timeout],
        )
        # The proxy template again, its upstream on Velocior's HTTP unix socket (a second nginx:
        # the template's upstream name may appear once per nginx).
        nginx_proxy_unix = Nginx(
            [("proxy", {"LISTEN": l_proxy_unix})],
            {"SERVER_NAME": HOST, "HTTP_ADDR": f"unix:{http_sock}", "PROTECTED_DIR": files},
            wait_ports=[l_proxy_unix],
        )
        yield Stack(files, backend, nginx,
                    {"direct": direct, "unix": l_unix, "tcp": l_tcp, "proxy": l_proxy,
                     "proxy_unix": l_proxy_unix, "tls": l_tls, "timeout": l_timeout}, big_sha)
    finally:
        for server in (nginx, nginx_proxy_unix):
            if server is not None:
                server.stop()
        backend.stop()
        shutil.rmtree(files, ignore_errors=True)


@dataclass
class Reply:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)  # type: ignore[no-any-return]


def fetch(port: int, method: str, path: str, headers: list[tuple[str, str]] | None = None,
          body: bytes | None = None, *, host: str = HOST, source: str | None = None,
          tls: bool = False, timeout: float = 60.0) -> Reply:
    """One request on a fresh connection; headers go out exactly as given (repeats kept)."""
    conn: http.client.HTTPConnection
    src = (source, 0) if source else None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                           source_address=src, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                          source_address=src)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for k, v in headers or []:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, resp.reason, resp.getheaders(), data)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# The differential test: same answer directly, via uwsgi_pass (unix, TCP) and via proxy_pass.

# Framing and connection management are per hop (RFC 9110 7.6.1); Date is the time of the
# answer; nginx's proxy module replaces Server with its own. Everything else must match.
NOT_COMPARED = {"connection", "keep-alive", "transfer-encoding", "date", "server"}

DIFF_CASES: list[tuple[str, str, str, list[tuple[str, str]], bytes | None]] = [
    # (id, method, target, headers, body)
    ("environ", "GET", "/echo-env", [("Accept", "*/*"), ("User-Agent", "difftest/1")], None),
    ("query", "GET", "/echo-env?a=1&b=two%20words&c=%E2%9C%93&d=x+y&empty=&flag&a=again",
     [], None),
    ("path-percent", "GET", "/echo-env/a%20b/%7Euser/100%25/semi;colon,comma'q", [], None),
    ("path-non-ascii", "GET", "/echo-env/caf%C3%A9/%E6%97%A5%E6%9C%AC?q=%C3%BC", [], None),
    ("post-form", "POST", "/echo-env",
     [("Content-Type", "application/x-www-form-urlencoded")], b"a=1&b=2"),
    ("put-binary", "PUT", "/echo", [("Content-Type", "application/octet-stream")],
     bytes(range(256)) * 40),
    ("post-empty", "POST", "/echo", [("Content-Type", "text/plain")], b""),
    ("delete", "DELETE", "/echo-env", [], None),
    ("options", "OPTIONS", "/echo-env", [], None),
    ("x-test-headers", "GET", "/echo-env",
     [("X-Test-One", "1"), ("X-Test-Quoted", '"q" and \'s\''), ("X-Test-Multi", "a"),
      ("X-Test-Multi", "b")], None),
    ("cookies", "GET", "/cookies",
     [("Cookie", "a=1"), ("Cookie", "b=2"), ("X-Test-Multi", "x"), ("X-Test-Multi", "y")],
     None),
    ("stream-50", "GET", "/stream?n=50", [], None),
    ("stream-1000", "GET", "/stream?n=1000", [], None),
    ("file-wrapper", "GET", "/file?name=small.bin", [], None),
    ("error", "GET", "/error", [], None),
    ("not-found", "GET", "/no/such/route", [], None),
    ("head-list", "HEAD", "/status/200", [], None),
    ("head-environ", "HEAD", "/echo-env", [], None),
    ("head-file", "HEAD", "/file?name=small.bin", [], None),
    ("no-content-204", "GET", "/nobody/204", [], None),
    ("not-modified-304", "GET", "/nobody/304", [("If-None-Match", '"v1"')], None),
] + [(f"status-{code}", "GET", f"/status/{code}", [], None) for code in nginx_apps.STATUSES]


def comparable(reply: Reply) -> tuple[int, str, list[tuple[str, str]], bytes]:
    headers = [(k.lower(), v) for k, v in reply.headers if k.lower() not in NOT_COMPARED]
    # The order of different fields carries no meaning (RFC 9110 5.3); the order of the lines
    # of one repeated field does, and a stable sort keeps it.
    headers.sort(key=lambda kv: kv[0])
    return reply.status, reply.reason, headers, reply.body


@pytest.mark.parametrize("route", ["unix", "tcp", "proxy", "proxy_unix"])
@pytest.mark.parametrize("case", DIFF_CASES, ids=[c[0] for c in DIFF_CASES])
def test_differential(stack: Stack, route: str,
                      case: tuple[str, str, str, list[tuple[str, str]], bytes | None]) -> None:
    _id, method, target, headers, body = case
    direct = fetch(stack.ports["direct"], method, target, headers, body)
    via = fetch(stack.ports[route], method, target, headers, body)
    assert comparable(via) == comparable(direct), (
        f"{route}: {method} {target}\n direct: {direct}\n via nginx: {via}\n{stack.diag()}")


def test_differential_covers_what_it_claims(stack: Stack) -> None:
    """The differential cases really exercise each feature (a broken app would make the
    comparison vacuous: two identical 404s match too)."""
    port = stack.ports["direct"]
    env = fetch(port, "GET", "/echo-env/caf%C3%A9?q=1").json()
    assert env["PATH_INFO_utf8"] == "/echo-env/café" and env["QUERY_STRING"] == "q=1"
    r = fetch(port, "GET", "/cookies", [("Cookie", "a=1"), ("Cookie", "b=2")])
    assert [v for k, v in r.headers if k.lower() == "set-cookie"] == [
        "a=1; Path=/; HttpOnly", "b=2; Path=/; Max-Age=60"]
    assert r.json()["HTTP_COOKIE"] == "a=1; b=2"
    assert fetch(port, "GET", "/stream?n=1000").body == nginx_apps.stream_body(1000)
    small = Path(stack.files, "small.bin").read_bytes()
    assert fetch(port, "GET", "/file?name=small.bin").body == small
    assert fetch(port, "GET", "/error").status == 500
    r = fetch(port, "GET", "/status/299")
    assert (r.status, r.reason) == (299, "Custom Reason With Spaces")
    r = fetch(port, "HEAD", "/status/200")
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == "11"
    for code in (204, 304):
        r = fetch(port, "GET", f"/nobody/{code}")
        assert r.status == code and r.body == b""


# ---------------------------------------------------------------------------------------------
# Through uwsgi_pass: what the uwsgi vars carry.

UWSGI_ROUTES = ["unix", "tcp"]


@pytest.mark.parametrize("route", UWSGI_ROUTES)
def test_remote_addr_and_server_vars(stack: Stack, route: str) -> None:
    # A client on another loopback address than nginx's own, so "the client's address" and
    # "nginx's address" differ.
    port = stack.ports[route]
    env = fetch(port, "GET", "/environ?x=1", source="127.0.0.5").json()
    assert env["REMOTE_ADDR"] == "127.0.0.5", stack.diag()
    assert env["SERVER_NAME"] == HOST
    assert env["SERVER_PORT"] == str(port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ" and env["QUERY_STRING"] == "x=1"
    assert env["REQUEST_URI"] == "/environ?x=1"
    assert env["HTTP_HOST"] == HOST
    assert int(env["REMOTE_PORT"]) > 0
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTPS" not in env


def test_proxy_pass_sees_nginx_not_client(stack: Stack) -> None:
    """The contrast that gives the uwsgi test its meaning: over proxy_pass the peer is nginx and
    the client is only in X-Forwarded-For."""
    env = fetch(stack.ports["proxy"], "GET", "/environ", source="127.0.0.5").json()
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.5"


def test_http10_client_through_uwsgi(stack: Stack) -> None:
    raw = b"GET /environ HTTP/1.0\r\nHost: example.test\r\n\r\n"
    with socket.create_connection(("127.0.0.1", stack.ports["unix"]), timeout=30) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:500]
    assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_url_scheme_follows_tls(stack: Stack) -> None:
    env = fetch(stack.ports["tls"], "GET", "/environ", host="secure.test", tls=True).json()
    assert env["HTTPS"] == "on", stack.diag()
    assert env["REQUEST_SCHEME"] == "https"
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_NAME"] == "secure.test"
    assert env["SERVER_PORT"] == str(stack.ports["tls"])


@pytest.mark.parametrize("route", UWSGI_ROUTES)
@pytest.mark.parametrize("size", [0, 1, 10 * 1024 * 1024], ids=["0B", "1B", "10MiB"])
def test_post_bodies(stack: Stack, route: str, size: int) -> None:
    body = (hashlib.sha256(b"seed").digest() * (size // 32 + 1))[:size]
    r = fetch(stack.ports[route], "POST", "/digest", [("Content-Type", "application/x-test")],
              body)
    assert r.status == 200, (r, stack.diag())
    got = r.json()
    assert got["length"] == size
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["CONTENT_LENGTH"] == str(size)


@pytest.mark.parametrize("route", UWSGI_ROUTES)
def test_chunked_upload_arrives_with_content_length(stack: Stack, route: str) -> None:
    pieces = [os.urandom(1 + i * 977) for i in range(200)]
    total = b"".join(pieces)
    conn = http.client.HTTPConnection("127.0.0.1", stack.ports[route], timeout=60)
    try:
        conn.putrequest("POST", "/digest", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", HOST)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for p in pieces:
            conn.send(b"%x\r\n%s\r\n" % (len(p), p))
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        got = json.loads(r.read())
    finally:
        conn.close()
    assert r.status == 200
    # nginx de-chunks the body and frames it by length in the uwsgi packet; the client's
    # Transfer-Encoding header itself still arrives as a var and must not be used for framing.
    assert got["CONTENT_LENGTH"] == str(len(total)), stack.diag()
    assert got["length"] == len(total)
    assert got["sha256"] == hashlib.sha256(total).hexdigest()


@pytest.mark.parametrize("route", UWSGI_ROUTES)
def test_unbuffered_upload_streams_to_the_app(stack: Stack, route: str) -> None:
    """`uwsgi_request_buffering off` (the /upload/ location): the app runs while the client is
    still sending. The client holds back most of the body until the app has been called, which
    can only happen if nginx passed the first part on without waiting for the rest."""
    token = f"{route}-{time.monotonic_ns()}"
    first = os.urandom(2 * 1024 * 1024)
    rest_blocks = [os.urandom(1024 * 1024) for _ in range(30)]
    total_len = len(first) + sum(len(b) for b in rest_blocks)
    digest = hashlib.sha256(first)
    for b in rest_blocks:
        digest.update(b)
    mark = Path(stack.files, f"mark-{token}.json")
    conn = http.client.HTTPConnection("127.0.0.1", stack.ports[route], timeout=60)
    try:
        conn.putrequest("POST", f"/upload/digest?mark={token}", skip_host=True,
                        skip_accept_encoding=True)
        conn.putheader("Host", HOST)
        conn.putheader("Content-Length", str(total_len))
        conn.endheaders()
        conn.send(first)
        wait_until(mark.exists, 20, "the app to be called before the body was complete")
        for b in rest_blocks:
            conn.send(b)
        r = conn.getresponse()
        got = json.loads(r.read())
    finally:
        conn.close()
    assert r.status == 200
    assert got["length"] == total_len
    assert got["sha256"] == digest.hexdigest()
    assert got["CONTENT_LENGTH"] == str(total_len)


@pytest.mark.parametrize("route", UWSGI_ROUTES)
def test_generator_of_1000_chunks_is_byte_exact(stack: Stack, route: str) -> None:
    r = fetch(stack.ports[route], "GET", "/stream?n=1000")
    assert r.status == 200
    assert r.body == nginx_apps.stream_body(1000)


@pytest.mark.parametrize("route", UWSGI_ROUTES)
def test_file_wrapper_100mib_is_byte_exact(stack: Stack, route: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.ports[route], timeout=120)
    try:
        conn.request("GET", "/file?name=big.bin", headers={"Host": HOST})
        r = conn.getresponse()
        assert r.status == 200
        digest = hashlib.sha256()
        n = 0
        while block := r.read(1 << 20):
            digest.update(block)
            n += len(block)
    finally:
        conn.close()
    assert n == BIG_FILE_MIB << 20
    assert digest.hexdigest() == stack.big_sha256


# nginx's own limit in the templates: `large_client_header_buffers 4 16k` - every header line
# must fit in 16 KiB.
HEADER_LINE_LIMIT = 16 * 1024


@pytest.mark.parametrize("route", ["unix", "tcp", "proxy", "proxy_unix"])
def test_big_request_headers_up_to_nginx_limits(stack: Stack, route: str) -> None:
    # Three header lines just under the per-line limit: about 48 KiB of vars in one uwsgi packet
    # (far past uWSGI's 4 KiB default buffer), or a 48 KiB HTTP head on proxy_pass.
    value_len = HEADER_LINE_LIMIT - 64
    headers = [(f"X-Test-Big-{i}", chr(ord("a") + i) * value_len) for i in range(3)]
    r = fetch(stack.ports[route], "GET", "/big-headers", headers)
    assert r.status == 200, (r.status, r.body[:300], stack.diag())
    assert r.json() == {f"HTTP_X_TEST_BIG_{i}": value_len for i in range(3)}
    # One line over the limit is refused by nginx itself: the limit above is nginx's, not ours.
    r = fetch(stack.ports[route], "GET", "/big-headers",
              [("X-Test-Big-0", "z" * (HEADER_LINE_LIMIT + 64))])
    assert r.status == 400
    assert b"Request Header Or Cookie Too Large" in r.body


@pytest.mark.parametrize("route", ["unix", "tcp", "proxy", "proxy_unix"])
def test_long_url_up_to_nginx_limits(stack: Stack, route: str) -> None:
    query = "q=" + "u" * (HEADER_LINE_LIMIT - 512)
    r = fetch(stack.ports[route], "GET", f"/echo-env?{query}")
    assert r.status == 200, (r.status, r.body[:300], stack.diag())
    assert r.json()["QUERY_STRING"] == query
    # A request line over the buffer size is nginx's to refuse (414), not ours.
    r = fetch(stack.ports[route], "GET", "/echo-env?q=" + "u" * (HEADER_LINE_LIMIT + 64))
    assert r.status == 414 and b"<center>nginx" in r.body, (r.status, r.body[:300])


@pytest.mark.parametrize("route", UWSGI_ROUTES)
def test_app_error_is_500_not_502(stack: Stack, route: str) -> None:
    direct = fetch(stack.ports["direct"], "GET", "/error")
    r = fetch(stack.ports[route], "GET", "/error")
    assert r.status == 500, (r, stack.diag())
    # Velocior's own 500, passed through: not an nginx error page about a broken upstream.
    assert r.body == direct.body
    assert b"<center>nginx" not in r.body
    upstream_errors = [line for line in stack.nginx.error_log().splitlines()
                       if '"GET /error ' in line and "upstream" in line]
    assert upstream_errors == []


def read_record(path: Path, timeout: float) -> dict:  # type: ignore[type-arg]
    wait_until(path.exists, timeout, f"{path.name} to be written")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("route", UWSGI_ROUTES)
def test_client_abort_mid_download_runs_close(stack: Stack, route: str) -> None:
    token = f"abort-{route}-{time.monotonic_ns()}"
    total_blocks = 2000  # 125 MiB at 64 KiB a block, 10 ms apart: 20 s if nothing stops it
    s = socket.create_connection(("127.0.0.1", stack.ports[route]), timeout=30)
    try:
        s.sendall(f"GET /abortable?token={token}&n={total_blocks}&size=65536&delay=0.01 "
                  f"HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        got = 0
        while got < 1 << 20:
            data = s.recv(65536)
            assert data, "nginx closed the download early"
            got += len(data)
    finally:
        s.close()
    record = read_record(Path(stack.files, f"closed-{token}.json"), 20)
    assert record["total"] == total_blocks
    assert record["sent"] < total_blocks, "close() ran only after the whole download"
    # The worker goes on serving.
    assert fetch(stack.ports[route], "GET", "/hello").body == b"Hello, World!"


def test_slow_app_hits_read_timeout_and_worker_stays_healthy(stack: Stack) -> None:
    """nginx/test/extras.conf sets `uwsgi_read_timeout 1s` on this server; the app takes 3 s."""
    token = f"slow-{time.monotonic_ns()}"
    pid = stack.backend.pid
    r = fetch(stack.ports["timeout"], "GET", f"/slow?sleep=3&token={token}", host="timeout.test")
    assert r.status == 504
    assert "upstream timed out" in stack.nginx.error_log()
    # The app finishes its work into a connection nginx has closed; its result is still closed.
    read_record(Path(stack.files, f"closed-{token}.json"), 20)
    for route in ("unix", "tcp", "direct"):
        for _ in range(10):
            r = fetch(stack.ports[route], "GET", "/hello")
            assert (r.status, r.body) == (200, b"Hello, World!"), stack.diag()
    assert stack.backend.proc.poll() is None and stack.backend.pid == pid


@pytest.mark.parametrize("route", ["unix", "tcp", "proxy", "proxy_unix"])
def test_x_accel_redirect_is_served_by_nginx(stack: Stack, route: str) -> None:
    r = fetch(stack.ports[route], "GET", "/xaccel?name=protected.txt")
    assert r.status == 200, (r, stack.diag())
    assert r.body == PROTECTED_TEXT
    assert r.header("X-Accel-Redirect") is None
    # nginx's static module answered: it adds these, the app did not.
    assert r.header("ETag") is not None and r.header("Accept-Ranges") == "bytes"
    # The protected location is internal: a client cannot fetch it directly.
    assert fetch(stack.ports[route], "GET", "/protected/protected.txt").status == 404


def test_unix_socket_permissions_between_nginx_and_velocior() -> None:
    """docs/deployment.md, "Socket permissions": Velocior makes its socket 0660, so nginx's
    workers (www-data here) get in only through the socket's group."""
    tmp = make_public_tmpdir("velocior-perm-")
    sock = os.path.join(tmp, "app.sock")
    listen = free_ports(1)[0]
    with Backend("nginx_apps:app", uwsgi=[f"unix:{sock}"], ready=[sock]) as backend, \
            Nginx([("unix", {"LISTEN": listen})],
                  {"SERVER_NAME": HOST, "SOCKET": sock, "PROTECTED_DIR": tmp},
                  user="www-data", wait_ports=[listen]) as nginx:
        st = os.stat(sock)
        assert st.st_mode & 0o777 == 0o660, oct(st.st_mode)
        # Owned by root:root, as Velocior runs here: www-data is neither.
        r = fetch(listen, "GET", "/hello")
        assert r.status == 502
        assert "Permission denied" in nginx.error_log()
        give_socket_to_group(sock)
        r = fetch(listen, "GET", "/hello")
        assert (r.status, r.body) == (200, b"Hello, World!"), backend.log()
    shutil.rmtree(tmp, ignore_errors=True)


def test_systemd_socket_activation_behind_nginx() -> None:
    """The socket unit of docs/deployment.md: the socket (0660, group www-data) belongs to the
    activator, here this test, and Velocior gets it as fd 3. It outlives a Velocior restart
    (`systemctl restart` while a request is running): the running request completes, and a
    request that arrives while Velocior is down waits in the listen queue and is answered by
    the next Velocior, instead of failing."""
    tmp = make_public_tmpdir("velocior-activation-")
    path = os.path.join(tmp, "velocior.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o660)
    give_socket_to_group(path)
    listener.listen(128)
    listen = free_ports(1)[0]
    backend = Backend("nginx_apps:app", activate=(listener, "uwsgi"), ready=[path], log_dir=tmp,
                      env={"VELOCIOR_TEST_FILES": tmp})
    nginx = None
    try:
        nginx = Nginx([("unix", {"LISTEN": listen})],
                      {"SERVER_NAME": HOST, "SOCKET": path, "PROTECTED_DIR": tmp},
                      wait_ports=[listen])
        assert fetch(listen, "GET", "/whoami").status == 200, backend.log()
        mark = Path(tmp, "mark-restart.json")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            running = pool.submit(fetch, listen, "GET", "/slow?sleep=1&mark=restart")
            wait_until(mark.exists, 20, "the slow request to reach the app")
            assert backend.stop() == 0
            r = running.result(timeout=30)
            assert (r.status, r.body) == (200, b"x" * 16), backend.log()
        assert os.path.exists(path), "Velocior removed a socket file it did not create"

        # Velocior is down; the socket still listens. This request must wait, not fail.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(fetch, listen, "GET", "/hello")
            time.sleep(0.5)
            assert not pending.done(), pending.result()
            backend = Backend("nginx_apps:app", activate=(listener, "uwsgi"), log_dir=tmp,
                              env={"VELOCIOR_TEST_BACKEND": "second",
                                   "VELOCIOR_TEST_FILES": tmp})
            r = pending.result(timeout=60)
        assert (r.status, r.body) == (200, b"Hello, World!"), backend.log()
        assert fetch(listen, "GET", "/whoami").body == b"second"
    finally:
        if nginx is not None:
            nginx.stop()
        backend.stop()
        listener.close()
        shutil.rmtree(tmp, ignore_errors=True)
