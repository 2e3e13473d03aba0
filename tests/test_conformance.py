"""The shared request corpora (gunicorn's and llhttp's test suites) replayed against the server by
the shared runner, ../shared/conformance/run.py, with its environ-echo app.

Every failing case must be listed in tests/conformance_divergences.txt with a reason, and only
cases carrying one of the tags where a server may legitimately differ can be listed there. A
listed case that passes fails this test too, so the list never hides anything stale.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import SHARED, TESTS, ServerProcess

CONFORMANCE = SHARED / "conformance"
DIVERGENCES = TESTS / "conformance_divergences.txt"
ALLOWED_TAGS = {"policy-accept", "policy-reject", "gunicorn-default-limit", "http11-no-host"}


def load_divergences() -> dict[str, tuple[str, str]]:
    """case id -> (outcome, reason); see the file's header for the format."""
    out: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(DIVERGENCES.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        case_id, outcome, reason = (line.split(None, 2) + ["", ""])[:3]
        assert re.fullmatch(r"none|\d{3}(,\d{3})*", outcome), f"{DIVERGENCES.name}:{n}: outcome"
        assert reason.strip(), f"{DIVERGENCES.name}:{n}: {case_id} has no reason"
        assert case_id not in out, f"{DIVERGENCES.name}:{n}: {case_id} listed twice"
        out[case_id] = (outcome, reason.strip())
    return out


def load_cases() -> dict[str, dict]:  # type: ignore[type-arg]
    cases = {}
    for name in ("gunicorn-requests.json", "llhttp-requests.json"):
        for c in json.loads((CONFORMANCE / name).read_text(encoding="utf-8")):
            cases[c["id"]] = c
    return cases


@pytest.fixture(scope="module")
def echo_server() -> Iterator[ServerProcess]:
    assert (CONFORMANCE / "run.py").is_file(), f"conformance runner missing under {CONFORMANCE}"
    env = {"PYTHONPATH": os.pathsep.join(
        [str(CONFORMANCE), str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    from helpers import LIVE_SERVERS
    srv = ServerProcess("echo_app:app", "--chdir", str(CONFORMANCE), env=env)
    LIVE_SERVERS.append(srv)
    srv.uwsgi_port = None  # type: ignore[attr-defined]
    yield srv
    # stop_checked asks for /hello; the echo app answers every path with 200 and JSON
    LIVE_SERVERS.remove(srv)
    assert srv.proc.poll() is None, srv.log()
    assert "panicked" not in srv.log()
    srv.stop()


def test_divergence_list_is_well_formed() -> None:
    cases = load_cases()
    for case_id, (_, reason) in load_divergences().items():
        assert case_id in cases, f"{case_id} is not a corpus case"
        tags = set(cases[case_id].get("tags", []))
        assert tags & ALLOWED_TAGS, (
            f"{case_id} ({sorted(tags)}) may not be listed: only {sorted(ALLOWED_TAGS)} can")
        assert len(reason) >= 10, f"{case_id}: reason too short: {reason!r}"


def test_corpus_runner_against_echo_app(echo_server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(CONFORMANCE / "run.py"), "--port", str(echo_server.port),
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=900)
    assert out.exists(), proc.stdout + proc.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    failed = {c["id"]: c for c in results["cases"] if c["result"] == "fail"}
    passed = {c["id"] for c in results["cases"] if c["result"] == "pass"}
    divergences = load_divergences()
    unexpected = {i: f"{c['reason']} {c['tags']}" for i, c in failed.items()
                  if i not in divergences}
    # a listed case must still fail the way the list says (same statuses, or closed unanswered)
    changed = {i: (divergences[i][0], ",".join(map(str, c["statuses"])) or "none")
               for i, c in failed.items() if i in divergences}
    changed = {i: v for i, v in changed.items() if v[0] != v[1]}
    stale = sorted(i for i in divergences if i in passed)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    assert not unexpected, f"{summary}\nfailures not in {DIVERGENCES.name}:\n" + "\n".join(
        f"  {i}: {r}" for i, r in sorted(unexpected.items()))
    assert not stale, f"listed in {DIVERGENCES.name} but passing now: {stale}"
    assert not changed, f"listed outcome (listed, now) differs: {changed}"
    # the whole corpus ran (29 cases are skipped by the runner's default tags)
    assert results["passed"] + results["failed"] >= 200, summary
    assert proc.returncode in (0, 1), proc.stderr
    # the runner's own summary agrees
    assert summary == f"{results['passed']} passed, {results['failed']} failed", summary
