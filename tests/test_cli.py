"""The command line: options, environment variables, the app loader, listeners (TCP, IPv6, unix
sockets), exit codes and messages, signals of a single-process server, logs, pid file."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from apps_workers.tools import get, wait_until
from support import ROOT, TESTS, ServerProcess, free_port, wait_for_tcp, wait_for_unix
from velocior import __version__, config
from velocior.listeners import parse_address


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "velocior", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd or str(TESTS), timeout=timeout)


def final_log(srv: ServerProcess) -> str:
    """The server's output once it has stopped (ServerProcess.log() needs the log file open)."""
    return Path(srv.log_path).read_text(errors="replace")


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The whole output must be one `velocior: error:` line: no traceback, no noise."""
    out = (proc.stdout + proc.stderr).strip()
    assert "Traceback" not in out, out
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("velocior: error: "), out
    return lines[0]


# --- version, help, reference -------------------------------------------------------------------


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"velocior {__version__}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf'^version = "{re.escape(__version__)}"$', pyproject, re.M), \
        "velocior.__version__ differs from pyproject.toml"


def test_console_script() -> None:
    script = shutil.which("velocior") or str(Path(sys.executable).parent / "velocior")
    assert os.path.exists(script), "the `velocior` console script is not installed"
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"velocior {__version__}"


def test_console_script_imports_the_app_from_the_current_directory(tmp_path: Path) -> None:
    """The script's own sys.path[0] is its bin/ directory; the app is found where the user is."""
    (tmp_path / "here_app.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '4')])\n"
        "    return [b'here']\n")
    script = shutil.which("velocior") or str(Path(sys.executable).parent / "velocior")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(tmp_path / "out.log", "wb") as log:
        proc = subprocess.Popen([script, "--http", f"127.0.0.1:{port}", "here_app:app"],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_tcp("127.0.0.1", port, proc=proc)
        assert get(port).body == b"here"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_help_and_docs_list_every_option() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    doc = (ROOT / "docs" / "cli.md").read_text()
    for name, spec, _default in config.settings():
        if spec.hidden:
            assert spec.flags[0] not in proc.stdout
            continue
        env = config.env_var(name)
        assert env in proc.stdout, f"{env} missing from --help"
        assert env in doc, f"{env} missing from docs/cli.md"
        for flag in spec.flags if not spec.positional else ():
            assert flag in proc.stdout, f"{flag} missing from --help"
            assert f"`{flag}" in doc, f"{flag} missing from docs/cli.md"
    # The generated tables in docs/cli.md are the registry's, word for word.
    assert config.reference_markdown() in doc


# --- option parsing (in-process: no server involved) ---------------------------------------------


def test_precedence_cli_over_env_over_web_concurrency() -> None:
    env = {"WEB_CONCURRENCY": "3", "VELOCIOR_KEEP_ALIVE": "7.5", "VELOCIOR_HTTP": "a:1,b:2"}
    cfg = config.from_cli(["m:app"], env, "x")
    assert (cfg.workers, cfg.keep_alive, cfg.http) == (3, 7.5, ["a:1", "b:2"])
    cfg = config.from_cli(["-w", "5", "--keep-alive", "2", "m:app"],
                          {**env, "VELOCIOR_WORKERS": "4"}, "x")
    assert (cfg.workers, cfg.keep_alive) == (5, 2.0)
    cfg = config.from_cli(["m:app"], {**env, "VELOCIOR_WORKERS": "4"}, "x")
    assert cfg.workers == 4
    assert cfg.server_options()["keepalive_timeout"] == 7.5


def test_options_map_to_server_options() -> None:
    cfg = config.from_cli(
        ["--threads", "4", "--timeout", "3", "--max-requests", "9", "-w", "2",
         "--uwsgi-allow-from", "10.0.0.0/8,192.168.1.7", "--server-header", "", "--access-log",
         "--max-headers", "50", "m:app"], {}, "x")
    opts = cfg.server_options()
    assert opts["threads"] == 4 and opts["worker_timeout"] == 3.0 and opts["max_requests"] == 9
    assert opts["multiprocess"] is True and opts["server_header"] is None
    assert opts["access_log"] is True and opts["max_headers"] == 50
    assert opts["uwsgi_allow_from"] == ["127.0.0.0/8", "::1", "10.0.0.0/8", "192.168.1.7/32"]
    assert "max_head_bytes" not in opts and "native_response" not in opts
    assert cfg.use_supervisor()
    single = config.from_cli(["m:app"], {}, "x")
    assert not single.use_supervisor() and single.server_options()["multiprocess"] is False
    assert config.from_cli(["--supervise", "m:app"], {}, "x").server_options()["multiprocess"]
    # `--access-log` right before the app: the word is the app, the access log goes to stdout.
    cfg = config.from_cli(["--access-log", "m:app"], {}, "x")
    assert (cfg.app, cfg.access_log) == ("m:app", "-")
    cfg = config.from_cli(["--access-log", "/tmp/a.log", "m:app"], {}, "x")
    assert (cfg.app, cfg.access_log) == ("m:app", "/tmp/a.log")


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8000", ("127.0.0.1", 8000, None)),
    ("[::1]:9000", ("::1", 9000, None)),
    (":8080", ("0.0.0.0", 8080, None)),
    ("8081", ("127.0.0.1", 8081, None)),
    ("localhost:80", ("localhost", 80, None)),
    ("unix:/run/app.sock", ("", 0, "/run/app.sock")),
    ("/run/app.sock", ("", 0, "/run/app.sock")),
])
def test_parse_address(text: str, expected: tuple[str, int, str | None]) -> None:
    a = parse_address(text, "uwsgi")
    assert (a.host, a.port, a.path) == expected


