"""Velocior against the peer WSGI servers, side by side, on one core each.

    python3 bench/run.py --quick            # a few minutes: 1 round, short cells
    python3 bench/run.py --full             # about 30 minutes: 3 rounds, longer cells
    python3 bench/run.py --quick --servers velocior,fastwsgi --scenarios hello,pipelined

Method (bench/README.md explains each figure):
- every server runs one worker with its fastest single-core settings, pinned with `taskset` to
  SERVER_CPU; wrk is pinned to WRK_CPU (nginx, when in the path, to one or the other);
- servers are interleaved across rounds (A B C ... A B C ...); each figure is the median over the
  rounds, with min-max;
- before each cell the response is checked once (status, body, pipelining) so a broken server is
  reported, not measured; then a short warm-up, then the measured wrk run;
- server CPU per response = utime+stime of the server's whole process tree (threads included) over
  the measured run, divided by the responses wrk counted; peak RSS = VmHWM, reset before each cell;
- everything is bounded in time, talks only to 127.0.0.1 and unix sockets, and only the process
  groups this script started are ever signalled.

Runs with the system python3 (the one Velocior is installed into); Velocior is started with
`python3 -S` and PYTHONPATH naming its package's directory, as a virtualenv would run it; the peers
run from the bench/.venv-peers virtualenv that bench/peers.py creates.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import apps  # noqa: E402
import peers  # noqa: E402

WRK_CPU = 0
SERVER_CPU = 1
HOST = "127.0.0.1"
FLOOR_DIR = BENCH / "floor"
FLOOR_BIN = FLOOR_DIR / "target" / "release" / "velocior-bench-floor"
START_TIMEOUT = 30.0  # a server that is not answering by then is reported as failed to start
STOP_TIMEOUT = 5.0  # TERM, then KILL of the process group after this long
CHECK_TIMEOUT = 10.0
# Other processes' user CPU on the two benchmark CPUs (1.0 = a whole CPU) above which a cell is
# flagged as disturbed in the tables.
DISTURBED = 0.15

MODES = {
    # rounds, measured seconds per cell, warm-up seconds per cell (wrk takes whole seconds)
    "quick": (1, 2, 1),
    "full": (3, 4, 1),
}

# ---------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    path: str
    lua: str  # bench/wrk/<lua>.lua, with report.lua appended
    conns: int
    via: str = "direct"  # "direct" | "uwsgi" (nginx uwsgi_pass) | "proxy" (nginx proxy_pass)
    nginx_cpu: int | None = None  # nginx's CPU when via != "direct"
    expect: str = "hello"  # what the pre-check wants back: hello | big | echo | stream
    note: str = ""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("hello", "hello world, keep-alive, 64 connections", "/", "hello", 64),
    Scenario("pipelined", "hello world, pipelined 16 deep, 64 connections", "/", "pipeline", 64,
             note="wrk's latency is per batch of 16 under pipelining, not per request"),
    Scenario("close", "hello world, a new connection per request (Connection: close), 64 "
             "connections", "/", "close", 64),
    Scenario("64k", "64 KiB response, keep-alive, 64 connections", "/64k", "hello", 64,
             expect="big"),
    Scenario("post-1m", "1 MiB POST echoed back, keep-alive, 16 connections", "/echo", "post", 16,
             expect="echo"),
    Scenario("stream", f"generator of {apps.STREAM_CHUNKS} chunks of {apps.STREAM_CHUNK_SIZE} B, "
             "keep-alive, 64 connections", "/stream", "hello", 64, expect="stream"),
    Scenario("uwsgi-nginx", "behind nginx uwsgi_pass (unix socket), nginx on wrk's core",
             "/", "hello", 64, via="uwsgi", nginx_cpu=WRK_CPU),
    Scenario("uwsgi-nginx-shared", "behind nginx uwsgi_pass (unix socket), nginx on the "
             "server's core", "/", "hello", 64, via="uwsgi", nginx_cpu=SERVER_CPU),
    Scenario("proxy-nginx", "behind nginx proxy_pass with upstream keepalive, nginx on wrk's "
             "core", "/", "hello", 64, via="proxy", nginx_cpu=WRK_CPU),
    Scenario("proxy-nginx-shared", "behind nginx proxy_pass with upstream keepalive, nginx on "
             "the server's core", "/", "hello", 64, via="proxy", nginx_cpu=SERVER_CPU),
)
SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}
HELLO_ONLY = ("hello", "pipelined", "close", "uwsgi-nginx", "uwsgi-nginx-shared", "proxy-nginx",
              "proxy-nginx-shared")
APP_HTTP = ("hello", "pipelined", "close", "64k", "post-1m", "stream", "proxy-nginx",
            "proxy-nginx-shared")
UWSGI_PASS = ("uwsgi-nginx", "uwsgi-nginx-shared")

# ---------------------------------------------------------------------------------------------
# Servers


@dataclass
class Ctx:
    work: Path
    velocior_python: str
    velocior_error: str | None
    install: dict[str, dict[str, Any]]
    floor_error: str | None
    velocior_path: str = ""  # the directory that holds the velocior package under test
    retries: int = 0  # extra measured runs allowed for a cell disturbed by other processes
    max_other: float = 1.0  # "disturbed": other processes' CPU above this (1.0 = one CPU)


CmdHttp = Callable[[Ctx, int], list[str]]
CmdUwsgi = Callable[[Ctx, str], list[str]]


@dataclass(frozen=True)
class Server:
    name: str
    kind: str  # "velocior" | "peer" | "floor"
    scenarios: tuple[str, ...]
    http: CmdHttp | None = None
    uwsgi: CmdUwsgi | None = None
    dist: str | None = None  # the peer's package in the venv
    settings: str = ""  # shown in the table's legend


def _venv_bin(name: str) -> str:
    return str(peers.VENV / "bin" / name)


def _peer_py(server: str) -> CmdHttp:
    def cmd(ctx: Ctx, port: int) -> list[str]:
        return [_venv_bin("python"), str(BENCH / "serve_peer.py"), server, HOST, str(port)]
    return cmd


def _velocior_base(ctx: Ctx) -> list[str]:
    """`env PYTHONPATH=... python3 -S -m velocior`, as a deployed virtualenv would run it.

    -S: the base interpreter's site-packages .pth hooks (a sandbox's certificate set-up here)
    run at every start and cost megabytes that are not the server's; the peers' venv does not
    run them either. PYTHONPATH then names the directory that holds the velocior package under
    test, and bench/ for the app. `env` execs the interpreter (same process), so the recorded
    command is the exact one.
    """
    path = os.pathsep.join(p for p in (ctx.velocior_path, str(BENCH)) if p)
    return ["env", f"PYTHONPATH={path}", ctx.velocior_python, "-S", "-m", "velocior"]


def _velocior(native: bool) -> tuple[CmdHttp, CmdUwsgi]:
    extra = ["--native-response"] if native else []

    def http(ctx: Ctx, port: int) -> list[str]:
        return [*_velocior_base(ctx), "--http", f"{HOST}:{port}", *extra, "apps:app"]

    def uwsgi(ctx: Ctx, path: str) -> list[str]:
        return [*_velocior_base(ctx), "--uwsgi", path, *extra, "apps:app"]
    return http, uwsgi


_V_HTTP, _V_UWSGI = _velocior(False)
_VN_HTTP, _VN_UWSGI = _velocior(True)


def _gunicorn_base() -> list[str]:
    return [_venv_bin("gunicorn"), "--workers", "1", "--no-control-socket", "--chdir", str(BENCH)]


SERVERS: tuple[Server, ...] = (
    Server("velocior", "velocior", APP_HTTP + UWSGI_PASS, http=_V_HTTP, uwsgi=_V_UWSGI,
           settings="one process, app called on the loop thread (default --threads 1)"),
    Server("velocior-native", "floor", HELLO_ONLY, http=_VN_HTTP, uwsgi=_VN_UWSGI,
           settings="--native-response: parses each request, answers a fixed 200 without Python"),
    Server("rust-floor", "floor", HELLO_ONLY,
           http=lambda ctx, port: [str(FLOOR_BIN), "http", f"{HOST}:{port}"],
           uwsgi=lambda ctx, path: [str(FLOOR_BIN), "uwsgi", path],
           settings="bench/floor: smol/async-io, one thread, no parsing, no Python"),
    Server("nginx-return", "floor", ("hello", "pipelined", "close"),
           settings="nginx itself, one worker, `return 200`"),
    Server("gunicorn-sync", "peer", ("close",) + UWSGI_PASS, dist="gunicorn",
           http=lambda ctx, port: [*_gunicorn_base(), "-k", "sync", "-b", f"{HOST}:{port}",
                                   "apps:app"],
           uwsgi=lambda ctx, path: [*_gunicorn_base(), "-k", "sync", "--protocol", "uwsgi",
                                    "-b", f"unix:{path}", "apps:app"],
           settings="-k sync (no keep-alive); --protocol uwsgi behind nginx"),
    Server("gunicorn-gthread", "peer", APP_HTTP, dist="gunicorn",
           http=lambda ctx, port: [*_gunicorn_base(), "-k", "gthread", "--threads", "1",
                                   "--keep-alive", "75", "-b", f"{HOST}:{port}", "apps:app"],
           settings="-k gthread --threads 1 --keep-alive 75"),
    Server("uwsgi", "peer", APP_HTTP + UWSGI_PASS, dist="uwsgi",
           http=lambda ctx, port: [_venv_bin("uwsgi"), "--http-socket", f"{HOST}:{port}",
                                   "--wsgi-file", str(BENCH / "apps.py"), "--callable", "app",
                                   "--processes", "1", "--disable-logging", "--die-on-term",
                                   "--buffer-size", "32768"],
           uwsgi=lambda ctx, path: [_venv_bin("uwsgi"), "--socket", path, "--chmod-socket=666",
                                    "--wsgi-file", str(BENCH / "apps.py"), "--callable", "app",
                                    "--processes", "1", "--disable-logging", "--die-on-term",
                                    "--buffer-size", "32768"],
           settings="--processes 1, no master; --http-socket direct, --socket behind nginx"),
    Server("bjoern", "peer", APP_HTTP, dist="bjoern", http=_peer_py("bjoern"),
           settings="bjoern.run(app, host, port)"),
    Server("fastwsgi", "peer", APP_HTTP, dist="fastwsgi", http=_peer_py("fastwsgi"),
           settings="fastwsgi.run with server.tcp_nodelay = 1"),
    Server("granian", "peer", APP_HTTP, dist="granian",
           http=lambda ctx, port: [_venv_bin("granian"), "--interface", "wsgi", "--host", HOST,
                                   "--port", str(port), "--workers", "1", "--runtime-mode", "st",
                                   "--runtime-threads", "1", "--blocking-threads", "1",
                                   "--http", "1", "--no-access-log", "apps:app"],
           settings="--workers 1 --runtime-mode st --runtime-threads 1 --blocking-threads 1 "
                    "--http 1 (plus its supervisor process)"),
    Server("socketify", "peer", APP_HTTP, dist="socketify", http=_peer_py("socketify"),
           settings="socketify.WSGI(app).run(workers=1)"),
    Server("meinheld", "peer", APP_HTTP, dist="meinheld", http=_peer_py("meinheld"),
           settings="keep-alive on (75 s), access log off"),
    Server("waitress", "peer", APP_HTTP, dist="waitress",
           http=lambda ctx, port: [_venv_bin("waitress-serve"), "--host", HOST, "--port",
                                   str(port), "--threads=1", "apps:app"],
           settings="--threads=1 (plus its I/O thread)"),
    Server("velocem", "peer", APP_HTTP, dist="velocem", http=_peer_py("velocem"),
           settings="velocem.run(app, host, port)"),
)
SERVER_BY_NAME = {s.name: s for s in SERVERS}

# ---------------------------------------------------------------------------------------------
# Processes: started in their own session so the whole tree can be stopped by its group id.


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _proc_table() -> dict[int, int]:
    """pid -> ppid for every process (one pass over /proc)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2:].split()
        table[int(entry.name)] = int(rest[1])
    return table


