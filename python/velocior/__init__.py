"""Velocior: a fast and complete WSGI server written in Rust, for HTTP/1.1 and the uwsgi protocol.

    import velocior
    velocior.serve(app, http="127.0.0.1:8000")

or from the shell: `velocior --http 127.0.0.1:8000 myproject.wsgi:application`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from velocior.api import serve  # noqa: E402 - after __version__, which the submodules read

__all__ = ["serve", "__version__"]