@pytest.mark.parametrize("args, needle", [
    (["--workers", "abc", "m:app"], "--workers"),
    (["--workers", "0", "m:app"], "minimum"),
    (["--socket-mode", "999", "m:app"], "--socket-mode"),
    (["--uwsgi-allow-from", "nonsense", "m:app"], "nonsense"),
    (["--http", "127.0.0.1", "m:app"], "127.0.0.1"),
    (["--http", "[::1:80", "m:app"], "IPv6"),
    (["--log-level", "loud", "m:app"], "loud"),
    (["--no-such-option", "m:app"], "--no-such-option"),
    (["--max-requests-jitter", "5", "m:app"], "--max-requests"),
    ([], "no application"),
])
def test_bad_options_exit_1_with_one_line(args: list[str], needle: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr
    assert needle in one_error_line(proc)


def test_bad_environment_variable_exit_1() -> None:
    proc = run_cli("apps_workers.pidapp:app", env={"VELOCIOR_WORKERS": "many"})
    assert proc.returncode == 1
    assert "VELOCIOR_WORKERS" in one_error_line(proc)


# --- the app loader ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec, needle", [
    ("no_such_module_xyz:app", "no_such_module_xyz"),
    ("apps_workers.pidapp:no_such_app", "no_such_app"),
    ("apps_workers.broken:app", "boom: this module fails at import"),
    ("apps_workers.pidapp:IMPORT_PID", "not callable"),
    ("apps_workers.pidapp:create", "create()"),
    ("apps_workers.pidapp:create(1, 2, 3)", "factory"),
    ("apps_workers.pidapp:create(open('x'))", "literal"),
    ("apps_workers.tools", "has no application or app"),
    ("not a module:app", "not a module name"),
])
def test_bad_app_exit_4_with_one_line(spec: str, needle: str) -> None:
    port = free_port()
    proc = run_cli("--http", f"127.0.0.1:{port}", spec)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert needle in one_error_line(proc)


def test_import_error_line_names_the_file() -> None:
    proc = run_cli("--http", f"127.0.0.1:{free_port()}", "apps_workers.broken:app")
    line = one_error_line(proc)
    assert "broken.py, line 3" in line and "RuntimeError" in line


def test_factory_call_and_module_alone() -> None:
    srv = ServerProcess("apps_workers.pidapp:create('bonjour')")
    try:
        assert get(srv.port).body == b"bonjour"
    finally:
        assert srv.stop() == 0
    srv = ServerProcess("apps_workers.pidapp")  # module alone: its `application`
    try:
        r = get(srv.port)
        assert r.status == 200 and r.pid == srv.pid
    finally:
        assert srv.stop() == 0