def tree(pid: int) -> list[int]:
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for p, pp in table.items():
        children.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in table:
            out.append(p)
        todo.extend(children.get(p, ()))
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user+system, user) CPU seconds of the tree (all threads), reaped children included."""
    ticks = user = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2:].split()
        ticks += sum(int(x) for x in rest[11:15])
        user += int(rest[11]) + int(rest[13])
    return ticks / CLK_TCK, user / CLK_TCK


def cpus_user_seconds(cpus: tuple[int, ...] = (WRK_CPU, SERVER_CPU)) -> float:
    """User+nice time of the benchmark CPUs (/proc/stat): with ours subtracted, what other
    processes took from them. User time only, because loopback softirq work is ours but is
    charged to no process."""
    total = 0
    names = {f"cpu{c}" for c in cpus}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in names:
                total += int(parts[1]) + int(parts[2])
    return total / CLK_TCK


def reset_peak_rss(pid: int) -> bool:
    ok = True
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            ok = False
    return ok


def peak_rss_kib(pid: int) -> tuple[int, int]:
    """(largest VmHWM of one process in the tree, sum over the tree) in KiB."""
    peaks = []
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]))
                        break
        except OSError:
            continue
    return (max(peaks) if peaks else 0, sum(peaks))


def thread_count(pid: int) -> int:
    n = 0
    for p in tree(pid):
        try:
            n += len(os.listdir(f"/proc/{p}/task"))
        except OSError:
            pass
    return n


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    cmd: list[str]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def exit_text(self) -> str:
        rc = self.popen.poll()
        if rc is None:
            return "running"
        if rc < 0:
            try:
                return f"killed by {signal.Signals(-rc).name}"
            except ValueError:
                return f"killed by signal {-rc}"
        return f"exited with {rc}"

    def log_tail(self, lines: int = 4) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(ln.strip() for ln in text[-lines:])


def start(cmd: list[str], cpu: int, log: Path, env: dict[str, str] | None = None) -> Proc:
    full = ["taskset", "-c", str(cpu), *cmd]
    with open(log, "ab") as f:
        f.write(f"\n$ {shlex.join(full)}\n".encode())
        f.flush()
        popen = subprocess.Popen(full, cwd=BENCH, env=env, stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    return Proc(popen, log, full)


def stop(proc: Proc | None) -> None:
    """TERM the group this script created for the process, then KILL it if it lingers."""
    if proc is None:
        return
    pgid = proc.pid  # start_new_session=True: the group id is the leader's pid
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.popen.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; give its children (gunicorn, granian workers) a moment too.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
    try:
        proc.popen.wait(timeout=1)
    except subprocess.TimeoutExpired:
        pass


def wait_listening(proc: Proc, tcp_port: int | None = None, unix_path: str | None = None,
                   timeout: float = START_TIMEOUT) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            return f"{proc.exit_text()} at startup: {proc.log_tail()}"
        try:
            if tcp_port is not None:
                with socket.create_connection((HOST, tcp_port), timeout=1):
                    return None
            else:
                assert unix_path is not None
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(1)
                    s.connect(unix_path)
                    return None
        except OSError:
            time.sleep(0.05)
    return f"not listening after {timeout:.0f} s: {proc.log_tail()}"


# ---------------------------------------------------------------------------------------------
# nginx


def render_nginx(kind: str, directory: Path, port: int, upstream: str) -> Path:
    text = (BENCH / "nginx" / f"{kind}.conf").read_text()
    subst = {"@@DIR@@": str(directory), "@@PORT@@": str(port), "@@UPSTREAM@@": upstream,
             "@@USER@@": "user root root;" if os.geteuid() == 0 else ""}
    for k, v in subst.items():
        text = text.replace(k, v)
    if "@@" in text:
        raise ValueError(f"unrendered placeholder in nginx/{kind}.conf")
    out = directory / "nginx.conf"
    out.write_text(text)
    return out


def start_nginx(ctx: Ctx, kind: str, cpu: int, upstream: str = "") -> tuple[Proc, int]:
    directory = Path(tempfile.mkdtemp(prefix=f"nginx-{kind}-", dir=ctx.work))
    port = free_port()
    conf = render_nginx(kind, directory, port, upstream)
    proc = start(["nginx", "-p", str(directory), "-e", str(directory / "error.log"), "-c",
                  str(conf)], cpu, ctx.work / "nginx.log")
    err = wait_listening(proc, tcp_port=port, timeout=10)
    if err:
        stop(proc)
        errlog = (directory / "error.log")
        detail = errlog.read_text(errors="replace")[-300:] if errlog.exists() else ""
        raise RuntimeError(f"nginx did not start: {err} {detail}")
    return proc, port


# ---------------------------------------------------------------------------------------------
# The pre-check: one request (or a short pipelined burst) whose answer must be right.


def check_response(port: int, scen: Scenario, alive: Callable[[], bool]
                   ) -> tuple[str | None, list[str]]:
    """(error, warnings): error means the server cannot be measured in this scenario. Retried
    while the server may still be starting (granian's worker comes up after its listener)."""
    if scen.name == "pipelined":
        return check_pipelining(port), []
    warnings: list[str] = []
    body = b"p" * (1024 * 1024) if scen.expect == "echo" else None
    headers = {"Connection": "close"} if scen.name == "close" else {}
    if body is not None:
        headers["Content-Type"] = "application/octet-stream"
    deadline = time.monotonic() + CHECK_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(HOST, port, timeout=CHECK_TIMEOUT)
        try:
            conn.request("POST" if body is not None else "GET", scen.path, body=body,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if len(resp.msg.get_all("Content-Length") or []) > 1:
                warnings.append("sends two Content-Length headers")
            if resp.status != 200:
                return f"answered {resp.status} to the pre-check", warnings
            want: Any = {
                "hello": apps.HELLO,
                "big": len(apps.BIG),
                "echo": len(body or b""),
                "stream": apps.STREAM_CHUNKS * apps.STREAM_CHUNK_SIZE,
            }[scen.expect]
            got = data if scen.expect == "hello" else len(data)
            if got != want:
                shown = data[:40] if scen.expect == "hello" else f"{len(data)} bytes"
                return f"wrong body in the pre-check: {shown!r}", warnings
            if scen.expect == "echo" and data != body:
                return "echoed body differs from the one sent", warnings
            return None, warnings
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
            if not alive():
                break
            time.sleep(0.2)
        finally:
            conn.close()
    return f"pre-check failed: {last}", warnings


def check_pipelining(port: int, depth: int = 4) -> str | None:
    req = f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    deadline = time.monotonic() + 3.0
    got = b""
    try:
        with socket.create_connection((HOST, port), timeout=3) as s:
            s.sendall(req * depth)
            while got.count(apps.HELLO) < depth and time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                got += chunk
    except OSError as e:
        return f"pipelining pre-check failed: {e}"
    n = got.count(apps.HELLO)
    if n < depth:
        return f"answers {n} of {depth} pipelined requests (no pipelining support)"
    return None


# ---------------------------------------------------------------------------------------------
# wrk


def wrk_script(ctx: Ctx, scen: Scenario) -> Path:
    out = ctx.work / f"wrk-{scen.lua}.lua"
    if not out.exists():
        text = (BENCH / "wrk" / f"{scen.lua}.lua").read_text()
        text += "\n" + (BENCH / "wrk" / "report.lua").read_text()
        out.write_text(text)
    return out


def wrk_cmd(ctx: Ctx, scen: Scenario, port: int, seconds: int) -> list[str]:
    return ["taskset", "-c", str(WRK_CPU), "wrk", "-t1", f"-c{scen.conns}", f"-d{seconds}s",
            "--timeout", "5s", "--latency", "-s", str(wrk_script(ctx, scen)), f"http://{HOST}:{port}{scen.path}"]


def run_wrk(ctx: Ctx, scen: Scenario, port: int, seconds: int) -> dict[str, Any]:
    cmd = wrk_cmd(ctx, scen, port, seconds)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30,
                           cwd=ctx.work)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"wrk did not finish within {seconds + 30:.0f} s") from e
    for line in r.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return dict(json.loads(line[8:]))
    raise RuntimeError(f"wrk failed (rc {r.returncode}): {(r.stderr or r.stdout).strip()[-300:]}")


