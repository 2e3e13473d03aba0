"""A small uwsgi protocol client for the tests: builds request packets byte by byte.

Packet layout (what nginx's uwsgi module sends):
  header   modifier1 (u8), vars size (u16 little-endian), modifier2 (u8)
  vars     repeated: key size (u16 LE), key, value size (u16 LE), value
  body     exactly CONTENT_LENGTH bytes
The answer is an HTTP/1.x style response read until the server closes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Union

from helpers import Conn, Response

Var = tuple[Union[bytes, str], Union[bytes, str]]


def _b(x: bytes | str) -> bytes:
    return x if isinstance(x, bytes) else x.encode("latin-1")


def encode_vars(vars: Iterable[Var]) -> bytes:
    out = bytearray()
    for k, v in vars:
        kb, vb = _b(k), _b(v)
        out += struct.pack("<H", len(kb)) + kb + struct.pack("<H", len(vb)) + vb
    return bytes(out)


def packet(vars: Iterable[Var], body: bytes = b"", modifier1: int = 0, modifier2: int = 0,
           vars_size: int | None = None) -> bytes:
    """A whole packet. `vars_size` overrides the header's size field (for malformed packets)."""
    block = encode_vars(vars)
    size = len(block) if vars_size is None else vars_size
    return struct.pack("<BHB", modifier1, size, modifier2) + block + body


def cgi_vars(method: str = "GET", path: str = "/", query: str = "", body: bytes = b"",
             content_type: str = "", headers: Sequence[tuple[str, str]] = (),
             https: bool = False, server_port: int = 80) -> list[Var]:
    """The vars nginx's stock uwsgi_params produce for a request (order as nginx sends them)."""
    uri = path + ("?" + query if query else "")
    vars: list[Var] = [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", content_type),
        ("CONTENT_LENGTH", str(len(body)) if body else ""),
        ("REQUEST_URI", uri),
        ("PATH_INFO", path),
        ("DOCUMENT_ROOT", "/var/www/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "https" if https else "http"),
    ]
    if https:
        vars.append(("HTTPS", "on"))
    vars += [
        ("REMOTE_ADDR", "203.0.113.7"),
        ("REMOTE_PORT", "54321"),
        ("SERVER_PORT", str(server_port)),
        ("SERVER_NAME", "example.test"),
        ("HTTP_HOST", "example.test"),
    ]
    for k, v in headers:
        vars.append(("HTTP_" + k.upper().replace("-", "_"), v))
    return vars


def connect(target: tuple[str, int] | str, timeout: float = 15.0,
            source: str | None = None) -> Conn:
    if isinstance(target, str):
        return Conn.unix(target, timeout)
    return Conn.tcp(target[0], target[1], timeout, source=source)


def send_packet(target: tuple[str, int] | str, data: bytes, timeout: float = 15.0) -> Conn:
    c = connect(target, timeout)
    try:
        c.send(data)
    except OSError:
        c.close()
        raise
    return c


def roundtrip(target: tuple[str, int] | str, vars: Iterable[Var], body: bytes = b"",
              head: bool = False, timeout: float = 15.0) -> tuple[Response, bytes]:
    """Send one packet, read the response, then read on until the server closes.

    Returns the response and whatever came after it (must be empty: one response per packet).
    """
    with send_packet(target, packet(vars, body), timeout) as c:
        resp = c.read_response(head=head)
        rest = c.wait_closed(timeout)
        return resp, rest


def raw_roundtrip(target: tuple[str, int] | str, data: bytes, timeout: float = 15.0) -> bytes:
    """Send bytes, return everything until the server closes."""
    with send_packet(target, data, timeout) as c:
        try:
            return c.wait_closed(timeout)
        except (BrokenPipeError, ConnectionResetError):
            return bytes(c.buf)

