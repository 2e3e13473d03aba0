"""A small Flask app served end to end."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, Response, jsonify, redirect, request

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello from Flask"


@app.route("/json", methods=["POST"])
def echo_json() -> Response:
    return jsonify(received=request.get_json(), args=request.args.to_dict())


@app.route("/form", methods=["POST"])
def form() -> Response:
    files = {k: len(f.read()) for k, f in request.files.items()}
    return jsonify(form=request.form.to_dict(), files=files)


@app.route("/stream")
def stream() -> Response:
    def gen() -> Iterator[str]:
        for i in range(100):
            yield f"line {i}\n"
    return Response(gen(), mimetype="text/plain")


@app.route("/headers")
def headers() -> Response:
    return jsonify(host=request.host, user_agent=request.headers.get("User-Agent"),
                   scheme=request.scheme, remote=request.remote_addr, path=request.path)


@app.route("/redirect")
def go() -> Response:
    return redirect("/")  # type: ignore[return-value]


@app.route("/boom")
def boom() -> str:
    raise RuntimeError("flask view failure")
