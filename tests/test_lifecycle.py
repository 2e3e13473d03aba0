"""Listeners and process life: several listeners in one process (TCP, IPv6, unix sockets, both
protocols), unix socket files (stale file replaced, mode, removed at exit), bind errors, and the
stop signals (TERM graceful, INT quick)."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
import uwsgi_client as uw
from helpers import LIVE_SERVERS, Closed, Conn, http_get, qs, read_log, request, stop
from support import ServerProcess, free_port, wait_for_tcp, wait_for_unix


def make_stale_socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays: what a killed server leaves behind
    assert path.exists()


def start_bare(*args: str) -> ServerProcess:
    srv = ServerProcess("apps.echo:app", *args, http=False, wait=False)
    LIVE_SERVERS.append(srv)
    return srv


def test_several_listeners_in_one_process(tmp_path: Path) -> None:
    http4, http6, uw4 = free_port(), free_port("::1"), free_port()
    hsock, usock, usock2 = tmp_path / "h.sock", tmp_path / "u.sock", tmp_path / "u2.sock"
    make_stale_socket(hsock)
    srv = start_bare("--http", f"127.0.0.1:{http4}", "--http", f"[::1]:{http6}",
                     "--http", f"unix:{hsock}", "--uwsgi", f"127.0.0.1:{uw4}",
                     "--uwsgi", str(usock), "--uwsgi", f"unix:{usock2}", "--socket-mode", "600")
    try:
        wait_for_tcp("127.0.0.1", http4, proc=srv.proc)
        wait_for_tcp("::1", http6, proc=srv.proc)
        wait_for_tcp("127.0.0.1", uw4, proc=srv.proc)
        for p in (hsock, usock, usock2):
            wait_for_unix(str(p), proc=srv.proc)
            assert stat.S_ISSOCK(p.stat().st_mode)
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))

        with Conn.tcp("127.0.0.1", http4) as c:
            c.send(request("GET", "/echo"))
            env = c.read_response().json()
            assert env["REMOTE_ADDR"] == "127.0.0.1"
        with Conn.tcp("::1", http6) as c:
            c.send(request("GET", "/echo"))
            env = c.read_response().json()
            assert env["REMOTE_ADDR"] == "::1"
        with Conn.unix(str(hsock)) as c:  # the stale file was replaced by a live socket
            c.send(request("GET", "/hello"))
            assert c.read_response().body == b"Hello, World!"
        for target in (("127.0.0.1", uw4), str(usock), str(usock2)):
            resp, rest = uw.roundtrip(target, uw.cgi_vars(path="/echo"))
            assert resp.json()["REMOTE_ADDR"] == "203.0.113.7" and rest == b""

        log = read_log(srv)
        # one startup line per listener, naming it
        for needle in (str(http4), str(http6), str(uw4), str(hsock), str(usock), str(usock2)):
            assert needle in log, (needle, log)
    finally:
        rc = stop(srv)
    assert rc == 0, read_log(srv)
    for p in (hsock, usock, usock2):
        assert not p.exists(), f"{p} left behind after exit"


def test_default_unix_socket_mode(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    srv = start_bare("--http", f"unix:{path}")
    try:
        wait_for_unix(str(path), proc=srv.proc)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
    finally:
        stop(srv)


def bind_failure(*args: str) -> tuple[int, str]:
    srv = start_bare(*args)
    try:
        rc = srv.proc.wait(20)
    except subprocess.TimeoutExpired:
        stop(srv)
        raise AssertionError(
            f"server started despite a bad listener {args}: {read_log(srv)}") from None
    stop(srv)
    return rc, read_log(srv)


def test_address_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, log = bind_failure("--http", f"127.0.0.1:{port}")
    assert rc == 1, log
    assert "Traceback" not in log
    assert str(port) in log and log.strip(), log


@pytest.mark.parametrize("address", ["999.1.2.3:80", "127.0.0.1:notaport", "127.0.0.1:70000",
                                     "unix:/nonexistent-dir-velocior/x.sock"])
def test_bad_listen_address(address: str) -> None:
    rc, log = bind_failure("--http", address)
    assert rc == 1, log
    assert "Traceback" not in log and log.strip(), log


# --- signals ---------------------------------------------------------------------------------


def start_waiting_request(srv: ServerProcess, tmp_path: Path) -> tuple[Conn, Path]:
    started, release = tmp_path / "started", tmp_path / "release"
    c = Conn.tcp(srv.host, srv.port, timeout=30)
    c.send(request("GET", "/waitfile?" + qs(started=started, release=release)))
    deadline = time.monotonic() + 15
    while not started.exists():
        assert time.monotonic() < deadline, read_log(srv)
        time.sleep(0.02)
    return c, release


def wait_refused(host: str, port: int) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                pass
        except ConnectionRefusedError:
            return
        except OSError:
            pass
        assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
        time.sleep(0.05)


def test_sigterm_is_graceful(tmp_path: Path) -> None:
    srv = ServerProcess("apps.echo:app", "--threads", "2", "--keep-alive", "60",
                        "--header-timeout", "60")
    LIVE_SERVERS.append(srv)
    try:
        idle = Conn.tcp(srv.host, srv.port)
        idle.send(request("GET", "/hello"))
        assert idle.read_response().status == 200
        busy, release = start_waiting_request(srv, tmp_path)
        srv.signal(signal.SIGTERM)
        wait_refused(srv.host, srv.port)  # stops accepting
        assert idle.wait_closed(15) == b""  # idle keep-alive connections are closed
        assert srv.proc.poll() is None  # ... while the in-flight request still runs
        release.write_text("go")
        r = busy.read_response()
        assert r.status == 200 and r.body == b"finished after release"
        assert srv.proc.wait(20) == 0
        assert "Traceback" not in read_log(srv)
    finally:
        stop(srv)


def test_sigterm_graceful_timeout(tmp_path: Path) -> None:
    srv = ServerProcess("apps.echo:app", "--threads", "2", "--graceful-timeout", "1")
    LIVE_SERVERS.append(srv)
    try:
        busy, _ = start_waiting_request(srv, tmp_path)  # never released
        srv.signal(signal.SIGTERM)
        # the in-flight request had its chance; the process does not wait for it
        assert srv.proc.wait(30) == 0, read_log(srv)
        try:
            r = busy.read_response(allow_truncated=True)
            assert r.status != 200 or not r.complete, r
        except Closed:
            pass
    finally:
        stop(srv)


def test_sigint_stops_at_once(tmp_path: Path) -> None:
    srv = ServerProcess("apps.echo:app", "--threads", "2", "--graceful-timeout", "60")
    LIVE_SERVERS.append(srv)
    try:
        busy, _ = start_waiting_request(srv, tmp_path)  # never released
        assert http_get(srv, "/hello").status == 200
        srv.signal(signal.SIGINT)
        # quick stop: no waiting for the 60 s graceful period or the request
        assert srv.proc.wait(15) == 0, read_log(srv)
        assert "Traceback" not in read_log(srv)
        busy.close()
    finally:
        stop(srv)


def test_sigint_with_idle_connections(tmp_path: Path) -> None:
    srv = ServerProcess("apps.echo:app")
    LIVE_SERVERS.append(srv)
    try:
        conns = [Conn.tcp(srv.host, srv.port) for _ in range(5)]
        conns[0].send(request("GET", "/hello"))
        assert conns[0].read_response().status == 200
        # The others are in the middle of a head. (A client that has sent nothing yet is still
        # the kernel's: TCP listeners defer the accept until the first bytes, see
        # test_client_silent_after_connecting_is_served.)
        for c in conns[1:]:
            c.send(b"GET /hello HTTP/1.1\r\n")
        srv.signal(signal.SIGINT)
        assert srv.proc.wait(15) == 0, read_log(srv)
        for c in conns:
            assert c.wait_closed(5) == b""
            c.close()
        assert "Traceback" not in read_log(srv)
    finally:
        stop(srv)

