"""An app module that cannot be imported."""

raise RuntimeError("boom: this module fails at import")


def app(environ, start_response):  # pragma: no cover - never reached
    start_response("200 OK", [])
    return [b""]
