"""Shared fixtures for the black-box tests.

tests/ is on sys.path (rootdir conftest), so test modules import `support`, `helpers` and
`uwsgi_client` directly; the server subprocess gets tests/ on PYTHONPATH and imports `apps.*`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import helpers
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in helpers.LIVE_SERVERS:
            report.sections.append(
                (f"velocior log ({' '.join(srv.argv[3:])})", helpers.read_log(srv)[-4000:]))


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    """One server per module: the lab app on HTTP, uwsgi over TCP and uwsgi over a unix socket."""
    srv = helpers.start_server("apps.echo:app", uwsgi=True, uwsgi_unix=True)
    yield srv
    helpers.stop_checked(srv)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 50 MiB file of pseudo-random bytes and its sha256."""
    path = tmp_path_factory.mktemp("files") / "fifty.bin"
    h = hashlib.sha256()
    seed = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(50):
            block = hashlib.sha256(b"%d" % i).digest() + seed[32:]
            h.update(block)
            f.write(block)
    return path, h.hexdigest()
