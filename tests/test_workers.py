"""The process model: supervisor and workers, crashes, signals, reload under load, recycling,
hung-worker timeout, scaling, systemd socket activation, boot failures.

Load is a bounded Python loop (apps_workers.tools.Load): a few client threads, a new connection
per request, every outcome recorded, stopped by count or time.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from apps_workers.tools import Load, children, get, wait_until
from support import TESTS, ServerProcess, free_port, stop_popen, wait_for_tcp


def refused(srv: ServerProcess) -> bool:
    try:
        socket.create_connection((srv.host, srv.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def final_log(srv: ServerProcess) -> str:
    return Path(srv.log_path).read_text(errors="replace")


def workers_of(srv: ServerProcess, count: int, timeout: float = 20.0) -> list[int]:
    """Wait until the supervisor has exactly `count` live children, all of them ready."""
    def ready() -> list[int] | None:
        pids = children(srv.pid)
        log = srv.log()
        if len(pids) == count and all(f"worker {p} ready" in log for p in pids):
            return pids
        return None
    try:
        return wait_until(ready, timeout, what=f"{count} ready workers")
    except AssertionError as e:
        raise AssertionError(f"{e}; children {children(srv.pid)}; log:\n{srv.log()}") from None


def pids_seen(srv: ServerProcess, want: int, path: str = "/sleep?0.2",
              rounds: int = 25) -> set[int]:
    """Concurrent slow requests, so that a busy worker leaves the next connection to another."""
    seen: set[int] = set()
    lock = threading.Lock()

    def one() -> None:
        pid = get(srv.port, path).pid
        with lock:
            seen.add(pid)
    for _ in range(rounds):
        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        if len(seen) >= want:
            break
    return seen


def test_two_workers_both_serve() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--workers", "2")
    try:
        pids = workers_of(srv, 2)
        assert srv.pid not in pids
        assert pids_seen(srv, 2) == set(pids)
        r = get(srv.port, "/")
        assert r.pid in pids
        # Without --preload each worker imports the app itself.
        assert r.headers["x-import-pid"] == str(r.pid)
    finally:
        assert srv.stop() == 0
    assert "Traceback" not in final_log(srv)


def test_preload_imports_once_in_the_supervisor() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--workers", "2", "--preload")
    try:
        workers_of(srv, 2)
        r = get(srv.port)
        assert r.headers["x-import-pid"] == str(srv.pid) != str(r.pid)
    finally:
        assert srv.stop() == 0


def test_kill_9_under_load_replaces_the_worker() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--workers", "2")
    load = None
    try:
        victim, survivor = workers_of(srv, 2)
        load = Load(srv.port, threads=4).start()
        wait_until(lambda: load.count() > 100, what="load before the kill")
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        srv.wait_log(f"worker {victim} died (killed by signal 9 (SIGKILL))")
        new = wait_until(lambda: [p for p in children(srv.pid) if p not in (victim, survivor)
                                  and f"worker {p} ready" in srv.log()], what="a new worker")[0]
        wait_until(lambda: any(o.pid == new for o in load.since(killed_at)),
                   what="the new worker answering")
        outcomes = load.stop()
        after = [o for o in outcomes if o.at >= killed_at]
        assert any(o.ok and o.pid == survivor for o in after), "the survivor stopped answering"
        # Only requests in flight on the killed worker may fail: at most one per client thread.
        failures = [o for o in outcomes if not o.ok]
        assert len(failures) <= load.threads, failures
        assert len(outcomes) - len(failures) > 100
    finally:
        if load is not None:
            load.stop()
        assert srv.stop() == 0


@pytest.mark.parametrize("path, status", [("/crash", "exit code 7"),
                                          ("/segv", "killed by signal 11 (SIGSEGV)")])
def test_worker_dying_while_serving_is_replaced(path: str, status: str) -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--supervise")
    try:
        (first,) = workers_of(srv, 1)
        with pytest.raises(Exception):  # noqa: B017 - the connection just dies with the worker
            get(srv.port, path)
        srv.wait_log(f"worker {first} died ({status}); starting a new one")
        (second,) = workers_of(srv, 1)
        assert second != first
        assert get(srv.port).pid == second
    finally:
        assert srv.stop() == 0


def _write_app(path: Path, version: str, pad: int = 0) -> None:
    # The padding changes the file size as well as its content: a .pyc is trusted by size and
    # mtime in seconds, and the rewrite happens within the second.
    path.write_text(
        f"# {'x' * pad}\n"
        "import os\n"
        f"VERSION = {version!r}\n"
        "def app(environ, start_response):\n"
        "    body = VERSION.encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body))),\n"
        "                              ('X-Worker-Pid', str(os.getpid()))])\n"
        "    return [body]\n")


def test_hup_under_load_reloads_new_code_without_a_failed_request(tmp_path: Path) -> None:
    app = tmp_path / "hupapp.py"
    _write_app(app, "v1")
    srv = ServerProcess("hupapp:app", "--workers", "2", "--pythonpath", str(tmp_path),
                        env={"PYTHONDONTWRITEBYTECODE": "1"})
    load = None
    try:
        old = workers_of(srv, 2)
        load = Load(srv.port, threads=4).start()
        wait_until(lambda: load.count() > 100, what="load before the reload")
        _write_app(app, "v2", pad=40)
        os.kill(srv.pid, signal.SIGHUP)
        srv.wait_log("reload: 2 new workers ready; stopping 2 old ones")
        for pid in old:
            srv.wait_log(f"worker {pid} stopped (exit code 0)", timeout=40)
        reloaded_at = time.monotonic()
        wait_until(lambda: len(load.since(reloaded_at)) > 100, what="load after the reload")
        outcomes = load.stop()
        assert [o for o in outcomes if not o.ok] == []
        assert {o.body for o in outcomes} == {b"v1", b"v2"}
        after = [o for o in outcomes if o.at >= reloaded_at]
        assert {o.body for o in after} == {b"v2"}
        assert not {o.pid for o in after} & set(old)
    finally:
        if load is not None:
            load.stop()
        assert srv.stop() == 0


def test_hup_with_broken_new_code_keeps_the_old_workers(tmp_path: Path) -> None:
    app = tmp_path / "hupapp.py"
    _write_app(app, "v1")
    srv = ServerProcess("hupapp:app", "--workers", "2", "--pythonpath", str(tmp_path),
                        env={"PYTHONDONTWRITEBYTECODE": "1"})
    try:
        old = workers_of(srv, 2)
        app.write_text("raise ImportError('half-deployed')\n")
        os.kill(srv.pid, signal.SIGHUP)
        srv.wait_log("reload cancelled, the old workers keep serving")
        assert "half-deployed" in srv.log()
        for _ in range(20):
            r = get(srv.port)
            assert r.body == b"v1" and r.pid in old
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0


def test_term_finishes_slow_request_refuses_new_connections_and_exits_0() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--workers", "2")
    try:
        workers_of(srv, 2)
        busy = srv.connect(timeout=30)
        busy.sendall(b"GET /sleep?5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        srv.wait_log("pidapp: sleeping 5")
        os.kill(srv.pid, signal.SIGTERM)
        srv.wait_log("SIGTERM: graceful stop of 2 worker(s)")
        # The supervisor closes its copy at once, each worker its own as it starts to stop:
        # new connections are refused while the slow request is still in the app.
        wait_until(lambda: refused(srv), timeout=30, what="new connections to be refused")
        assert not select.select([busy], [], [], 0)[0], "refused only after the response"
        data = b""
        while chunk := busy.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"slept 5\n")
        srv.proc.wait(30)
        assert srv.proc.returncode == 0
    finally:
        srv.stop()
    assert "Traceback" not in final_log(srv)


def test_max_requests_replaces_workers_without_a_failed_request() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--workers", "2", "--max-requests", "50",
                        "--max-requests-jitter", "10")
    load = None
    try:
        first = set(workers_of(srv, 2))
        load = Load(srv.port, threads=4, max_requests=400).start()
        wait_until(lambda: load.count() >= 400, timeout=120, what="400 requests")
        outcomes = load.stop()
        assert [o for o in outcomes if not o.ok] == []
        pids = {o.pid for o in outcomes}
        # 400 requests at about 50-60 per worker: the first two were replaced, several times.
        assert len(pids) >= 5 and not pids <= first
        assert "served" in srv.log() and "(max-requests): exiting" in srv.log()
        workers_of(srv, 2)
    finally:
        if load is not None:
            load.stop()
        assert srv.stop() == 0


def test_timeout_kills_a_stuck_worker_and_names_the_request() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--timeout", "2")
    try:
        (stuck,) = workers_of(srv, 1)
        with pytest.raises(Exception):  # noqa: B017 - the worker dies with the connection
            get(srv.port, "/sleep?10", timeout=30)
        srv.wait_log(f"worker {stuck} died (killed by signal 9 (SIGKILL))")
        log = srv.log()
        assert re.search(r"GET /sleep\b", log.split("pidapp: sleeping 10")[1]), log
        (fresh,) = workers_of(srv, 1)
        assert fresh != stuck and get(srv.port).pid == fresh
    finally:
        assert srv.stop() == 0


def test_ttin_ttou_change_the_worker_count() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--workers", "2")
    try:
        two = workers_of(srv, 2)
        os.kill(srv.pid, signal.SIGTTIN)
        three = workers_of(srv, 3)
        assert set(two) < set(three)
        assert pids_seen(srv, 3) == set(three)
        # One at a time: two identical signals sent back to back may arrive as one.
        os.kill(srv.pid, signal.SIGTTOU)
        srv.wait_log("SIGTTOU: 2 workers")
        os.kill(srv.pid, signal.SIGTTOU)
        srv.wait_log("SIGTTOU: 1 worker\n")
        (last,) = workers_of(srv, 1)
        assert last not in two  # the oldest went first
        os.kill(srv.pid, signal.SIGTTOU)
        srv.wait_log("SIGTTOU ignored: already at one worker")
        assert workers_of(srv, 1) == [last]
        assert get(srv.port).pid == last
    finally:
        assert srv.stop() == 0


def test_import_failure_exits_3_once_without_a_fork_loop() -> None:
    srv = ServerProcess("apps_workers.broken:app", "--workers", "2", "--log-level", "debug",
                        wait=False)
    srv.proc.wait(60)
    assert srv.proc.returncode == 3
    log = final_log(srv)
    assert "Traceback" not in log
    errors = [ln for ln in log.splitlines() if "boom" in ln]
    assert len(errors) == 1, log
    assert errors[0].startswith("velocior: error: worker failed to boot: ")
    assert "broken.py, line 3" in errors[0]
    assert len(re.findall(r"worker \d+ started", log)) <= 2, log


def test_import_failure_with_preload_exits_4() -> None:
    srv = ServerProcess("apps_workers.broken:app", "--workers", "2", "--preload", wait=False)
    srv.proc.wait(60)
    assert srv.proc.returncode == 4
    lines = final_log(srv).strip().splitlines()
    assert len(lines) == 1 and "boom" in lines[0] and "Traceback" not in lines[0]


def test_usr1_reopens_the_access_log_of_every_worker(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    srv = ServerProcess("apps_workers.pidapp:app", "--workers", "2", "--access-log",
                        str(access))
    try:
        pids = workers_of(srv, 2)
        pids_seen(srv, 2, path="/sleep?0.2")
        wait_until(lambda: access.exists() and "GET /sleep?0.2 " in access.read_text(),
                   what="access lines")
        access.rename(tmp_path / "access.log.1")
        os.kill(srv.pid, signal.SIGUSR1)
        wait_until(lambda: all(f"[{p}] [INFO] log files reopened" in srv.log()
                               for p in [srv.pid, *pids]),
                   what="the supervisor and both workers to reopen their logs")
        rotated = (tmp_path / "access.log.1").read_text()
        assert pids_seen(srv, 2, path="/sleep?0.25") == set(pids)
        wait_until(lambda: access.exists() and
                   access.read_text().count("GET /sleep?0.25 ") >= 4,
                   what="new access lines in the new file")
        assert (tmp_path / "access.log.1").read_text() == rotated
        assert "GET /sleep?0.2 " not in access.read_text()
    finally:
        assert srv.stop() == 0


def _activated(fds: list[socket.socket], *args: str, names: str | None = None
               ) -> subprocess.Popen[bytes]:
    """Start velocior the way systemd does: sockets from fd 3 on, LISTEN_PID = its own pid."""
    launcher = (
        "import fcntl, os, sys\n"
        "fds = [int(x) for x in sys.argv[1].split(',')]\n"
        # Out of the way first (F_DUPFD never clobbers), so that no dup2 below overwrites one.
        "high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]\n"
        "for i, fd in enumerate(high):\n"
        "    os.dup2(fd, 3 + i)\n"
        "    os.close(fd)\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "os.environ['LISTEN_FDS'] = str(len(fds))\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'velocior'] + sys.argv[2:])\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    with open(os.path.join(tempfile.mkdtemp(), "server.log"), "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", launcher, ",".join(str(s.fileno()) for s in fds), *args],
            env=env, stdout=log, stderr=subprocess.STDOUT, pass_fds=[s.fileno() for s in fds],
            cwd=str(TESTS), start_new_session=True)


def _listening(family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


def _uwsgi_get(port: int, path: str) -> bytes:
    def var(k: bytes, v: bytes) -> bytes:
        return len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
    body = b"".join(var(k, v) for k, v in [
        (b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", path.encode()), (b"QUERY_STRING", b""),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"SERVER_NAME", b"x"), (b"SERVER_PORT", b"80"),
        (b"REMOTE_ADDR", b"127.0.0.1"), (b"HTTP_HOST", b"x")])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x00" + len(body).to_bytes(2, "little") + b"\x00" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_socket_activation_by_order_with_workers() -> None:
    http_sock, uwsgi_sock = _listening(), _listening()
    http_port, uwsgi_port = http_sock.getsockname()[1], uwsgi_sock.getsockname()[1]
    unused = free_port()
    proc = _activated([http_sock, uwsgi_sock], "--workers", "2",
                      "--http", f"127.0.0.1:{unused}", "--uwsgi", f"127.0.0.1:{unused}",
                      "apps_workers.pidapp:app")
    http_sock.close()
    uwsgi_sock.close()
    try:
        wait_for_tcp("127.0.0.1", http_port, proc=proc)
        r = get(http_port, "/env?LISTEN_FDS")
        assert r.status == 200 and r.body == b"None"  # consumed, as sd_listen_fds(1) does
        assert r.pid in children(proc.pid)
        assert _uwsgi_get(uwsgi_port, "/").startswith(b"HTTP/1.1 200")
        with pytest.raises(ConnectionRefusedError):  # the addresses given were not bound
            socket.create_connection(("127.0.0.1", unused), timeout=5).close()
    finally:
        assert stop_popen(proc) == 0


def test_socket_activation_by_name_single_process() -> None:
    uwsgi_sock, http_sock = _listening(), _listening()
    http_port, uwsgi_port = http_sock.getsockname()[1], uwsgi_sock.getsockname()[1]
    proc = _activated([uwsgi_sock, http_sock], "apps_workers.pidapp:app", names="uwsgi:http")
    http_sock.close()
    uwsgi_sock.close()
    try:
        wait_for_tcp("127.0.0.1", http_port, proc=proc)
        assert get(http_port).pid == proc.pid
        assert _uwsgi_get(uwsgi_port, "/").startswith(b"HTTP/1.1 200")
    finally:
        assert stop_popen(proc) == 0


def test_socket_activation_count_mismatch_is_an_error() -> None:
    a = _listening()
    proc = _activated([a], "--http", "127.0.0.1:1", "--http", "127.0.0.1:2",
                      "apps_workers.pidapp:app")
    a.close()
    assert proc.wait(60) == 1


def test_supervisor_killed_takes_its_workers_along() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--workers", "2")
    try:
        pids = workers_of(srv, 2)
        os.kill(srv.pid, signal.SIGKILL)
        srv.proc.wait(10)

        def gone() -> bool:
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                            return False
                except OSError:
                    pass
            return True
        wait_until(gone, timeout=40, what="the orphaned workers to exit")
    finally:
        srv.stop()
