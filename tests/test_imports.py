"""What a serving process imports: the standard modules Velocior avoids so that each worker
holds less memory (dataclasses, inspect, ast, dis, typing, random, shutil), checked in a real
server started with `python -S` (no site hooks adding modules of their own), and the loader's
argument check that replaces inspect for plain functions, checked against inspect."""

from __future__ import annotations

import functools
import http.client
import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import velocior
from support import free_port, stop_popen, wait_for_tcp
from velocior import loader

PACKAGE_DIR = str(Path(velocior.__file__).resolve().parent.parent)

# Each of these costs a worker from about 0.1 to 1 MiB of RSS (inspect brings ast and dis; shutil,
# which argparse's help formatter imports for the terminal's width, brings zlib, bz2 and lzma).
AVOIDED = ("dataclasses", "inspect", "ast", "dis", "typing", "random", "shutil", "bz2", "lzma")

# The app reports the modules of the very process that serves it, once it serves.
MODULES_APP = '''
import sys


def app(environ, start_response):
    body = " ".join(sorted(sys.modules)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def _env(*path: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def _served_modules(tmp_path: Path, *args: str) -> set[str]:
    (tmp_path / "modules_app.py").write_text(MODULES_APP)
    port = free_port()
    log = tmp_path / "server.log"
    argv = [sys.executable, "-S", "-m", "velocior", "--http", f"127.0.0.1:{port}", *args,
            "modules_app:app"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                env=_env(PACKAGE_DIR, str(tmp_path)), start_new_session=True)
    try:
        wait_for_tcp("127.0.0.1", port, proc=proc)
        # Under the supervisor the connection waits in the listen queue until a worker is ready.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 200, log.read_text()
    finally:
        stop_popen(proc, timeout=20)
    assert proc.returncode == 0, log.read_text()
    return set(body.decode().split())


def test_single_process_serves_without_the_avoided_modules(tmp_path: Path) -> None:
    modules = _served_modules(tmp_path)
    # The list is the serving process's own: the CLI and the extension are in it.
    assert {"velocior.cli", "velocior._velocior", "modules_app", "argparse",
            "logging"} <= modules
    assert sorted(m for m in AVOIDED if m in modules) == []
    # Only a supervisor needs its module; --max-requests-jitter alone needs random.
    assert "velocior.supervisor" not in modules


def test_worker_under_the_supervisor_serves_without_the_avoided_modules(tmp_path: Path) -> None:
    modules = _served_modules(tmp_path, "--workers", "2")
    assert {"velocior.supervisor", "velocior._velocior", "modules_app"} <= modules
    assert sorted(m for m in AVOIDED if m in modules) == []


def test_import_velocior_for_serve_avoids_them_too() -> None:
    code = ("import sys, velocior\n"
            "assert callable(velocior.serve)\n"
            "print(' '.join(sorted(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       env=_env(PACKAGE_DIR), timeout=60)
    assert r.returncode == 0, r.stderr
    modules = set(r.stdout.split())
    assert "velocior.api" in modules
    assert sorted(m for m in AVOIDED if m in modules) == []


# --- the loader's check without inspect ----------------------------------------------------------


def _wrapping(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def inner(*args: Any, **kwargs: Any) -> Any:
        return f(*args, **kwargs)
    return inner


def _with_defaults(defaults: tuple[Any, ...]) -> Callable[..., Any]:
    def f(a: Any) -> None:
        pass
    f.__defaults__ = defaults
    return f


def _with_signature() -> Callable[..., Any]:
    def f(environ: Any, start_response: Any) -> None:
        pass
    f.__signature__ = inspect.Signature()  # type: ignore[attr-defined]
    return f


def _factory() -> None:
    pass


def _wsgi(environ: Any, start_response: Any) -> None:
    pass


CASES: list[tuple[str, Callable[..., Any]]] = [
    ("wsgi", _wsgi),
    ("factory", _factory),
    ("lambda factory", lambda: None),
    ("lambda wsgi", lambda e, s: None),
    ("one default", lambda x=1: None),
    ("one required", lambda x: None),
    ("three required", lambda a, b, c: None),
    ("third defaulted", lambda a, b, c=1: None),
    ("all defaulted", lambda a=1, b=2, c=3: None),
    ("*args", lambda *args: None),
    ("**kwargs", lambda **kw: None),
    ("one and *args", lambda a, *args: None),
    ("required kw-only", lambda a, b, *, k: None),
    ("defaulted kw-only", lambda a, b, *, k=1: None),
    ("only defaulted kw-only", lambda *, k=1: None),
    ("only required kw-only", lambda *, k: None),
    ("positional-only", lambda a, /, b: None),
    ("positional-only defaulted", lambda a=1, /, b=2: None),
    ("everything", lambda a, b=1, *args, k=2, **kw: None),
    ("wrapped factory", _wrapping(_factory)),
    ("wrapped wsgi", _wrapping(_wsgi)),
    ("__signature__", _with_signature()),
    ("more defaults than parameters", _with_defaults((1, 2))),
    ("a class", type("C", (), {})),
    ("a partial", functools.partial(_wsgi, 1)),
    ("a builtin", len),
]


@pytest.mark.parametrize("name, obj", CASES, ids=[c[0] for c in CASES])
def test_takes_no_arguments_agrees_with_inspect(name: str, obj: Callable[..., Any]) -> None:
    # The oracle: the loader's own inspect.signature() path (what it decided for every function
    # before the code-object fast path).
    expected = inspect.isfunction(obj) and loader._takes_no_arguments_by_signature(obj)
    assert loader._takes_no_arguments(obj) is expected