# ---------------------------------------------------------------------------------------------
# One target = one server process (HTTP or uwsgi listener) serving all its scenarios in a round.


@dataclass
class Cell:
    server: str
    scenario: str
    round: int
    ok: bool
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    rps: float = 0.0
    requests: int = 0
    seconds: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    cpu_us: float = 0.0  # server CPU per response
    cpu_util: float = 0.0  # server CPU seconds per wall second
    nginx_cpu_us: float = 0.0
    attempts: int = 0  # measured runs made (more than 1: earlier ones were disturbed)
    wrk_util: float = 0.0  # wrk's CPU seconds per wall second (1.0: wrk-bound)
    other_util: float = 0.0  # other processes' user CPU on the two benchmark CPUs, per second
    rss_kib: int = 0  # the largest process of the server's tree
    rss_tree_kib: int = 0
    threads: int = 0
    errors: int = 0  # connect + read + write + timeout
    read_errors: int = 0
    non2xx: int = 0
    server_cmd: str = ""
    nginx_cmd: str = ""
    wrk_cmd: str = ""


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(BENCH) + (os.pathsep + env["PYTHONPATH"]
                                      if env.get("PYTHONPATH") else "")
    env.pop("PYTHONHOME", None)
    return env


def unavailable(ctx: Ctx, server: Server) -> str | None:
    if server.kind == "velocior" or server.name == "velocior-native":
        return f"not importable: {ctx.velocior_error}" if ctx.velocior_error else None
    if server.name == "rust-floor":
        return ctx.floor_error
    if server.dist is not None:
        st = ctx.install.get(server.dist, {})
        if not st.get("ok"):
            return f"install failed: {st.get('error') or 'not installed'}"
    return None


