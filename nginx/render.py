#!/usr/bin/env python3
"""Fill the @NAME@ placeholders of the nginx templates in this directory.

The tests render these very files, and so can a deployment:

    python3 nginx/render.py nginx/velocior-uwsgi-unix.conf \\
        LISTEN=80 SERVER_NAME=example.com SOCKET=/run/velocior/velocior.sock \\
        PROTECTED_DIR=/srv/app/protected > /etc/nginx/sites-enabled/velocior.conf

A placeholder left without a value is an error (nginx would otherwise fail later with a less
helpful message, or worse, listen somewhere unexpected).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def placeholders(text: str) -> set[str]:
    """The names of the placeholders in `text`."""
    return set(PLACEHOLDER.findall(text))


def render_text(text: str, values: Mapping[str, object]) -> str:
    """`text` with every @NAME@ replaced by str(values[NAME]); names without a value raise."""
    missing = sorted(placeholders(text) - set(values))
    if missing:
        raise KeyError("no value for placeholder(s): " + ", ".join(missing))
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def render(template: str | Path, values: Mapping[str, object]) -> str:
    """Render a template given by path, or by file name relative to this directory."""
    path = Path(template)
    if not path.is_absolute() and not path.exists():
        path = HERE / path
    return render_text(path.read_text(encoding="utf-8"), values)


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    values: dict[str, str] = {}
    for arg in argv[1:]:
        name, sep, value = arg.partition("=")
        if not sep:
            print(f"expected NAME=VALUE, got {arg!r}", file=sys.stderr)
            return 2
        values[name] = value
    try:
        sys.stdout.write(render(argv[0], values))
    except (KeyError, OSError) as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
