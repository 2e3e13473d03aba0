"""An app wrapped in wsgiref.validate.validator (apps/validated.py), served over HTTP and uwsgi:
every request must succeed and the log must hold no validator complaint. The validator checks
the environ (types, required keys, wsgi.input / wsgi.errors wrappers), start_response and write()
arguments, how the result is iterated, and that close() is called on it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
import uwsgi_client as uw
from helpers import Conn, chunked, request, start_server, stop
from support import ServerProcess

COMPLAINTS = ("AssertionError", "WSGIWarning", "Exception ignored", "Traceback",
              "garbage collected without being closed")


@pytest.fixture(scope="module")
def validated() -> Iterator[ServerProcess]:
    srv = start_server("apps.validated:app", uwsgi=True)
    yield srv
    # the validator's complaints: the whole run's log must be free of them
    time.sleep(0.2)
    log = srv.log()
    try:
        for word in COMPLAINTS:
            assert word not in log, f"{word!r} in the log:\n{log}"
    finally:
        stop_checked_validated(srv)


def stop_checked_validated(srv: ServerProcess) -> None:
    # helpers.stop_checked probes /hello, which this app answers with 404: probe / instead
    with Conn.tcp(srv.host, srv.port) as c:
        c.send(request("GET", "/"))
        assert c.read_response().body == b"validated hello"
    stop(srv)

BODY = b"first line\nsecond line\nthird\n" * 500


def http_requests() -> list[tuple[bytes, bool, int, bytes | None]]:
    """(request bytes, is HEAD, status, expected body or None for 'any')."""
    digest = hashlib.sha256(BODY).hexdigest().encode()
    return [
        (request("GET", "/"), False, 200, b"validated hello"),
        (request("GET", "/?a=1&b=%20"), False, 200, b"validated hello"),
        (request("HEAD", "/"), True, 200, None),
        (request("POST", "/body", [("Content-Type", "text/plain")], body=BODY), False, 200,
         b"%d %s" % (len(BODY), digest)),
        (request("POST", "/body", [("Transfer-Encoding", "chunked")])
         + chunked([BODY[:1000], BODY[1000:]]), False, 200, b"%d %s" % (len(BODY), digest)),
        (request("POST", "/body", [("Expect", "100-continue")], body=BODY), False, 200,
         b"%d %s" % (len(BODY), digest)),
        (request("POST", "/lines", body=b"abc\ndefgh\nij\n"), False, 200,
         b"abc\n|def|gh\nij\n"),
        (request("POST", "/iter", body=BODY), False, 200, b"1500 lines"),
        (request("GET", "/gen"), False, 200, b"".join(b"%d," % i for i in range(200))),
        (request("HEAD", "/gen"), True, 200, None),
        (request("GET", "/write"), False, 200, b"written;returned"),
        (request("GET", "/file"), False, 200, bytes(range(256)) * 1000),
        (request("HEAD", "/file"), True, 200, None),
        (request("GET", "/nocontent"), False, 204, b""),
        (request("GET", "/errors"), False, 200, b"ok"),
        (request("GET", "/missing"), False, 404, b"not found"),
        (request("GET", "/", version="HTTP/1.0", host=None), False, 200, b"validated hello"),
    ]


def test_validator_over_http_keep_alive(validated: ServerProcess) -> None:
    with Conn.tcp(validated.host, validated.port) as c:
        for raw, head, status, body in http_requests() * 3:
            if b"HTTP/1.0" in raw.split(b"\r\n", 1)[0]:
                continue  # HTTP/1.0 closes the connection: sent separately below
            c.send(raw)
            r = c.read_response(head=head)
            assert r.status == status, (raw[:60], r.raw_head, r.body[:300])
            if body is not None:
                assert r.body == body, raw[:60]


def test_validator_pipelined(validated: ServerProcess) -> None:
    reqs = [x for x in http_requests() if b"HTTP/1.0" not in x[0].split(b"\r\n", 1)[0]]
    with Conn.tcp(validated.host, validated.port) as c:
        c.send(b"".join(raw for raw, _, _, _ in reqs))
        for raw, head, status, body in reqs:
            r = c.read_response(head=head)
            assert r.status == status, (raw[:60], r.raw_head)
            if body is not None:
                assert r.body == body


def test_validator_http10(validated: ServerProcess) -> None:
    with Conn.tcp(validated.host, validated.port) as c:
        c.send(request("GET", "/gen", version="HTTP/1.0", host=None))
        r = c.read_response()
        assert r.status == 200 and r.body == b"".join(b"%d," % i for i in range(200))


def test_validator_over_uwsgi(validated: ServerProcess) -> None:
    target = ("127.0.0.1", validated.uwsgi_port)  # type: ignore[attr-defined]
    for path, body, expected in [("/", b"", b"validated hello"),
                                 ("/body", BODY, None),
                                 ("/gen", b"", b"".join(b"%d," % i for i in range(200))),
                                 ("/write", b"", b"written;returned"),
                                 ("/file", b"", bytes(range(256)) * 1000)]:
        resp, _ = uw.roundtrip(target, uw.cgi_vars(method="POST" if body else "GET",
                                                   path=path, body=body), body)
        assert resp.status == 200, (path, resp.body[:300])
        if expected is not None:
            assert resp.body == expected
    resp, _ = uw.roundtrip(target, uw.cgi_vars(path="/", https=True), b"")
    assert resp.status == 200


def test_validator_client_disconnects(validated: ServerProcess) -> None:
    # responses abandoned half-way must still be closed (the validator reports it otherwise)
    for _ in range(5):
        c = Conn.tcp(validated.host, validated.port)
        c.send(request("GET", "/file"))
        c.read_head()
        c.close()
    time.sleep(0.3)
    with Conn.tcp(validated.host, validated.port) as c:
        c.send(request("GET", "/"))
        assert c.read_response().status == 200