def measure(ctx: Ctx, server_proc: Proc, scen: Scenario, port: int, warmup: int,
            seconds: int, nginx: Proc | None, cell: Cell) -> None:
    err, warnings = check_response(port, scen, server_proc.alive)
    cell.warnings.extend(warnings)
    if err:
        cell.error = err
        return
    if warmup > 0:
        run_wrk(ctx, scen, port, warmup)
    if not server_proc.alive():
        cell.error = f"crashed in the warm-up ({server_proc.exit_text()})"
        return
    best: Cell | None = None
    for attempt in range(ctx.retries + 1):
        trial = dataclasses.replace(cell, warnings=list(cell.warnings), attempts=attempt + 1)
        measured_run(ctx, server_proc, scen, port, seconds, nginx, trial)
        if trial.error:
            best = trial
            break
        if best is None or trial.other_util < best.other_util:
            best = dataclasses.replace(trial, attempts=attempt + 1)
        else:
            best.attempts = attempt + 1
        if trial.other_util <= ctx.max_other:
            break
    assert best is not None
    cell.__dict__.update(best.__dict__)


def measured_run(ctx: Ctx, server_proc: Proc, scen: Scenario, port: int, seconds: int,
                 nginx: Proc | None, cell: Cell) -> None:
    reset_peak_rss(server_proc.pid)
    cell.wrk_cmd = shlex.join(wrk_cmd(ctx, scen, port, seconds))
    cpu0, user0 = tree_cpu_seconds(server_proc.pid)
    ng0, nguser0 = tree_cpu_seconds(nginx.pid) if nginx else (0.0, 0.0)
    wrk0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    all0 = cpus_user_seconds()
    t0 = time.monotonic()
    w = run_wrk(ctx, scen, port, seconds)
    wall = time.monotonic() - t0
    all1 = cpus_user_seconds()
    wrk1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not server_proc.alive():
        cell.error = f"crashed under load ({server_proc.exit_text()}): {server_proc.log_tail(2)}"
        return
    cpu1, user1 = tree_cpu_seconds(server_proc.pid)
    ng1, nguser1 = tree_cpu_seconds(nginx.pid) if nginx else (0.0, 0.0)
    cpu, ngcpu = cpu1 - cpu0, ng1 - ng0
    wrk_user = wrk1.ru_utime - wrk0.ru_utime
    wrk_cpu = wrk_user + wrk1.ru_stime - wrk0.ru_stime
    ours_user = (user1 - user0) + (nguser1 - nguser0) + wrk_user
    cell.wrk_util = wrk_cpu / wall if wall else 0.0
    cell.other_util = max(0.0, (all1 - all0) - ours_user) / wall if wall else 0.0
    cell.rss_kib, cell.rss_tree_kib = peak_rss_kib(server_proc.pid)
    cell.threads = thread_count(server_proc.pid)
    n = int(w["requests"])
    cell.requests = n
    cell.seconds = w["duration_us"] / 1e6
    cell.rps = n / cell.seconds if cell.seconds else 0.0
    cell.p50_us, cell.p99_us = float(w["p50_us"]), float(w["p99_us"])
    cell.errors = int(w["connect"] + w["read"] + w["write"] + w["timeout"])
    cell.read_errors = int(w["read"])
    cell.non2xx = int(w["status"])
    cell.cpu_us = cpu / n * 1e6 if n else 0.0
    cell.cpu_util = cpu / wall if wall else 0.0
    cell.nginx_cpu_us = ngcpu / n * 1e6 if (n and nginx) else 0.0
    if n == 0:
        cell.error = "no response completed under load"
        return
    cell.ok = True


