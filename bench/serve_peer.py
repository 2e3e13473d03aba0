"""Start one of the peers that only have a Python API, serving bench/apps.py:app.

    python serve_peer.py SERVER HOST PORT

Each is set to its fastest single-worker configuration (see /work/shared/PEERS.md). Runs in the
peers' venv; bench/run.py starts it pinned to the server CPU and stops it by PID.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apps import app  # noqa: E402


def run_bjoern(host: str, port: int) -> None:
    import bjoern

    bjoern.run(app, host, port)


def run_fastwsgi(host: str, port: int) -> None:
    import fastwsgi

    # Nagle is on by default and stalls pipelined responses behind the client's delayed ACK.
    fastwsgi.server.tcp_nodelay = 1
    fastwsgi.run(wsgi_app=app, host=host, port=port, loglevel=0)


def run_socketify(host: str, port: int) -> None:
    from socketify import WSGI, AppListenOptions

    WSGI(app).listen(AppListenOptions(port=port, host=host)).run(workers=1)


def run_meinheld(host: str, port: int) -> None:
    from meinheld import server

    # Its defaults (no keep-alive, a log line per request) are not its fastest settings.
    server.set_keepalive(75)
    server.set_access_logger(None)
    server.listen((host, port))
    server.run(app)


def run_velocem(host: str, port: int) -> None:
    import velocem

    velocem.run(app, host, port)


RUNNERS = {
    "bjoern": run_bjoern,
    "fastwsgi": run_fastwsgi,
    "socketify": run_socketify,
    "meinheld": run_meinheld,
    "velocem": run_velocem,
}


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in RUNNERS:
        sys.exit(f"usage: serve_peer.py {{{','.join(RUNNERS)}}} HOST PORT")
    RUNNERS[sys.argv[1]](sys.argv[2], int(sys.argv[3]))


if __name__ == "__main__":
    main()
