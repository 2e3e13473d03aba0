"""Shared helpers for the black-box tests: start a real Velocior process, stop it by PID."""

from __future__ import annotations

import os
import signal as _signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
SHARED = ROOT.parent / "shared"


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stop_popen(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM a process we started, SIGKILL it if it is still there after `timeout`; its exit
    status."""
    if proc.poll() is None:
        os.kill(proc.pid, _signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, _signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def wait_for_tcp(host: str, port: int, timeout: float = 15.0,
                 proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_for_unix(path: str, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {path} after {timeout}s")


class ServerProcess:
    """`python -m velocior ARGS APP` in a subprocess, its stderr in a log file."""

    def __init__(self, app: str, *args: str, http: bool = True, env: dict[str, str] | None = None,
                 cwd: str | None = None, wait: bool = True) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="velocior-test-")
        self.log_path = os.path.join(self.tmp, "server.log")
        argv = [sys.executable, "-m", "velocior"]
        if http:
            argv += ["--http", f"{self.host}:{self.port}"]
        argv += list(args) + [app]
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self._log = open(self.log_path, "wb")
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
                                     cwd=cwd or str(TESTS), start_new_session=True)
        if wait and http:
            try:
                wait_for_tcp(self.host, self.port, proc=self.proc)
            except Exception:
                self.stop()
                raise RuntimeError(f"server did not start: {self.log()}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in server log:\n{self.log()}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, sig: int = _signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, _signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)


def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until the peer closes (bounded by `timeout` per recv)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)