def run_target(ctx: Ctx, server: Server, mode: str, scens: list[Scenario], rnd: int,
               warmup: int, seconds: int, progress: Callable[[Cell], None]) -> list[Cell]:
    """Start the server once, run its scenarios (restarting it after a crash), stop it."""
    cells: list[Cell] = []
    why = unavailable(ctx, server)
    if why:
        for scen in scens:
            cells.append(Cell(server.name, scen.name, rnd, False, error=why))
            progress(cells[-1])
        return cells
    env = server_env()
    log = ctx.work / f"{server.name}-{mode}.log"
    proc: Proc | None = None
    port = 0
    sock = ""
    start_error: str | None = None

    def boot() -> str | None:
        nonlocal proc, port, sock
        stop(proc)
        if server.name == "nginx-return":
            try:
                proc, port = start_nginx(ctx, "return", SERVER_CPU)
            except (RuntimeError, OSError, ValueError) as e:
                return str(e)
            return None
        if mode == "http":
            assert server.http is not None
            port = free_port()
            proc = start(server.http(ctx, port), SERVER_CPU, log, env)
            return wait_listening(proc, tcp_port=port)
        assert server.uwsgi is not None
        sock = str(ctx.work / f"{server.name}.sock")
        if os.path.exists(sock):
            os.unlink(sock)
        proc = start(server.uwsgi(ctx, sock), SERVER_CPU, log, env)
        return wait_listening(proc, unix_path=sock)

    try:
        for scen in scens:
            cell = Cell(server.name, scen.name, rnd, False)
            if proc is None or not proc.alive():
                start_error = boot()
            if start_error or proc is None:
                cell.error = f"did not start: {start_error}"
                stop(proc)
                proc = None
                cells.append(cell)
                progress(cell)
                continue
            cell.server_cmd = shlex.join(proc.cmd)
            nginx: Proc | None = None
            try:
                target_port = port
                if scen.via == "uwsgi":
                    assert scen.nginx_cpu is not None
                    nginx, target_port = start_nginx(ctx, "uwsgi", scen.nginx_cpu,
                                                     f"unix:{sock}")
                elif scen.via == "proxy":
                    assert scen.nginx_cpu is not None
                    nginx, target_port = start_nginx(ctx, "proxy", scen.nginx_cpu,
                                                     f"{HOST}:{port}")
                if nginx is not None:
                    cell.nginx_cmd = shlex.join(nginx.cmd)
                measure(ctx, proc, scen, target_port, warmup, seconds, nginx, cell)
            except Exception as e:  # noqa: BLE001 - one broken cell must not end the run
                cell.error = f"{type(e).__name__}: {e}" if not isinstance(e, RuntimeError) \
                    else str(e)
            finally:
                stop(nginx)
            if not proc.alive() and not cell.error:
                cell.ok = False
                cell.error = f"died after the run ({proc.exit_text()})"
            cells.append(cell)
            progress(cell)
    finally:
        stop(proc)
    return cells


# ---------------------------------------------------------------------------------------------
# Setup


def build_floor() -> str | None:
    cargo = shutil.which("cargo")
    if cargo is None:
        return "cargo not found: the Rust floor cannot be built"
    env = dict(os.environ, CARGO_TARGET_DIR=str(FLOOR_DIR / "target"))
    try:
        r = subprocess.run(["nice", "-n", "19", cargo, "build", "--release", "--quiet", "-j1",
                            "--manifest-path", str(FLOOR_DIR / "Cargo.toml")],
                           capture_output=True, text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired:
        return "cargo build of bench/floor timed out"
    if r.returncode != 0 or not FLOOR_BIN.exists():
        return f"cargo build of bench/floor failed: {r.stderr.strip()[-300:]}"
    return None


def velocior_status(python: str) -> tuple[str | None, str, str]:
    """(error or None, version text, the directory that holds the velocior package).

    Found the usual way (site, .pth files: an editable install is one), then checked the way
    the bench runs it: `python3 -S` with that directory on PYTHONPATH.
    """
    code = ("import os, velocior._velocior, importlib.metadata as m\n"
            "print(os.path.dirname(os.path.dirname(os.path.abspath(velocior.__file__))))\n"
            "try: print(m.version('velocior'))\n"
            "except Exception: print('unknown')\n")

    def failed(r: subprocess.CompletedProcess[str]) -> str:
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit {r.returncode}"
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60,
                           cwd=BENCH)
        if r.returncode != 0:
            return failed(r), "", ""
        path, version = (r.stdout.strip().splitlines() + ["", ""])[:2]
        env = dict(os.environ, PYTHONPATH=path)
        r = subprocess.run([python, "-S", "-c", "import velocior._velocior"], capture_output=True,
                           text=True, timeout=60, cwd=BENCH, env=env)
    except subprocess.TimeoutExpired:
        return "import timed out", "", ""
    if r.returncode != 0:
        return f"with python3 -S and PYTHONPATH={path}: {failed(r)}", version, path
    return None, version, path


