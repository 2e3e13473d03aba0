#!/usr/bin/env python3
"""Seed the fuzz corpora from the shared conformance corpora (../../shared/conformance).

Writes corpus/<target>/seed-<case id>[-variant] files. The first byte of every input selects
the limits the target uses (even: defaults, odd: small limits); both are seeded.
  http_head     the raw request bytes of every case
  chunked_body  the bytes after the head of every chunked case
  uwsgi_packet  an nginx-style packet built from each accepted request (and a few broken ones)
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CONFORMANCE = os.environ.get(
    "VELOCIOR_CONFORMANCE_DIR", os.path.join(HERE, "..", "..", "shared", "conformance")
)


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for sel in (b"\x00", b"\x01"):
        with open(os.path.join(d, "seed-%s-%d" % (name, sel[0])), "wb") as f:
            f.write(sel + data)


def uwsgi_packet(req: dict, body: bytes) -> bytes:
    target = req["target"]
    path = req.get("path") or ""
    pairs = [
        ("QUERY_STRING", req.get("query", "")),
        ("REQUEST_METHOD", req["method"]),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", str(len(body)) if body else ""),
        ("REQUEST_URI", target),
        ("PATH_INFO", path),
        ("SERVER_PROTOCOL", req.get("version") or "HTTP/1.0"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("SERVER_PORT", "80"),
    ]
    for name, value in req["headers"]:
        pairs.append(("HTTP_" + name.upper().replace("-", "_"), value))
    out = b""
    for k, v in pairs:
        kb, vb = k.encode("latin-1"), v.encode("latin-1")
        if len(kb) > 0xFFFF or len(vb) > 0xFFFF:
            continue
        out += struct.pack("<H", len(kb)) + kb + struct.pack("<H", len(vb)) + vb
    if len(out) > 0xFFFF:
        out = out[:0xFFFF]
    return struct.pack("<BHB", 0, len(out), 0) + out + body


def main() -> int:
    n = 0
    for file in ("gunicorn-requests.json", "llhttp-requests.json"):
        path = os.path.join(CONFORMANCE, file)
        try:
            with open(path, encoding="utf-8") as f:
                cases = json.load(f)
        except OSError as e:
            print("seed_corpus: cannot read %s: %s" % (path, e), file=sys.stderr)
            return 1
        for case in cases:
            raw = case["raw"].encode("latin-1")
            cid = case["id"]
            write("http_head", cid, raw)
            n += 1
            head_end = raw.find(b"\r\n\r\n")
            if b"chunked" in raw.lower() and head_end >= 0:
                write("chunked_body", cid, raw[head_end + 4 :])
            for i, req in enumerate(case.get("requests", [])[:1]):
                body = req.get("body", "").encode("latin-1")
                pkt = uwsgi_packet(req, body)
                write("uwsgi_packet", "%s-%d" % (cid, i), pkt)
                # broken variants: vars size one too large / small, modifier1 set
                write("uwsgi_packet", "%s-%d-big" % (cid, i), pkt[:1] + struct.pack("<H", min(0xFFFF, len(pkt))) + pkt[3:])
                write("uwsgi_packet", "%s-%d-mod" % (cid, i), b"\x05" + pkt[1:])
    print("seed_corpus: seeded from %d cases" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
