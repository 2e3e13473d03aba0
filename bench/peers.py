"""The peers' virtualenv (bench/.venv-peers): created from PyPI with pinned versions.

Each peer is installed on its own, so one that fails to build is recorded (and shown in the
results table) instead of taking the others down with it. The outcome of every install is kept
in `<venv>/install-status.json`; a later run only retries what is missing or failed.

Run on its own: `python3 bench/peers.py [--force]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-peers"
STATUS_FILE = VENV / "install-status.json"


@dataclass(frozen=True)
class Peer:
    name: str  # distribution name as imported / reported
    pip_args: tuple[str, ...]  # what pip is given, pins included
    apt: tuple[str, ...] = ()  # Debian packages its build needs
    why: str = ""  # why the pins / flags are what they are


# Versions are pinned so a result is reproducible; see /work/shared/PEERS.md for the reasons.
PEERS: tuple[Peer, ...] = (
    Peer("gunicorn", ("gunicorn==27.0.1",)),
    Peer("uwsgi", ("uwsgi==2.0.31",), why="compiles from source"),
    Peer("bjoern", ("bjoern==3.2.2",), apt=("libev-dev",)),
    # fastwsgi imports pkg_resources, which setuptools 81 removed.
    Peer("fastwsgi", ("fastwsgi==0.0.9", "setuptools<81")),
    Peer("granian", ("granian==2.8.7",)),
    Peer("socketify", ("socketify==0.0.31",), apt=("libuv1-dev",)),
    # meinheld pins a greenlet that does not build on 3.11, and crashes without greenlet at all.
    Peer("meinheld", ("--no-deps", "meinheld==1.0.2", "greenlet==3.2.4")),
    Peer("waitress", ("waitress==3.0.2",)),
    # 0.0.3 and later need CPython >= 3.12.
    Peer("velocem", ("velocem==0.0.2",)),
)

# Not a peer: the chart is drawn with it, in this venv so the system Python stays untouched.
TOOLS: tuple[Peer, ...] = (Peer("matplotlib", ("matplotlib==3.10.7",)),)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def load_status() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(STATUS_FILE.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_status(status: dict[str, dict[str, object]]) -> None:
    STATUS_FILE.write_text(json.dumps(status, indent=1, sort_keys=True))


def _missing_apt(pkgs: tuple[str, ...]) -> list[str]:
    missing = []
    for pkg in pkgs:
        r = subprocess.run(["dpkg", "-s", pkg], capture_output=True, timeout=30)
        if r.returncode != 0:
            missing.append(pkg)
    return missing


def _apt_install(pkgs: list[str], log: list[str]) -> bool:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log.append(f"missing Debian packages (as root: apt-get install {' '.join(pkgs)})")
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(
        ["nice", "-n", "19", "apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs],
        capture_output=True, text=True, timeout=900, env=env,
    )
    if r.returncode != 0:
        log.append(f"apt-get install {pkgs} failed: {r.stderr.strip()[-500:]}")
    return r.returncode == 0


def installed_version(dist: str) -> str | None:
    py = venv_python()
    if not py.exists():
        return None
    code = (
        "import importlib.metadata as m, sys\n"
        "try: print(m.version(sys.argv[1]))\n"
        "except m.PackageNotFoundError: pass\n"
    )
    r = subprocess.run([str(py), "-c", code, dist], capture_output=True, text=True, timeout=60)
    v = r.stdout.strip()
    return v or None


def ensure_venv() -> None:
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)


def install(peers: tuple[Peer, ...] = PEERS + TOOLS, force: bool = False,
            quiet: bool = False) -> dict[str, dict[str, object]]:
    """Install what is missing; returns {name: {"ok", "version", "error"}} for every peer."""
    ensure_venv()
    status = load_status()
    for peer in peers:
        old = status.get(peer.name, {})
        pinned = [a.split("==", 1)[1] for a in peer.pip_args if a.startswith(peer.name + "==")]
        have = installed_version(peer.name)
        if not force and have is not None and (not pinned or have == pinned[0]):
            status[peer.name] = {"ok": True, "version": have, "error": ""}
            continue
        if not force and old.get("ok") is False and old.get("args") == list(peer.pip_args):
            continue  # failed before with the same pins: report it, do not rebuild every run
        log: list[str] = []
        t0 = time.monotonic()
        if not quiet:
            print(f"[peers] installing {peer.name} ({' '.join(peer.pip_args)})", flush=True)
        missing = _missing_apt(peer.apt)
        if missing:
            _apt_install(missing, log)
        try:
            r = subprocess.run(
                ["nice", "-n", "19", str(venv_python()), "-m", "pip", "install", "-q",
                 "--disable-pip-version-check", *peer.pip_args],
                capture_output=True, text=True, timeout=1800,
            )
            ok = r.returncode == 0
            if not ok:
                tail = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()][-6:]
                log.append("pip install failed: " + " | ".join(tail))
        except subprocess.TimeoutExpired:
            ok = False
            log.append("pip install timed out after 1800 s")
        version = installed_version(peer.name) if ok else None
        status[peer.name] = {
            "ok": ok and version is not None,
            "version": version or "",
            "error": "; ".join(log),
            "args": list(peer.pip_args),
            "seconds": round(time.monotonic() - t0, 1),
        }
        _save_status(status)
        if not quiet:
            print(f"[peers]   -> {'ok ' + (version or '') if ok else 'FAILED: ' + '; '.join(log)}",
                  flush=True)
    _save_status(status)
    return status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="reinstall every peer")
    args = ap.parse_args()
    status = install(force=args.force)
    for name, st in status.items():
        print(f"{name:12} {'ok' if st.get('ok') else 'FAILED':6} {st.get('version', '')} "
              f"{st.get('error', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