def test_app_from_environment_variable() -> None:
    srv = ServerProcess("--threads=1", env={"VELOCIOR_APP": "apps_workers.pidapp:create('env')"})
    try:
        assert get(srv.port).body == b"env"
    finally:
        srv.stop()


def test_chdir_and_pythonpath(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "chdir_app.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '9')])\n"
        "    return [b'from proj']\n")
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "lib_app.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '9')])\n"
        "    return [b'from libs']\n")
    elsewhere = tempfile.mkdtemp()
    srv = ServerProcess("chdir_app:app", "--chdir", str(tmp_path / "proj"), cwd=elsewhere)
    try:
        assert get(srv.port).body == b"from proj"
    finally:
        srv.stop()
    srv = ServerProcess("lib_app:app", "--pythonpath", f"{tmp_path}/nothing,{tmp_path}/libs",
                        cwd=elsewhere)
    try:
        assert get(srv.port).body == b"from libs"
    finally:
        srv.stop()
    proc = run_cli("--chdir", str(tmp_path / "missing"), "chdir_app:app")
    assert proc.returncode == 1 and "--chdir" in one_error_line(proc)


def test_demo_app() -> None:
    srv = ServerProcess("velocior.demo:app")
    try:
        home = get(srv.port, "/")
        assert home.status == 200 and b"Velocior" in home.body
        assert home.headers["content-type"].startswith("text/html")
        assert get(srv.port, "/hello").body == b"Hello, World!"
        assert get(srv.port, "/nowhere").status == 404
    finally:
        assert srv.stop() == 0


# --- listeners ---------------------------------------------------------------------------------


def test_address_in_use_exit_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("--http", f"127.0.0.1:{port}", "apps_workers.pidapp:app")
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert f"127.0.0.1:{port}" in line and "address already in use" in line


@pytest.mark.parametrize("address, needle", [
    ("256.1.1.1:80", "cannot resolve"),
    ("a..b:8000", "not a valid host name"),
    ("x" * 64 + ".example:8000", "not a valid host name"),
    ("unix:/nonexistent-dir-velocior/x.sock", "no such directory"),
    ("192.0.2.1:8000", "address not available"),  # TEST-NET-1: not an address of this machine
])
def test_bad_listen_address_exit_1(address: str, needle: str) -> None:
    proc = run_cli("--http", address, "apps_workers.pidapp:app")
    assert proc.returncode == 1
    assert needle in one_error_line(proc)


def test_bind_error_happens_with_supervisor_too() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = run_cli("--http", f"127.0.0.1:{busy.getsockname()[1]}", "-w", "2",
                       "apps_workers.pidapp:app")
    assert proc.returncode == 1 and "address already in use" in one_error_line(proc)


def test_ipv6_and_several_listeners() -> None:
    port6 = free_port("::1")
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "h.sock")
    srv = ServerProcess("apps_workers.pidapp:app", "--http", f"[::1]:{port6}",
                        "--http", f"unix:{path}")
    try:
        wait_for_tcp("::1", port6, proc=srv.proc)
        wait_for_unix(path, proc=srv.proc)
        assert get(srv.port).pid == srv.pid
        assert get(port6, host="::1").pid == srv.pid
        assert get(path).pid == srv.pid
    finally:
        assert srv.stop() == 0
    assert not os.path.exists(path)


def _idle_keep_alive(srv: ServerProcess) -> socket.socket:
    """A connection that had one request answered and is now idle. (A connection that never sent
    anything is not the server's yet: TCP listeners defer the accept until the first bytes.)"""
    sock = srv.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head + b"\r\n")
            assert m, head
            if len(body) >= int(m[1]):
                break
        chunk = sock.recv(65536)
        assert chunk, f"closed before the response: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return sock


