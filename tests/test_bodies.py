"""Request and response bodies at size: streamed uploads with bounded memory, bodies the app does
not read, a 1,000-chunk generator, wsgi.file_wrapper (sendfile) of a 50 MiB file."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uwsgi_client as uw
from helpers import (
    Closed,
    Conn,
    chunked,
    gen_body,
    peak_rss_mib,
    qs,
    request,
    start_server,
    state,
    stop_checked,
    token,
    wait_state,
)
from support import ServerProcess

MIB = 1 << 20


def minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def test_large_bodies_reuse_the_heap() -> None:
    # --retain-heap (default 32 MiB): a 1 MiB body read, joined and sent back reuses freed heap
    # memory, where the C library's default would hand it back and page-fault it in again on
    # every request (about 500 faults each, for 2 MiB of buffers).
    srv = start_server("apps.echo:app")
    try:
        body = bytes(range(256)) * (4 * 1024)
        with Conn.tcp(srv.host, srv.port) as c:
            def roundtrip() -> None:
                c.send(request("POST", "/bodyecho", body=body))
                assert c.read_response().body == body

            for _ in range(5):
                roundtrip()
            before = minor_faults(srv.pid)
            for _ in range(20):
                roundtrip()
            per_request = (minor_faults(srv.pid) - before) / 20
        assert per_request < 64, per_request
    finally:
        stop_checked(srv)


def test_generator_of_1000_chunks_byte_exact(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/gen?n=1000") + request("GET", "/hello"))
        r = c.read_response()
        assert r.status == 200 and r.framing == "chunked"
        body = gen_body(1000)
        assert len(r.body) == len(body) and r.body == body
        # the empty chunks the app yields did not end the body early
        assert c.read_response().body == b"Hello, World!"


def test_large_streamed_response(lab: ServerProcess) -> None:
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/big?mb=64"))
        r = c.read_response()
        assert r.status == 200
        assert len(r.body) == 64 * MIB and r.body == b"x" * (64 * MIB)


# --- uploads with bounded memory -------------------------------------------------------------


def pattern_block(i: int) -> bytes:
    return hashlib.sha256(b"block%d" % i).digest() * (MIB // 32)


def send_blocks(c: Conn, head: bytes, n: int, chunked_framing: bool) -> str:
    """Send `head`, then n MiB of body (optionally chunk-framed); return the body's sha256."""
    h = hashlib.sha256()
    c.send(head)
    for i in range(n):
        block = pattern_block(i % 8)
        h.update(block)
        c.send(b"%x\r\n%s\r\n" % (len(block), block) if chunked_framing else block)
    if chunked_framing:
        c.send(b"0\r\n\r\n")
    return h.hexdigest()


@pytest.fixture()
def fresh() -> Iterator[ServerProcess]:
    """A server of its own, so its peak memory reflects only what the test does."""
    srv = start_server("apps.echo:app")
    yield srv
    stop_checked(srv)


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_100_mib_upload_streams_with_bounded_memory(fresh: ServerProcess,
                                                    use_chunked: bool) -> None:
    n = 100
    with Conn.tcp(fresh.host, fresh.port) as c:
        c.send(request("GET", "/hello"))
        assert c.read_response().status == 200
        baseline = peak_rss_mib(fresh.pid)
        hdrs = [("Transfer-Encoding", "chunked")] if use_chunked else [
            ("Content-Length", str(n * MIB))]
        digest = send_blocks(c, request("POST", "/hash", hdrs), n, use_chunked)
        r = c.read_response()
        assert r.json() == {"len": n * MIB, "sha256": digest}
    peak = peak_rss_mib(fresh.pid)
    # 100 MiB went through; the server's peak resident memory grew by far less than that
    assert peak - baseline < 40, f"peak RSS {peak:.1f} MiB, baseline {baseline:.1f} MiB"
    assert peak < 100, f"peak RSS {peak:.1f} MiB"


