#!/usr/bin/env python3
"""uwsgi_pass versus proxy_pass (HTTP/1.1, keepalive pool) in front of Velocior.

Renders this directory's templates, runs nginx (one worker) and Velocior (one process) with a
hello-world app, and drives each path with wrk in interleaved rounds. Reports req/s and latency
from wrk, and the CPU time nginx and Velocior spent per response (from /proc/PID/stat), which is
the figure that says where the time goes. Bounded: rounds x paths x duration seconds of load.

    python3 nginx/measure.py [--rounds 3] [--duration 5] [--connections 64]

Placement on a 2-core machine: nginx and wrk on CPU 0, Velocior alone on CPU 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from nginx_support import (  # noqa: E402
    Backend,
    Nginx,
    free_ports,
    give_socket_to_group,
    make_public_tmpdir,
    nginx_version,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds, all threads, a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def group_times(pids: list[int]) -> tuple[float, float]:
    times = [cpu_times(p) for p in pids]
    return sum(t[0] for t in times), sum(t[1] for t in times)


def nginx_worker_pids(master: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True,
                         text=True, check=True).stdout
    return [int(p) for p in out.split()]


def wrk(url: str, connections: int, duration: int, cpu: int) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
         "--latency", url],
        capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        scale = {"us": 1.0, "ms": 1000.0, "s": 1e6}[m.group(2)]
        return float(m.group(1)) * scale

    return {"rps": rps, "requests": total, "p50_us": pct("50"), "p99_us": pct("99"),
            "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
            "socket_errors": 0.0 if errors is None else 1.0}


def strace_counts(path: str) -> dict[str, int]:
    """Calls per syscall from an `strace -c` summary file."""
    counts: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    return counts


def syscalls_per_request(url: str, pids: dict[str, list[int]], tmp: str,
                         duration: int) -> dict[str, dict[str, float]]:
    """Syscalls per request of each process group, counted by strace while wrk runs. Slow under
    strace, but a count, not a time: the same on a busy machine as on an idle one."""
    tracers = []
    for name, group in pids.items():
        for pid in group:
            out = os.path.join(tmp, f"strace-{name}-{pid}.txt")
            proc = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", out, "-p", str(pid)],
                                    stderr=subprocess.DEVNULL)
            tracers.append((name, out, proc))
    time.sleep(1.0)  # strace attaches asynchronously
    res = wrk(url, 8, duration, 0)
    for _name, _out, proc in tracers:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    per: dict[str, dict[str, float]] = {}
    for name, out, _proc in tracers:
        bucket = per.setdefault(name, {})
        for call, n in strace_counts(out).items():
            bucket[call] = bucket.get(call, 0.0) + n / res["requests"]
    return per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--syscalls", action="store_true",
                    help="also count syscalls per request with strace (slow, but exact)")
    args = ap.parse_args()

    tmp = make_public_tmpdir("velocior-measure-")
    sock = os.path.join(tmp, "velocior.sock")
    http_sock = os.path.join(tmp, "velocior-http.sock")
    http_port, uwsgi_port, l_unix, l_tcp, l_proxy, l_proxy_unix = free_ports(6)
    backend = Backend("nginx_apps:app", http=[f"127.0.0.1:{http_port}", f"unix:{http_sock}"],
                      uwsgi=[f"unix:{sock}", f"127.0.0.1:{uwsgi_port}"], cpu=1, log_dir=tmp,
                      ready=[("127.0.0.1", http_port), ("127.0.0.1", uwsgi_port), sock,
                             http_sock])
    servers: list[Nginx] = []
    try:
        give_socket_to_group(sock)
        give_socket_to_group(http_sock)
        common = {"SERVER_NAME": "bench.test", "SOCKET": sock, "PROTECTED_DIR": tmp,
                  # Per-request work on every path alike: off, not to blur the difference.
                  "ACCESS_LOG": "off"}
        servers.append(Nginx([("unix", {"LISTEN": f"127.0.0.1:{l_unix}"}),
                              ("tcp", {"LISTEN": f"127.0.0.1:{l_tcp}"}),
                              ("proxy", {"LISTEN": f"127.0.0.1:{l_proxy}"})],
                             {**common, "HTTP_ADDR": f"127.0.0.1:{http_port}",
                              "UWSGI_ADDR": f"127.0.0.1:{uwsgi_port}"},
                             wait_ports=[l_unix, l_tcp, l_proxy], cpu=0))
        # The same proxy template, its upstream on Velocior's HTTP unix socket: a second nginx,
        # as the template's upstream name may appear once per nginx.
        servers.append(Nginx([("proxy", {"LISTEN": f"127.0.0.1:{l_proxy_unix}"})],
                             {**common, "HTTP_ADDR": f"unix:{http_sock}"},
                             wait_ports=[l_proxy_unix], cpu=0))
        paths = {
            "uwsgi_pass, unix socket": (l_unix, nginx_worker_pids(servers[0].pid)),
            "uwsgi_pass, TCP": (l_tcp, nginx_worker_pids(servers[0].pid)),
            "proxy_pass keepalive, TCP": (l_proxy, nginx_worker_pids(servers[0].pid)),
            "proxy_pass keepalive, unix socket": (l_proxy_unix,
                                                  nginx_worker_pids(servers[1].pid)),
        }
        for port, _workers in paths.values():  # warm-up: imports, caches, connection pools
            wrk(f"http://127.0.0.1:{port}/hello", args.connections, 1, 0)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, (port, workers) in paths.items():
                n0 = group_times(workers)
                v0 = cpu_times(backend.pid)
                res = wrk(f"http://127.0.0.1:{port}/hello", args.connections, args.duration, 0)
                n1 = group_times(workers)
                v1 = cpu_times(backend.pid)
                per_req = 1e6 / res["requests"]
                res["nginx_us"] = (n1[0] + n1[1] - n0[0] - n0[1]) * per_req
                res["nginx_sys_us"] = (n1[1] - n0[1]) * per_req
                res["velocior_us"] = (v1[0] + v1[1] - v0[0] - v0[1]) * per_req
                res["velocior_sys_us"] = (v1[1] - v0[1]) * per_req
                samples[name].append(res)
                time.sleep(0.5)
        print(f"{nginx_version()}; wrk -t1 -c{args.connections} -d{args.duration}s, "
              f"{args.rounds} interleaved rounds, medians (min-max)")
        print("nginx (1 worker) and wrk on CPU 0, Velocior (1 process) on CPU 1\n")
        print("| path | req/s | p50 | p99 | nginx CPU/req | of which kernel | "
              "Velocior CPU/req | of which kernel | errors |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, runs in samples.items():
            def col(key: str, fmt: str, runs: list[dict[str, float]] = runs) -> str:
                vals = [r[key] for r in runs]
                return (f"{fmt.format(statistics.median(vals))} "
                        f"({fmt.format(min(vals))}-{fmt.format(max(vals))})")
            errs = int(sum(r["non2xx"] + r["socket_errors"] for r in runs))
            print(f"| {name} | {col('rps', '{:.0f}')} | {col('p50_us', '{:.0f} us')} | "
                  f"{col('p99_us', '{:.0f} us')} | {col('nginx_us', '{:.1f} us')} | "
                  f"{col('nginx_sys_us', '{:.1f} us')} | {col('velocior_us', '{:.1f} us')} | "
                  f"{col('velocior_sys_us', '{:.1f} us')} | {errs} |")
        if args.syscalls and shutil.which("strace"):
            print("\nsyscalls per request (strace -c, wrk -c8):\n")
            for name, (port, workers) in paths.items():
                per = syscalls_per_request(f"http://127.0.0.1:{port}/hello",
                                           {"nginx": workers, "velocior": [backend.pid]},
                                           tmp, 3)
                for proc_name, calls in per.items():
                    top = sorted(calls.items(), key=lambda kv: -kv[1])
                    listed = ", ".join(f"{c} {n:.2f}" for c, n in top if n >= 0.05)
                    print(f"- {name}, {proc_name}: {sum(calls.values()):.1f} "
                          f"({listed})")
    finally:
        for server in servers:
            server.stop()
        backend.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
