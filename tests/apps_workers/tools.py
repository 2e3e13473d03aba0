"""Client-side helpers for test_cli.py, test_workers.py and test_serve_api.py: plain http.client
requests (one connection each), a bounded background load, /proc child listing, polling."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def pid(self) -> int:
        return int(self.headers["x-worker-pid"])


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def get(port: int | str, path: str = "/", host: str = "127.0.0.1", timeout: float = 10.0,
        headers: dict[str, str] | None = None) -> Reply:
    """GET on a new connection (`Connection: close`); `port` may be a unix socket path."""
    conn: http.client.HTTPConnection
    if isinstance(port, str):
        conn = _UnixConnection(port, timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        body = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05,
               what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def children(pid: int) -> list[int]:
    """Live (non-zombie) child processes of `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


@dataclass
class Outcome:
    at: float
    ok: bool
    pid: int = 0
    body: bytes = b""
    error: str = ""


@dataclass
class Load:
    """`threads` clients sending GETs back to back (a new connection each) until stopped, at most
    `max_requests` in all and `max_seconds` long."""

    port: int
    path: str = "/"
    threads: int = 4
    max_requests: int = 4000
    max_seconds: float = 60.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self.outcomes) >= self.max_requests:
                    return
            try:
                r = get(self.port, self.path, timeout=20)
                o = Outcome(time.monotonic(), r.status == 200, int(r.headers.get(
                    "x-worker-pid", "0")), r.body, "" if r.status == 200 else str(r.status))
            except Exception as e:  # noqa: BLE001 - every failure is counted, whatever it is
                o = Outcome(time.monotonic(), False, error=repr(e))
            with self._lock:
                self.outcomes.append(o)

    def start(self) -> Load:
        for t in self._workers:
            t.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for t in self._workers:
            t.join(30)
        return self.outcomes

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def since(self, t: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.at >= t]

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if not o.ok]