# --- bodies the app does not read ----------------------------------------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_small_unread_body_is_drained(lab: ServerProcess, use_chunked: bool) -> None:
    body = SMUGGLED * 3
    if use_chunked:
        data = request("POST", "/noread", [("Transfer-Encoding", "chunked")]) + chunked(
            [body[:20], body[20:]])
    else:
        data = request("POST", "/noread", body=body)
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(data + request("GET", "/echo?after=1"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok, body not read"
        nxt = c.read_response()
        env = nxt.json()
        assert env["PATH_INFO"] == "/echo" and env["QUERY_STRING"] == "after=1"
        assert c.nothing_within(0.3)  # and nothing from inside the body was answered


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_large_unread_body_closes_connection(lab: ServerProcess, use_chunked: bool) -> None:
    n = 32 * MIB // len(SMUGGLED)
    body = SMUGGLED * n
    with Conn.tcp(lab.host, lab.port) as c:
        if use_chunked:
            head = request("POST", "/noread", [("Transfer-Encoding", "chunked")])
        else:
            head = request("POST", "/noread", [("Content-Length", str(len(body)))])
        errors: list[BaseException] = []

        def sender() -> None:
            try:
                c.send(head)
                for i in range(0, len(body), MIB):
                    piece = body[i:i + MIB]
                    c.send(b"%x\r\n%s\r\n" % (len(piece), piece) if use_chunked else piece)
                if use_chunked:
                    c.send(b"0\r\n\r\n")
                c.send(request("GET", "/echo?after=1"))
            except OSError as e:  # the server closing on us is the expected outcome
                errors.append(e)

        t = threading.Thread(target=sender)
        t.start()
        try:
            r = c.read_response()
            assert r.status == 200 and r.body == b"ok, body not read"
            rest = c.wait_closed(30)
        finally:
            t.join(60)
        # no byte of the body was taken for a request
        assert b"HTTP/1." not in rest, rest[:300]


# --- wsgi.file_wrapper -----------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("cl", ["1", "0"], ids=["app-content-length", "no-content-length"])
def test_file_wrapper_50_mib_over_http_uses_sendfile(lab: ServerProcess,
                                                     big_file: tuple[Path, str],
                                                     cl: str) -> None:
    path, digest = big_file
    tok = token("file")
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/file?" + qs(path=path, token=tok, cl=cl))
               + request("GET", "/hello"))
        r = c.read_response()
        assert r.status == 200
        assert len(r.body) == 50 * MIB and sha(r.body) == digest
        if cl == "1":
            assert r.framing == "length" and r.header("content-length") == str(50 * MIB)
        assert c.read_response().body == b"Hello, World!"
    st = wait_state(lab, tok, "file_closed")  # the wrapper's close() closes the file
    # the server never pulled the bytes through Python: they went out with sendfile(2)
    assert st.get("reads", 0) == 0, st


def test_file_wrapper_starts_at_current_position(lab: ServerProcess,
                                                 big_file: tuple[Path, str]) -> None:
    path, _ = big_file
    data = path.read_bytes()
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("GET", "/file?" + qs(path=path, seek=12345)))
        r = c.read_response()
        assert len(r.body) == len(data) - 12345 and r.body == data[12345:]


def test_file_wrapper_over_non_file_is_iterated(lab: ServerProcess, tmp_path: Path) -> None:
    data = bytes(range(256)) * 12289  # ~3 MiB, not a multiple of the block size
    p = tmp_path / "bytesio.bin"
    p.write_bytes(data)
    for cl in ("1", "0"):
        with Conn.tcp(lab.host, lab.port) as c:
            c.send(request("GET", "/file?" + qs(path=p, kind="bytesio", cl=cl, blksize=10000)))
            r = c.read_response()
            assert r.status == 200 and r.body == data, cl


def test_file_wrapper_head_sends_no_body(lab: ServerProcess, big_file: tuple[Path, str]) -> None:
    path, _ = big_file
    tok = token("filehead")
    with Conn.tcp(lab.host, lab.port) as c:
        c.send(request("HEAD", "/file?" + qs(path=path, token=tok)) + request("GET", "/hello"))
        r = c.read_response(head=True)
        assert r.header("content-length") == str(50 * MIB)
        assert c.read_response().body == b"Hello, World!"
    wait_state(lab, tok, "file_closed")


def test_file_wrapper_small_file(lab: ServerProcess, tmp_path: Path) -> None:
    for size in (0, 1, 65535, 65536, 65537):
        p = tmp_path / f"s{size}.bin"
        p.write_bytes(b"q" * size)
        with Conn.tcp(lab.host, lab.port) as c:
            c.send(request("GET", "/file?" + qs(path=p)) + request("GET", "/hello"))
            r = c.read_response()
            assert r.body == b"q" * size, size
            assert c.read_response().body == b"Hello, World!"


@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_file_wrapper_50_mib_over_uwsgi(lab: ServerProcess, big_file: tuple[Path, str],
                                        where: str) -> None:
    path, digest = big_file
    tok = token("ufile")
    target = ("127.0.0.1", lab.uwsgi_port) if where == "tcp" else lab.uwsgi_path  # type: ignore[attr-defined]
    for cl in ("1", "0"):
        resp, rest = uw.roundtrip(target, uw.cgi_vars(path="/file",
                                                      query=qs(path=path, token=tok, cl=cl)))
        assert resp.status == 200
        assert resp.header("transfer-encoding") is None
        assert len(resp.body) == 50 * MIB and sha(resp.body) == digest
        assert rest == b""
    st = wait_state(lab, tok, "file_closed")
    assert st.get("reads", 0) == 0, st


def test_client_gone_during_file_response(lab: ServerProcess, big_file: tuple[Path, str]) -> None:
    path, _ = big_file
    tok = token("filegone")
    c = Conn.tcp(lab.host, lab.port)
    c.send(request("GET", "/file?" + qs(path=path, token=tok)))
    c.read_head()
    c.close()
    wait_state(lab, tok, "file_closed")
    assert state(lab, tok).get("reads", 0) == 0
    try:
        with Conn.tcp(lab.host, lab.port) as c2:
            c2.send(request("GET", "/hello"))
            assert c2.read_response().body == b"Hello, World!"
    except Closed as e:
        raise AssertionError("server stopped answering after a client left mid-file") from e
