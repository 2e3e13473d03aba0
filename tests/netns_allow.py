"""Run inside a fresh network namespace (`unshare -n`): the uwsgi allow-list seen from peers that
are not loopback. Loopback peers are always allowed, so the refused peer needs an address of its
own; the namespace gives it one on its private `lo` without touching the host's network.

Prints one JSON object with what each peer got; test_uwsgi.py judges it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import uwsgi_client as uw
from helpers import Closed, read_log, stop, wait_log_since
from support import ServerProcess, free_port, wait_for_tcp

REFUSED, ALLOWED = "10.200.0.1", "10.200.0.2"


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for addr in (REFUSED, ALLOWED):
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
    uport = free_port()
    srv = ServerProcess("apps.echo:app", "--uwsgi", f"0.0.0.0:{uport}",
                        "--uwsgi-allow-from", f"{ALLOWED}/32")
    out: dict[str, object] = {}
    try:
        wait_for_tcp(ALLOWED, uport, proc=srv.proc)
        mark = len(srv.log())
        with uw.connect((REFUSED, uport), source=REFUSED) as c:
            try:
                c.send(uw.packet(uw.cgi_vars(path="/hello")))
                out["refused_raw"] = c.wait_closed().decode("latin-1")
            except (OSError, Closed):
                out["refused_raw"] = c.buf.decode("latin-1")
        try:
            out["refused_log"] = wait_log_since(srv, mark, REFUSED)
        except AssertionError as e:
            out["refused_log"] = f"NOT LOGGED: {e}"
        for name, source in (("allowed", ALLOWED), ("loopback", "127.0.0.1")):
            with uw.connect((source, uport), source=source) as c:
                c.send(uw.packet(uw.cgi_vars(path="/echo")))
                resp = c.read_response()
                out[name] = {"status": resp.status, "remote": resp.json().get("REMOTE_ADDR"),
                             "rest": c.wait_closed().decode("latin-1")}
    finally:
        stop(srv)
        out["log"] = read_log(srv)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
