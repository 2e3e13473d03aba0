"""A real nginx for the tests, run from the templates in nginx/, and Velocior launchers for it.

`Nginx` renders nginx/standalone.conf and the site templates into a temporary prefix (conf, logs,
temp paths, pid all inside it), checks the result with `nginx -t`, runs nginx in the foreground
(`daemon off`) and stops it by its PID. nginx missing is an error, never a skip: `scripts/dev
install` installs it from Debian's packages.

`Backend` runs `python -m velocior` with uwsgi (and optionally HTTP) listeners, optionally inside a
network namespace (`ip netns exec`), and stops it by its PID.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
NGINX_DIR = ROOT / "nginx"
sys.path.insert(0, str(NGINX_DIR))
import render  # noqa: E402  (nginx/render.py: the one renderer, shared with deployments)

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/bin/nginx")

# Site templates by short name.
SITES = {
    "unix": NGINX_DIR / "velocior-uwsgi-unix.conf",
    "tcp": NGINX_DIR / "velocior-uwsgi-tcp.conf",
    "proxy": NGINX_DIR / "velocior-proxy.conf",
    "cluster": NGINX_DIR / "velocior-cluster.conf",
    "extras": NGINX_DIR / "test" / "extras.conf",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _check_alive(proc: subprocess.Popen[bytes] | None, what: str) -> None:
    if proc is not None and proc.poll() is not None:
        raise RuntimeError(f"{what} exited early with {proc.returncode}")


def wait_for_tcp(host: str, port: int, timeout: float = 15.0,
                 proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(proc, "server")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_for_unix(path: str, timeout: float = 15.0,
                  proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(proc, "server")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {path} after {timeout}s")


def nginx_binary() -> str:
    """The nginx executable; raises (the test fails) when it is missing."""
    for path in NGINX_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("nginx")
    if found:
        return found
    raise RuntimeError("nginx is not installed: run `scripts/dev install` "
                       "(it installs nginx from Debian's packages)")


def nginx_version() -> str:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=True)
    return out.stderr.strip()


def make_public_tmpdir(prefix: str) -> str:
    """A temporary directory nginx's unprivileged workers can traverse (mkdtemp makes 0700)."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a true value (returned), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Nginx:
    """nginx in the foreground from the rendered templates; a context manager."""

    def __init__(self, sites: Sequence[str | tuple[str, Mapping[str, object]]],
                 values: Mapping[str, object], *,
                 user: str = "www-data", workers: int = 1, wait_ports: Iterable[int] = (),
                 cpu: int | None = None) -> None:
        self.binary = nginx_binary()
        self.prefix = make_public_tmpdir("velocior-nginx-")
        self.conf_dir = os.path.join(self.prefix, "conf")
        os.makedirs(os.path.join(self.conf_dir, "sites"))
        os.makedirs(os.path.join(self.prefix, "logs"))
        os.makedirs(os.path.join(self.prefix, "temp"))
        self.values = dict(values)
        self.values.setdefault("USER", user)
        self.values.setdefault("WORKERS", workers)
        self.values.setdefault("ACCESS_LOG", "logs/access.log")
        self.conf = os.path.join(self.conf_dir, "nginx.conf")
        Path(self.conf).write_text(render.render(NGINX_DIR / "standalone.conf", self.values))
        shutil.copy(NGINX_DIR / "uwsgi_params", self.conf_dir)
        # A site is a template name, or (name, values that override the common ones for that
        # file alone: typically its own LISTEN port).
        for i, site in enumerate(sites):
            name, own = (site, {}) if isinstance(site, str) else site
            text = render.render(SITES[name], {**self.values, **own})
            Path(self.conf_dir, "sites", f"{i:02d}-{name}.conf").write_text(text)
        self.error_log_path = os.path.join(self.prefix, "logs", "error.log")
        self.argv = [self.binary, "-p", self.prefix + "/", "-c", self.conf, "-e",
                     self.error_log_path]
        check = subprocess.run(self.argv + ["-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr}\n--- config ---\n"
                               + self.dump_config())
        if cpu is not None:
            self.argv = ["taskset", "-c", str(cpu)] + self.argv
        self._out = open(os.path.join(self.prefix, "logs", "stderr.log"), "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            for port in wait_ports:
                wait_for_tcp("127.0.0.1", int(port), proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"nginx did not start:\n{self.error_log()}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def dump_config(self) -> str:
        parts = []
        for root, _dirs, files in os.walk(self.conf_dir):
            for name in sorted(files):
                path = os.path.join(root, name)
                parts.append(f"# {path}\n{Path(path).read_text()}")
        return "\n".join(parts)

    def error_log(self) -> str:
        try:
            return Path(self.error_log_path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log(self) -> str:
        try:
            return Path(self.prefix, "logs", "access.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """Stop nginx by its PID and delete the prefix (config, logs, temp files)."""
        if self.proc.poll() is None:
            # TERM is nginx's fast shutdown: the master tells its workers and waits for them.
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._out.close()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


SOCKET_ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_FDNAMES=sys.argv[2], LISTEN_PID=str(os.getpid()))
os.execvp(sys.argv[3], sys.argv[3:])
"""


class Backend:
    """`python -m velocior` with the given listeners, stopped by its PID.

    `uwsgi` / `http` are listener specs as the CLI takes them (HOST:PORT, unix:/path). `netns`
    runs it inside that network namespace; `ready` lists (host, port) or unix paths to wait for.
    """

    def __init__(self, app: str, *, uwsgi: Sequence[str] = (), http: Sequence[str] = (),
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 netns: str | None = None, ready: Sequence[tuple[str, int] | str] = (),
                 cpu: int | None = None, log_dir: str | None = None,
                 activate: tuple[socket.socket, str] | None = None) -> None:
        # A directory of our own is ours to delete at stop(); a caller's is the caller's.
        self._own_tmp = log_dir is None
        self.tmp = log_dir or make_public_tmpdir("velocior-backend-")
        self.log_path = os.path.join(self.tmp, f"velocior-{time.monotonic_ns()}.log")
        argv = [sys.executable, "-m", "velocior"]
        for spec in http:
            argv += ["--http", spec]
        for spec in uwsgi:
            argv += ["--uwsgi", spec]
        argv += list(args) + [app]
        pass_fds: tuple[int, ...] = ()
        if activate is not None:
            # As systemd does for a .socket unit: the listening socket as fd 3, LISTEN_FDS,
            # LISTEN_FDNAMES, and LISTEN_PID set to the PID that execs Velocior.
            sock, fd_name = activate
            pass_fds = (sock.fileno(),)
            argv = [sys.executable, "-c", SOCKET_ACTIVATE, str(sock.fileno()), fd_name] + argv
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        if netns is not None:
            # `ip netns exec` execs the command in place after joining the namespace: the PID
            # we get is Velocior's own.
            argv = ["ip", "netns", "exec", netns] + argv
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.argv = argv
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=str(TESTS), start_new_session=True,
                                     pass_fds=pass_fds)
        try:
            for target in ready:
                if isinstance(target, str):
                    wait_for_unix(target, proc=self.proc)
                else:
                    wait_for_tcp(target[0], target[1], proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"velocior did not start ({' '.join(argv)}):\n{self.log()}") \
                from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to the whole process group we started (the server and any workers it forked),
        as a host crash would: no graceful stop, no socket cleanup."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return int(self.proc.returncode)

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def give_socket_to_group(path: str, group: str = "www-data") -> None:
    """chgrp a unix socket file to nginx's group, as a systemd unit with Group= would."""
    os.chown(path, -1, grp.getgrnam(group).gr_gid)


def self_signed_cert(directory: str) -> tuple[str, str]:
    """A throwaway certificate and key for the TLS test server (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed (apt-get install openssl)")
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=secure.test", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    return cert, key


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def raw_request(host: str, port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Send `data`, read until the peer closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class BackendHosts:
    """`n` backend "hosts" for the scale-out test.

    Preferably network namespaces, each joined to this one by a veth pair with a /30 of its own
    in 10.199.0.0/16 (those addresses exist only on these veths, so the traffic never leaves the
    machine). Where namespaces cannot be made (no CAP_NET_ADMIN, no iproute2), loopback
    addresses 127.0.0.2.. instead; `mode` says which, `note` says why. `cleanup()` deletes every
    namespace and link made here; call it in a finally.
    """

    def __init__(self, n: int = 3) -> None:
        self.n = n
        self.tag = str(os.getpid())
        self.namespaces: list[str] = []
        self.links: list[str] = []
        # Per host: (address nginx connects to, address Velocior sees nginx coming from).
        self.hosts: list[tuple[str, str]] = []
        self.mode = "netns"
        self.note = ""
        try:
            self._remove_stale()
            self._make_namespaces()
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            self.cleanup()
            self.mode = "loopback"
            self.note = (f"network namespaces unavailable ({detail.strip()}): falling back to "
                         f"loopback addresses 127.0.0.2-{n + 1}")
            self.hosts = [(f"127.0.0.{i + 2}", "127.0.0.1") for i in range(n)]

    @staticmethod
    def _remove_stale() -> None:
        """Delete what an earlier run of this test left behind when it was killed before its
        finally ran: namespaces and links named after a test process that no longer exists."""
        def dead(pid: str) -> bool:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False

        for line in _ip("netns", "list").stdout.splitlines():
            name = line.split(" ")[0]
            m = re.fullmatch(r"velocior-t(\d+)-h\d+", name)
            if m and dead(m.group(1)):
                _ip("netns", "delete", name, check=False)
        for line in _ip("-o", "link", "show").stdout.splitlines():
            m = re.match(r"\d+: (vt(\d+)h\d+)[@:]", line)
            if m and dead(m.group(2)):
                _ip("link", "delete", m.group(1), check=False)

    def _free_subnet(self) -> int:
        used = _ip("-o", "-4", "addr", "show").stdout
        start = int(self.tag) % 250
        for k in range(250):
            third = (start + k) % 250
            if f" 10.199.{third}." not in used:
                return third
        raise OSError("no free 10.199.X.0/24 for the test hosts")

    def _make_namespaces(self) -> None:
        third = self._free_subnet()
        for i in range(self.n):
            ns = f"velocior-t{self.tag}-h{i + 1}"
            outer = f"vt{self.tag}h{i + 1}"[:15]
            inner = f"vi{self.tag}h{i + 1}"[:15]
            outer_ip = f"10.199.{third}.{4 * i + 1}"
            inner_ip = f"10.199.{third}.{4 * i + 2}"
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self.links.append(outer)
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"{outer_ip}/30", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("-n", ns, "addr", "add", f"{inner_ip}/30", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.hosts.append((inner_ip, outer_ip))

    def netns(self, i: int) -> str | None:
        return self.namespaces[i] if self.mode == "netns" else None

    def cleanup(self) -> None:
        for ns in self.namespaces:
            # Deleting the namespace destroys the veth end inside it, and with it the pair.
            _ip("netns", "delete", ns, check=False)
        for link in self.links:
            if _ip("link", "show", link, check=False).returncode == 0:
                _ip("link", "delete", link, check=False)
        self.namespaces = []
        self.links = []
