"""`velocior.serve()` from a Python program: in the calling process, with workers, with a string
app, logging left to the program, errors raised as exceptions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import velocior
from apps_workers.tools import children, get, wait_until
from support import TESTS, free_port, wait_for_tcp, wait_for_unix
from velocior.errors import ConfigError


class Script:
    """A Python program calling velocior.serve(), run in a subprocess."""

    def __init__(self, body: str) -> None:
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="velocior-serve-")
        self.path = Path(self.tmp) / "prog.py"
        self.path.write_text(textwrap.dedent(body).replace("PORT", str(self.port))
                             .replace("TMP", self.tmp))
        self.log_path = Path(self.tmp) / "out.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, str(self.path)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.tmp,
                                         start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def finish(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise


HELLO = """
    import os
    import velocior

    def app(environ, start_response):
        body = b"served by serve()"
        start_response("200 OK", [("Content-Length", str(len(body))),
                                  ("X-Worker-Pid", str(os.getpid()))])
        return [body]
"""


def test_serve_in_the_calling_process_returns_after_term() -> None:
    s = Script(HELLO + """
    result = velocior.serve(app, http="127.0.0.1:PORT")
    print("serve returned", result, flush=True)
    """)
    try:
        wait_for_tcp("127.0.0.1", s.port, proc=s.proc)
        r = get(s.port)
        assert r.body == b"served by serve()" and r.pid == s.proc.pid
        assert children(s.proc.pid) == []
    finally:
        assert s.finish() == 0
    assert "serve returned None" in s.log()
    assert "Traceback" not in s.log()


def test_serve_ctrl_c_returns_cleanly() -> None:
    s = Script(HELLO + """
    velocior.serve(app, http="127.0.0.1:PORT")
    print("after serve", flush=True)
    """)
    try:
        wait_for_tcp("127.0.0.1", s.port, proc=s.proc)
        get(s.port)
    finally:
        assert s.finish(signal.SIGINT) == 0
    assert "after serve" in s.log() and "Traceback" not in s.log()


def test_serve_with_workers_supervises_from_the_calling_process() -> None:
    s = Script(HELLO + """
    velocior.serve(app, http=["127.0.0.1:PORT"], workers=2)
    print("supervisor done", flush=True)
    """)
    try:
        wait_for_tcp("127.0.0.1", s.port, proc=s.proc)
        pids = wait_until(lambda: len(children(s.proc.pid)) == 2 and children(s.proc.pid),
                          what="two workers")
        assert get(s.port).pid in pids
    finally:
        assert s.finish() == 0
    assert "supervisor done" in s.log()


def test_serve_string_app_unix_socket_and_options() -> None:
    s = Script("""
    import velocior
    velocior.serve("apps_workers.pidapp:create('from a string')", http="unix:TMP/s.sock",
                   uwsgi=[], threads=2, keep_alive=2.5, server_header="api-test",
                   socket_mode=0o600)
    """)
    sock = os.path.join(s.tmp, "s.sock")
    try:
        wait_for_unix(sock, proc=s.proc)
        assert os.stat(sock).st_mode & 0o777 == 0o600
        r = get(sock)
        assert r.body == b"from a string" and r.headers.get("server") == "api-test"
    finally:
        assert s.finish() == 0
    assert not os.path.exists(sock)


def test_serve_leaves_a_configured_logging_alone() -> None:
    s = Script(HELLO + """
    import logging, sys
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="MINE %(name)s %(message)s")
    velocior.serve(app, http="127.0.0.1:PORT", access_log=True)
    """)
    try:
        wait_for_tcp("127.0.0.1", s.port, proc=s.proc)
        get(s.port, "/logged")
        wait_until(lambda: "MINE velocior.access " in s.log(), what="the access line")
    finally:
        assert s.finish() == 0
    log = s.log()
    assert "MINE velocior.error " in log  # the program's format, not velocior's
    assert '"GET /logged HTTP/1.1" 200' in log


def test_serve_errors_are_exceptions() -> None:
    s = Script("""
    import socket, velocior
    from velocior.errors import AppImportError, BindError, ConfigError
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        velocior.serve(lambda e, s: [], http=f"127.0.0.1:{busy.getsockname()[1]}")
    except BindError as e:
        print("BindError:", e, flush=True)
    try:
        velocior.serve("no_such_module_abc:app", http="127.0.0.1:PORT")
    except AppImportError as e:
        print("AppImportError:", e, flush=True)
    try:
        velocior.serve(lambda e, s: [], workers="two")
    except ConfigError as e:
        print("ConfigError:", e, flush=True)
    """)
    assert s.proc.wait(60) == 0, s.log()
    log = s.log()
    assert "BindError: cannot listen on" in log and "address already in use" in log
    assert "AppImportError: cannot import module 'no_such_module_abc'" in log
    assert "ConfigError: workers='two'" in log


def test_serve_rejects_bad_keywords_before_doing_anything() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_option'"):
        velocior.serve(lambda e, s: [], no_such_option=1)
    with pytest.raises(ConfigError, match="threads"):
        velocior.serve(lambda e, s: [], threads=0)
    with pytest.raises(TypeError, match="app"):
        velocior.serve(42, http="127.0.0.1:1")  # type: ignore[arg-type]


def test_serve_has_docstrings_and_version() -> None:
    assert velocior.serve.__doc__ and "workers" in velocior.serve.__doc__
    assert isinstance(velocior.__version__, str) and velocior.__version__[0].isdigit()