def _cmd_out(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    git = _cmd_out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src",
                            "protocol", "python", "Cargo.toml"],
                           capture_output=True, text=True, timeout=30).stdout.strip()
    return {
        "cpu": cpu,
        "cpus": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": _cmd_out(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": _cmd_out(["wrk", "-v"]).split(" Copyright")[0].replace("wrk ", "", 1),
        "velocior_commit": git + (" (working tree modified)" if dirty else ""),
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ---------------------------------------------------------------------------------------------
# Aggregation and output


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def aggregate(cells: list[Cell], rounds: int) -> dict[str, dict[str, dict[str, Any]]]:
    by: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        by.setdefault((c.server, c.scenario), []).append(c)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (srv, scn), cs in by.items():
        ok = [c for c in cs if c.ok]
        failed = [c for c in cs if not c.ok]
        agg: dict[str, Any] = {"rounds": len(cs), "ok_rounds": len(ok)}
        if ok:
            for key in ("rps", "cpu_us", "p50_us", "p99_us", "cpu_util", "nginx_cpu_us",
                        "wrk_util", "other_util"):
                vals = [float(getattr(c, key)) for c in ok]
                agg[key] = _med(vals)
                agg[key + "_min"] = min(vals)
                agg[key + "_max"] = max(vals)
            agg["rss_kib"] = max(c.rss_kib for c in ok)
            agg["rss_tree_kib"] = max(c.rss_tree_kib for c in ok)
            agg["threads"] = max(c.threads for c in ok)
            agg["errors"] = sum(c.errors for c in ok)
            agg["read_errors"] = sum(c.read_errors for c in ok)
            agg["requests"] = sum(c.requests for c in ok)
            agg["non2xx"] = sum(c.non2xx for c in ok)
        errs = []
        for c in failed:
            if c.error not in errs:
                errs.append(c.error)
        agg["error"] = "; ".join(errs)
        warns: list[str] = []
        for c in cs:
            for w in c.warnings:
                if w not in warns:
                    warns.append(w)
        agg["warnings"] = warns
        cmds = [c.server_cmd for c in cs if c.server_cmd]
        agg["server_cmd"] = cmds[0] if cmds else ""
        for key in ("wrk_cmd", "nginx_cmd"):
            found = [getattr(c, key) for c in cs if getattr(c, key)]
            agg[key] = found[0] if found else ""
        out.setdefault(scn, {})[srv] = agg
    return out


def _k(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def _us(x: float) -> str:
    """CPU microseconds: always in us, 3 significant digits or so."""
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _lat(x: float) -> str:
    if x >= 1e4:
        return f"{x / 1e3:.0f} ms"
    if x >= 1e3:
        return f"{x / 1e3:.1f} ms"
    return f"{x:.0f} us"


def _range(a: dict[str, Any], key: str, fmt: Callable[[float], str], rounds: int) -> str:
    if rounds <= 1 or a[key + "_min"] == a[key + "_max"]:
        return fmt(a[key])
    return f"{fmt(a[key])} ({fmt(a[key + '_min'])}-{fmt(a[key + '_max'])})"


def notes_for(a: dict[str, Any]) -> str:
    parts = []
    n = a.get("requests", 0) if a.get("ok_rounds") else 0
    if n and a.get("read_errors", 0) >= 0.5 * n:
        parts.append("read errors ~ responses: it closes after each response without saying "
                     "so (wrk reconnects; not failures)")
    if n and a.get("other_util", 0) > DISTURBED:
        parts.append(f"disturbed: other processes used {a['other_util'] * 100:.0f}% of a CPU")
    if n and a.get("non2xx", 0) > 0.01 * n:
        parts.append(f"{100 * a['non2xx'] / n:.0f}% of responses were not 2xx/3xx")
    parts.extend(a.get("warnings", []))
    if a.get("error"):
        lead = "" if not a.get("ok_rounds") else f"{a['rounds'] - a['ok_rounds']} round(s) failed: "
        parts.append(lead + a["error"])
    return "; ".join(parts).replace("|", "/")


def markdown(meta: dict[str, Any], results: dict[str, dict[str, dict[str, Any]]],
             servers: list[Server], scens: list[Scenario]) -> str:
    rounds = int(meta["rounds"])
    lines = [
        f"# Benchmark results: {meta['mode']} mode, {meta['date']}",
        "",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cpus']} CPUs, "
        f"{meta['machine']['memory']}, Linux {meta['machine']['kernel']}, Python "
        f"{meta['machine']['python']}, {meta['machine']['nginx']}, wrk {meta['machine']['wrk']}. "
        f"Load average at start {meta['load_start']}, at end {meta['load_end']}"
        + (" (the machine was busy: treat the figures as noisy)." if meta.get("busy") else "."),
        "",
        f"Velocior at commit {meta['machine']['velocior_commit']}"
        + (f", version {meta['velocior_version']}" if meta.get("velocior_version") else "")
        + (f" (not importable: {meta['velocior_error']})" if meta.get("velocior_error") else "")
        + ".",
        "",
        f"Method: {rounds} round(s), servers interleaved; each cell {meta['seconds']} s measured "
        f"after {meta['warmup']} s of warm-up; server pinned to CPU {SERVER_CPU}, wrk (1 thread) "
        f"to CPU {WRK_CPU}. Figures are medians"
        + (" (min-max over the rounds)" if rounds > 1 else "")
        + ". CPU/resp = user+system CPU of the server's whole process tree per response; "
        "vs floor = that over rust-floor's in the same scenario; CPU% srv/wrk/other = CPU "
        "seconds per wall second of the server, of wrk (100: wrk-bound), and user time other "
        "processes took on the two benchmark CPUs (above a few %: a disturbed cell); "
        "RSS = peak (VmHWM) of the largest process; errors = wrk connect+read+write"
        "+timeout errors; non-2xx = wrk's non-2xx/3xx count.",
        "",
        f"Command: `{meta['command']}` (total {meta['elapsed_min']:.1f} min).",
        "",
    ]
    for scen in scens:
        res = results.get(scen.name, {})
        if not res:
            continue
        lines += [f"## {scen.name}: {scen.title}", ""]
        if scen.note:
            lines += [f"Note: {scen.note}.", ""]
        floor = res.get("rust-floor", {})
        floor_cpu = floor.get("cpu_us") if floor.get("ok_rounds") else None
        nginx_col = scen.via != "direct"
        head = "| server | req/s | p50 | p99 | CPU us/resp | vs floor | CPU% srv/wrk/other |"
        sep = "|---|---:|---:|---:|---:|---:|---:|"
        if nginx_col:
            head += " nginx CPU us/resp |"
            sep += "---:|"
        head += " RSS MiB | errors | non-2xx | notes |"
        sep += "---:|---:|---:|---|"
        lines += [head, sep]
        for srv in servers:
            a = res.get(srv.name)
            if a is None:
                continue
            if not a.get("ok_rounds"):
                empty = "| - " * (6 + (1 if nginx_col else 0))
                lines.append(f"| {srv.name} {empty}| - | - | - | {notes_for(a)} |")
                continue
            ratio = f"{a['cpu_us'] / floor_cpu:.2f}x" if floor_cpu else "-"
            if scen.name == "pipelined":
                p50 = p99 = "n/a"
            else:
                p50, p99 = _lat(a["p50_us"]), _lat(a["p99_us"])
            row = (f"| {srv.name} | {_range(a, 'rps', _k, rounds)} | {p50} | {p99} | "
                   f"{_range(a, 'cpu_us', _us, rounds)} | {ratio} | "
                   f"{a['cpu_util'] * 100:.0f}/{a['wrk_util'] * 100:.0f}/"
                   f"{a['other_util'] * 100:.0f} |")
            if nginx_col:
                row += f" {_us(a['nginx_cpu_us'])} |"
            row += (f" {a['rss_kib'] / 1024:.1f} | {a['errors']} | {a['non2xx']} | "
                    f"{notes_for(a)} |")
            lines.append(row)
        lines.append("")
    lines += ["## Servers and versions", "", "| server | version | settings |", "|---|---|---|"]
    for srv in servers:
        ver = meta["versions"].get(srv.name, "")
        lines.append(f"| {srv.name} | {ver} | {srv.settings} |")
    lines += ["", "## Exact commands", "",
              "$PORT and $WORK (the run's directory under bench/work/) are picked per run; "
              "`taskset` pins each process; servers run in bench/ with PYTHONPATH=bench "
              "(Velocior's command sets its own, shown). nginx "
              "configs: bench/nginx/*.conf rendered into "
              "$WORK; wrk scripts: bench/wrk/<name>.lua with bench/wrk/report.lua appended.", ""]

    def generic(cmd: str) -> str:
        cmd = cmd.replace(str(meta["work"]), "$WORK").replace(str(BENCH), "bench")
        cmd = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:$PORT", cmd)
        cmd = re.sub(r"127\.0\.0\.1 \d+", "127.0.0.1 $PORT", cmd)
        return re.sub(r"\$WORK/nginx-(\w+)-\w+", r"$WORK/nginx-\1", cmd)

    for title, key, by_server in (("Servers", "server_cmd", True), ("nginx", "nginx_cmd", False),
                                  ("wrk, per scenario", "wrk_cmd", False)):
        seen: set[str] = set()
        block = []
        for scen in scens:
            for srv in servers:
                cmd = results.get(scen.name, {}).get(srv.name, {}).get(key, "")
                g = generic(cmd) if cmd else ""
                if g and g not in seen:
                    seen.add(g)
                    label = srv.name if by_server else scen.name
                    block.append(f"- {label}: `{g}`")
        if block:
            lines += [f"{title}:", "", *block, ""]
    return "\n".join(lines)


def summary_table(results: dict[str, dict[str, dict[str, Any]]], servers: list[Server],
                  scens: list[Scenario]) -> str:
    """Compact: one row per server, one column per scenario, `req/s / CPU us per response`."""
    lines = ["| server | " + " | ".join(s.name for s in scens) + " |",
             "|---|" + "---:|" * len(scens)]
    for srv in servers:
        cells = []
        for scen in scens:
            a = results.get(scen.name, {}).get(srv.name)
            if a is None:
                cells.append("")
            elif not a.get("ok_rounds"):
                cells.append("failed")
            else:
                mark = "*" if a.get("other_util", 0) > DISTURBED else ""
                cells.append(f"{_k(a['rps'])} / {_us(a['cpu_us'])}{mark}")
        lines.append(f"| {srv.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_readme(md_name: str, png_name: str | None, summary: str, meta: dict[str, Any]
                  ) -> None:
    readme = BENCH / "README.md"
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    text = readme.read_text()
    if begin not in text or end not in text:
        return
    block = [begin, "",
             f"Latest run: {meta['mode']} mode, {meta['date']}, `{meta['command']}`; load average "
             f"{meta['load_start']} at start"
             + (" (busy machine: noisy)" if meta.get("busy") else "")
             + f". Full table: [results/{md_name}](results/{md_name}).", ""]
    if png_name:
        block += [f"![benchmark chart](results/{png_name})", ""]
    block += ["Each cell: req/s / server CPU microseconds per response (medians); * = other "
              f"processes took more than {DISTURBED * 100:.0f}% of a CPU during the cell "
              "(noisy).", "", summary, "", end]
    pre, rest = text.split(begin, 1)
    post = rest.split(end, 1)[1]
    readme.write_text(pre + "\n".join(block) + post)


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="1 round, 2 s cells (the default)")
    g.add_argument("--full", action="store_true", help="3 rounds, 4 s cells (~30 min)")
    ap.add_argument("--servers", help="comma-separated subset of: "
                    + ",".join(s.name for s in SERVERS))
    ap.add_argument("--scenarios", help="comma-separated subset of: "
                    + ",".join(s.name for s in SCENARIOS))
    ap.add_argument("--rounds", type=int, help="override the mode's number of rounds")
    ap.add_argument("--seconds", type=int, help="override the measured seconds per cell")
    ap.add_argument("--warmup", type=int, help="override the warm-up seconds per cell")
    ap.add_argument("--out", help="directory for the results (default: bench/results for a "
                    "complete run, bench/work/results for a filtered one)")
    ap.add_argument("--retry-disturbed", type=float, metavar="PCT",
                    help="repeat a measured run (up to twice) while other processes took more "
                    "than PCT%% of a CPU on the benchmark CPUs, keeping the least disturbed one; "
                    "for shared machines (it can make the run up to 3x longer)")
    ap.add_argument("--no-install", action="store_true",
                    help="do not install missing peers (report them as not installed)")
    ap.add_argument("--list", action="store_true", help="list servers and scenarios, then exit")
    return ap.parse_args(argv)


def _select(spec: str | None, known: dict[str, Any], what: str) -> list[str]:
    if not spec:
        return list(known)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad:
        sys.exit(f"unknown {what}: {', '.join(bad)} (known: {', '.join(known)})")
    return [n for n in known if n in names]


KEEP_RUNS = 10  # bench/work/run-* directories kept (logs of the latest runs)


@contextmanager
def work_dir() -> Iterator[Path]:
    base = BENCH / "work"
    base.mkdir(exist_ok=True)
    old = sorted(base.glob("run-*"), key=lambda p: p.stat().st_mtime)
    for stale in old[:max(0, len(old) - (KEEP_RUNS - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    yield path  # kept afterwards: the server and nginx logs are what explains a failure


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for s in SERVERS:
            print(f"server   {s.name:18} {', '.join(s.scenarios)}")
        for sc in SCENARIOS:
            print(f"scenario {sc.name:18} {sc.title}")
        return 0
    mode = "full" if args.full else "quick"
    rounds, seconds, warmup = MODES[mode]
    rounds = args.rounds or rounds
    seconds = args.seconds or seconds
    warmup = args.warmup if args.warmup is not None else warmup
    server_names = _select(args.servers, SERVER_BY_NAME, "servers")
    scen_names = _select(args.scenarios, SCENARIO_BY_NAME, "scenarios")
    filtered = bool(args.servers or args.scenarios or args.rounds or args.seconds)
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} not found: install it (scripts/dev install installs nginx and wrk)")
    if "/usr/sbin" not in os.environ.get("PATH", ""):
        os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin"
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs at least 2 CPUs: the server and wrk are pinned to different ones")

    t_start = time.monotonic()
    load_start = loadavg()
    servers = [SERVER_BY_NAME[n] for n in server_names]
    scens = [SCENARIO_BY_NAME[n] for n in scen_names]
    needed = {s.dist for s in servers if s.dist} | {"matplotlib"}
    print(f"[bench] {mode} mode: {rounds} round(s), {seconds} s cells, {warmup} s warm-up; "
          f"load average {load_start}", flush=True)
    to_install = tuple(p for p in peers.PEERS + peers.TOOLS if p.name in needed)
    if args.no_install:
        install = peers.load_status()
    else:
        install = peers.install(to_install)
    floor_error = build_floor() if "rust-floor" in server_names else None
    velocior_python = sys.executable
    if Path(sys.executable).resolve().is_relative_to(peers.VENV.resolve()):
        velocior_python = shutil.which("python3") or sys.executable
    velocior_error, velocior_version, velocior_path = velocior_status(velocior_python)
    if velocior_error:
        print(f"[bench] velocior is not importable ({velocior_error}): reported as failed",
              flush=True)
    with work_dir() as work:
        ctx = Ctx(work, velocior_python, velocior_error, install, floor_error, velocior_path)
        if args.retry_disturbed is not None:
            ctx.retries, ctx.max_other = 2, args.retry_disturbed / 100
        plan: list[tuple[Server, str, list[Scenario]]] = []
        for srv in servers:
            http_s = [s for s in scens if s.name in srv.scenarios and s.via != "uwsgi"]
            uwsgi_s = [s for s in scens if s.name in srv.scenarios and s.via == "uwsgi"]
            if http_s:
                plan.append((srv, "http", http_s))
            if uwsgi_s:
                plan.append((srv, "uwsgi", uwsgi_s))
        n_cells = sum(len(p[2]) for p in plan) * rounds
        est = n_cells * (seconds + warmup + 0.6) + len(plan) * rounds * 1.5
        print(f"[bench] {n_cells} cells, about {est / 60:.1f} min; logs in {work}", flush=True)
        cells: list[Cell] = []
        done = [0]

        def progress(c: Cell) -> None:
            done[0] += 1
            if c.ok:
                text = (f"{c.rps:10.0f} req/s {c.cpu_us:7.2f} us/resp p99 {c.p99_us:8.0f} us "
                        f"rss {c.rss_kib / 1024:5.1f} MiB err {c.errors} non2xx {c.non2xx} "
                        f"cpu% {c.cpu_util * 100:.0f}/{c.wrk_util * 100:.0f}/"
                        f"{c.other_util * 100:.0f}")
            else:
                text = f"FAILED: {c.error[:160]}"
            print(f"[{done[0]:3}/{n_cells}] r{c.round} {c.server:17} {c.scenario:19} {text}",
                  flush=True)

        try:
            for rnd in range(1, rounds + 1):
                for srv, mode_, sc in plan:
                    cells.extend(run_target(ctx, srv, mode_, sc, rnd, warmup, seconds, progress))
        except KeyboardInterrupt:
            print("[bench] interrupted: writing what was measured", flush=True)

        results = aggregate(cells, rounds)
        versions = {}
        for srv in servers:
            if srv.dist:
                st = install.get(srv.dist, {})
                versions[srv.name] = str(st.get("version") or "not installed")
            elif srv.name.startswith("velocior"):
                versions[srv.name] = velocior_version or "not importable"
            elif srv.name == "nginx-return":
                versions[srv.name] = machine_info()["nginx"]
            else:
                versions[srv.name] = "bench/floor"
        load_end = loadavg()
        others = [c.other_util for c in cells if c.ok]
        busy = bool(others) and statistics.median(others) > DISTURBED
        meta: dict[str, Any] = {
            "mode": mode + (" (filtered)" if filtered else ""),
            "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": machine_info(),
            "load_start": load_start,
            "load_end": load_end,
            "busy": busy,
            "rounds": rounds,
            "seconds": seconds,
            "warmup": warmup,
            "command": "python3 bench/run.py " + shlex.join(argv if argv is not None
                                                             else sys.argv[1:]),
            "elapsed_min": (time.monotonic() - t_start) / 60,
            "versions": versions,
            "velocior_version": velocior_version,
            "velocior_error": velocior_error,
            "work": str(work),
        }
        out_dir = Path(args.out) if args.out else (BENCH / "work" / "results" if filtered
                                                   else BENCH / "results")
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = mode
        md = markdown(meta, results, servers, scens)
        (out_dir / f"{stem}.md").write_text(md)
        data = {"meta": meta, "results": results, "cells": [c.__dict__ for c in cells],
                "servers": [s.name for s in servers], "scenarios": [s.name for s in scens],
                "titles": {s.name: s.title for s in scens}}
        (out_dir / f"{stem}.json").write_text(json.dumps(data, indent=1))
        png: str | None = f"{stem}.png"
        try:
            r = subprocess.run([str(peers.venv_python()), str(BENCH / "chart.py"),
                                str(out_dir / f"{stem}.json"), str(out_dir / f"{stem}.png")],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                print(f"[bench] chart failed: {r.stderr.strip()[-300:]}", flush=True)
                png = None
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"[bench] chart failed: {e}", flush=True)
            png = None
        if not filtered and out_dir == BENCH / "results":
            update_readme(f"{stem}.md", png, summary_table(results, servers, scens), meta)
        print(summary_table(results, servers, scens))
        print(f"[bench] wrote {out_dir / (stem + '.md')} in {meta['elapsed_min']:.1f} min",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
