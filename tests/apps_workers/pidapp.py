"""Says which process answered (X-Worker-Pid) and which imported the module (X-Import-Pid).

/sleep?S sleeps S seconds (after a line on stderr, so a test knows the request is in the app),
/crash and /segv end the worker, /env?NAME returns that environment variable.
"""

import ctypes
import os
import sys
import time

IMPORT_PID = os.getpid()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    body = f"pid {os.getpid()}\n".encode()
    if path == "/sleep":
        seconds = float(query or "1")
        sys.stderr.write(f"pidapp: sleeping {seconds:g} s in {os.getpid()}\n")
        sys.stderr.flush()
        time.sleep(seconds)
        body = f"slept {seconds:g}\n".encode()
    elif path == "/crash":
        os._exit(7)
    elif path == "/segv":
        ctypes.string_at(0)
    elif path == "/env":
        body = repr(os.environ.get(query)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("X-Worker-Pid", str(os.getpid())),
                              ("X-Import-Pid", str(IMPORT_PID)),
                              ("Content-Length", str(len(body)))])
    return [body]


application = app


def create(greeting="hello"):
    """An application factory: `apps_workers.pidapp:create('bonjour')`."""
    data = greeting.encode()

    def greeter(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(data)))])
        return [data]

    return greeter