def _read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    sock.settimeout(30)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _stale_socket(path: str) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # the file stays, nobody listens: what a crashed server leaves
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_unix_socket_mode_stale_file_and_removal() -> None:
    tmp = tempfile.mkdtemp()
    http_path = os.path.join(tmp, "http.sock")
    uwsgi_path = os.path.join(tmp, "uwsgi.sock")
    _stale_socket(http_path)
    srv = ServerProcess("apps_workers.pidapp:app", "--http", f"unix:{http_path}",
                        "--uwsgi", uwsgi_path, "--socket-mode", "600")
    try:
        wait_for_unix(http_path, proc=srv.proc)
        wait_for_unix(uwsgi_path, proc=srv.proc)
        assert stat.S_IMODE(os.lstat(http_path).st_mode) == 0o600
        assert stat.S_IMODE(os.lstat(uwsgi_path).st_mode) == 0o600
        assert get(http_path).pid == srv.pid
        # A socket somebody listens on is never taken over.
        proc = run_cli("--http", f"127.0.0.1:{free_port()}", "--http", f"unix:{http_path}",
                       "apps_workers.pidapp:app")
        assert proc.returncode == 1 and "already in use" in one_error_line(proc)
        assert get(http_path).pid == srv.pid
    finally:
        assert srv.stop() == 0
    assert not os.path.exists(http_path) and not os.path.exists(uwsgi_path)


def test_unix_socket_default_mode_660() -> None:
    path = os.path.join(tempfile.mkdtemp(), "d.sock")
    srv = ServerProcess("apps_workers.pidapp:app", "--uwsgi", f"unix:{path}")
    try:
        wait_for_unix(path, proc=srv.proc)
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
    finally:
        srv.stop()


def test_unix_path_that_is_not_a_socket_is_left_alone() -> None:
    path = os.path.join(tempfile.mkdtemp(), "precious.txt")
    Path(path).write_text("keep me")
    proc = run_cli("--http", f"unix:{path}", "apps_workers.pidapp:app")
    assert proc.returncode == 1
    assert "not a socket" in one_error_line(proc)
    assert Path(path).read_text() == "keep me"


# --- environment variables ---------------------------------------------------------------------


def test_environment_variables_and_cli_precedence() -> None:
    env = {"VELOCIOR_SERVER_HEADER": "from-env", "VELOCIOR_THREADS": "2"}
    srv = ServerProcess("apps_workers.pidapp:app", env=env)
    try:
        assert get(srv.port).headers.get("server") == "from-env"
    finally:
        srv.stop()
    srv = ServerProcess("apps_workers.pidapp:app", "--server-header", "from-cli", env=env)
    try:
        assert get(srv.port).headers.get("server") == "from-cli"
    finally:
        srv.stop()
    path = os.path.join(tempfile.mkdtemp(), "env.sock")
    srv = ServerProcess("apps_workers.pidapp:app", http=False,
                        env={"VELOCIOR_HTTP": f"unix:{path}"})
    try:
        wait_for_unix(path, proc=srv.proc)
        assert get(path).pid == srv.pid
    finally:
        srv.stop()


# --- signals of a single-process server --------------------------------------------------------


def test_sigint_stops_at_once() -> None:
    """Ctrl-C does not wait for in-flight requests (with a thread pool the loop is free to stop
    while the app still sleeps): exit 0, no traceback."""
    srv = ServerProcess("apps_workers.pidapp:app", "--threads", "2", "--graceful-timeout", "60")
    try:
        idle = _idle_keep_alive(srv)
        busy = srv.connect(timeout=60)
        busy.sendall(b"GET /sleep?40 HTTP/1.1\r\nHost: x\r\n\r\n")
        srv.wait_log("pidapp: sleeping 40")
        os.kill(srv.pid, signal.SIGINT)
        srv.proc.wait(20)  # a graceful stop would wait for the 40 s request
        assert srv.proc.returncode == 0
        assert b"slept" not in _read_to_eof(busy)
        assert idle.recv(65536) == b""
    finally:
        srv.stop()
    assert "Traceback" not in final_log(srv)


def test_second_sigint_interrupts_a_stuck_app() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--graceful-timeout", "60")
    try:
        busy = srv.connect(timeout=60)
        busy.sendall(b"GET /sleep?40 HTTP/1.1\r\nHost: x\r\n\r\n")
        srv.wait_log("pidapp: sleeping 40")
        os.kill(srv.pid, signal.SIGINT)
        srv.wait_log("SIGINT: stopping")
        os.kill(srv.pid, signal.SIGINT)
        srv.proc.wait(20)  # well before the app's 40 s
        assert srv.proc.returncode == 0
        assert b"slept" not in _read_to_eof(busy)
    finally:
        srv.stop()


def test_sigterm_finishes_in_flight_request_then_refuses() -> None:
    srv = ServerProcess("apps_workers.pidapp:app")
    try:
        idle = _idle_keep_alive(srv)
        busy = srv.connect(timeout=30)
        busy.sendall(b"GET /sleep?4 HTTP/1.1\r\nHost: x\r\n\r\n")
        srv.wait_log("pidapp: sleeping 4")
        os.kill(srv.pid, signal.SIGTERM)
        srv.wait_log("SIGTERM: graceful stop")

        def refused() -> bool:
            try:
                socket.create_connection((srv.host, srv.port), timeout=2).close()
            except ConnectionRefusedError:
                return True
            return False
        wait_until(refused, timeout=30, what="new connections to be refused")
        # ...while the slow request is still in the app.
        assert not select.select([busy], [], [], 0)[0], "refused only after the response"
        data = b""
        busy.settimeout(30)
        while b"slept 4" not in data:
            chunk = busy.recv(65536)
            assert chunk, f"connection closed before the response completed: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert idle.recv(65536) == b""  # idle keep-alive connections are closed
        srv.proc.wait(30)
        assert srv.proc.returncode == 0
    finally:
        srv.stop()
    assert "Traceback" not in final_log(srv)


def test_sighup_is_ignored_without_supervisor() -> None:
    srv = ServerProcess("apps_workers.pidapp:app")
    try:
        srv.wait_log("listening on")  # the server runs: its own handlers are in place
        os.kill(srv.pid, signal.SIGHUP)
        srv.wait_log("SIGHUP ignored")
        assert get(srv.port).pid == srv.pid
    finally:
        assert srv.stop() == 0


# --- logs, pid file ----------------------------------------------------------------------------


def test_access_log_file_reopened_on_usr1_and_error_log_file(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    errors = tmp_path / "error.log"
    srv = ServerProcess("apps_workers.pidapp:app", "--access-log", str(access),
                        "--error-log", str(errors))
    try:
        get(srv.port, "/first?x=1")
        wait_until(lambda: access.exists() and "GET /first?x=1 " in access.read_text(),
                   what="the first access line")
        line = access.read_text().splitlines()[0]
        # Combined log format: host ident user [time] "request" status size "referer" "agent"
        assert re.match(r'^\S+ \S+ \S+ \[[^\]]+\] "GET /first\?x=1 HTTP/1\.1" 200 \d+ ', line), line
        access.rename(tmp_path / "access.log.1")
        os.kill(srv.pid, signal.SIGUSR1)
        wait_until(lambda: access.exists(), what="the reopened access log")
        get(srv.port, "/second")
        wait_until(lambda: "GET /second " in access.read_text(), what="the second access line")
        assert "/second" not in (tmp_path / "access.log.1").read_text()
        assert "/first" not in access.read_text()
        assert "serving apps_workers.pidapp:app" in errors.read_text()
        assert "GET /first" not in srv.log()  # neither on stdout nor stderr
    finally:
        assert srv.stop() == 0


def test_access_log_bare_flag_goes_to_stdout() -> None:
    srv = ServerProcess("--access-log", "apps_workers.pidapp:app")
    try:
        get(srv.port, "/to-stdout")
        srv.wait_log('"GET /to-stdout HTTP/1.1" 200')
    finally:
        srv.stop()


def test_access_log_off_by_default() -> None:
    srv = ServerProcess("apps_workers.pidapp:app")
    try:
        get(srv.port, "/quiet")
    finally:
        srv.stop()
    assert "/quiet" not in final_log(srv)


def test_log_level_warning_hides_info() -> None:
    srv = ServerProcess("apps_workers.pidapp:app", "--log-level", "warning")
    try:
        get(srv.port)
    finally:
        srv.stop()
    assert "serving apps_workers.pidapp:app" not in final_log(srv)


def test_pid_file(tmp_path: Path) -> None:
    pidfile = tmp_path / "velocior.pid"
    srv = ServerProcess("apps_workers.pidapp:app", "--pid", str(pidfile))
    try:
        wait_until(pidfile.exists, what="the pid file")
        assert int(pidfile.read_text()) == srv.pid
    finally:
        assert srv.stop() == 0
    assert not pidfile.exists()

