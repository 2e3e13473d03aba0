"""The settings registry: every option of Velocior is declared once, here.

Each field of `Config` is one setting. Its metadata (`Spec`) says how it is spelled on the command
line, how its text is parsed and how a Python value is checked; from that one declaration come the
CLI flags (`velocior --max-requests 1000`), the environment variable (`VELOCIOR_MAX_REQUESTS=1000`),
the `velocior.serve()` keyword (`max_requests=1000`), `--help` and the reference in docs/cli.md.

Precedence: command line, then `VELOCIOR_<NAME>`, then (for `workers` only) `WEB_CONCURRENCY`, then
the default.
"""

from __future__ import annotations

import argparse
import os
import sys

from velocior.errors import ConfigError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from typing import Any, NoReturn

ENV_PREFIX = "VELOCIOR_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


# --- kinds: text -> value (CLI, environment) and Python value -> checked value (serve()) ---------


class Kind:
    """How one setting's value is read from text and checked when it comes from Python."""

    metavar = "VALUE"

    def from_text(self, text: str) -> object:
        raise NotImplementedError

    def check(self, value: object) -> object:
        raise NotImplementedError

    def show(self, value: object) -> str:
        return "none" if value is None else str(value)


class IntKind(Kind):
    metavar = "INT"

    def __init__(self, minimum: int = 0, optional: bool = False) -> None:
        self.minimum = minimum
        self.optional = optional

    def from_text(self, text: str) -> object:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        return self.check(value)

    def check(self, value: object) -> object:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        if value < self.minimum:
            raise ValueError(f"{value} is below the minimum, {self.minimum}")
        return value


class FloatKind(Kind):
    metavar = "SECONDS"

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def from_text(self, text: str) -> object:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        return self.check(value)

    def check(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not a finite number")
        if value < self.minimum:
            raise ValueError(f"{value:g} is below the minimum, {self.minimum:g}")
        return value

    def show(self, value: object) -> str:
        return f"{value:g}" if isinstance(value, float) else super().show(value)


class BoolKind(Kind):
    metavar = "BOOL"
    TRUE = ("1", "true", "yes", "on")
    FALSE = ("0", "false", "no", "off", "")

    def from_text(self, text: str) -> object:
        t = text.strip().lower()
        if t in self.TRUE:
            return True
        if t in self.FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")

    def check(self, value: object) -> object:
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a bool")
        return value

    def show(self, value: object) -> str:
        return "on" if value else "off"


class StrKind(Kind):
    def __init__(self, metavar: str = "TEXT", choices: Sequence[str] = (),
                 optional: bool = False, lower: bool = False) -> None:
        self.metavar = metavar
        self.choices = tuple(choices)
        self.optional = optional
        self.lower = lower

    def from_text(self, text: str) -> object:
        if self.optional and text == "":
            return None
        return self.check(text.strip() if self.choices else text)

    def check(self, value: object) -> object:
        if value is None and self.optional:
            return None
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        if self.lower:
            value = value.lower()
        if self.choices and value not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")
        return value


class OctalKind(Kind):
    metavar = "MODE"

    def from_text(self, text: str) -> object:
        t = text.strip().lower()
        t = t[2:] if t.startswith("0o") else t
        try:
            value = int(t, 8)
        except ValueError:
            raise ValueError(f"{text!r} is not an octal file mode such as 660") from None
        return self.check(value)

    def check(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
            raise ValueError(f"{value!r} is not a file mode between 0 and 0o777")
        return value

    def show(self, value: object) -> str:
        return f"{value:03o}" if isinstance(value, int) else super().show(value)


class ListKind(Kind):
    """A repeatable option. The environment variable holds the items separated by commas."""

    def __init__(self, metavar: str, item: Callable[[str], str] | None = None,
                 split_cli: bool = False) -> None:
        self.metavar = metavar
        self.item = item
        self.split_cli = split_cli

    def items_from_text(self, text: str, split: bool) -> list[str]:
        parts = text.split(",") if split else [text]
        return [self._item(p.strip()) for p in parts if p.strip()]

    def from_text(self, text: str) -> object:
        return self.items_from_text(text, True)

    def _item(self, text: str) -> str:
        return self.item(text) if self.item else text

    def check(self, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{value!r} is not a string or a list of strings")
        return [self._item(v) for v in value]

    def show(self, value: object) -> str:
        return ", ".join(value) if isinstance(value, list) and value else "none"


def _cidr(text: str) -> str:
    if text in ("*", "any"):
        return "0.0.0.0/0"
    import ipaddress  # only with --uwsgi-allow-from: a worker need not hold the module

    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or network (CIDR)") from None


# --- the registry -------------------------------------------------------------------------------


# Plain classes, not dataclasses: `dataclasses` imports `inspect`, `ast`, `dis`..., about 1 MiB
# that every worker would hold for the sake of a few constructors.


class Spec:
    """How one setting is spelled and parsed. `flags[0]` is the canonical flag."""

    __slots__ = ("flags", "kind", "help", "section", "hidden", "const", "positional",
                 "extra_env", "api")

    def __init__(self, flags: tuple[str, ...], kind: Kind, help: str, section: str,
                 hidden: bool = False, const: str | None = None, positional: bool = False,
                 extra_env: tuple[str, ...] = (), api: bool = True) -> None:
        self.flags = flags
        self.kind = kind
        self.help = help
        self.section = section
        self.hidden = hidden
        self.const = const  # the value when the flag is given without one
        self.positional = positional
        self.extra_env = extra_env  # other variables read, after VELOCIOR_<NAME>
        self.api = api  # also a `velocior.serve()` keyword

    @property
    def long_flag(self) -> str:
        return next((f for f in self.flags if f.startswith("--")), self.flags[0])


class _Setting:
    """A setting's declaration in the body of `Config`, collected by `_register`."""

    __slots__ = ("default", "spec")

    def __init__(self, default: object, spec: Spec) -> None:
        self.default = default
        self.spec = spec


def _setting(default: Any, spec: Spec) -> Any:
    return _Setting(default, spec)


LISTEN = "Listeners"
PROC = "Processes"
APP = "Application"
CONN = "Connections and limits"
LOG = "Logging"


class Config:
    """All settings, with their defaults. Build it with `from_cli()` or `from_kwargs()`.

    `Config(**values)`: the settings not given take their defaults.
    """

    app: str | None = _setting(None, Spec(
        ("app",), StrKind("MODULE:APP", optional=True), section=APP, positional=True, api=False,
        help="The WSGI application: `module:name`, `module:factory()` (called once per process to "
             "build the app; literal arguments allowed) or `module` alone (its `application`, "
             "else its `app`). `module` may be dotted (`package.wsgi`)."))

    chdir: str | None = _setting(None, Spec(
        ("--chdir",), StrKind("DIR", optional=True), section=APP, api=False,
        help="Change to DIR before binding sockets and importing the app."))
    pythonpath: list[str] = _setting([], Spec(
        ("--pythonpath",), ListKind("DIRS", split_cli=True), section=APP, api=False,
        help="Comma-separated directories put in front of sys.path before importing the app "
             "(the current directory is always there). Repeatable."))

    http: list[str] = _setting([], Spec(
        ("--http", "-b", "--bind"), ListKind("ADDRESS"), section=LISTEN,
        help="Serve HTTP/1.1 on ADDRESS: `HOST:PORT`, `[IPv6]:PORT`, `:PORT` (every IPv4 "
             "interface) or `unix:/PATH`. Repeatable. With neither --http nor --uwsgi, HTTP on "
             "127.0.0.1:8000."))
    uwsgi: list[str] = _setting([], Spec(
        ("--uwsgi",), ListKind("ADDRESS"), section=LISTEN,
        help="Serve the uwsgi protocol (nginx `uwsgi_pass`) on ADDRESS: `HOST:PORT`, "
             "`[IPv6]:PORT`, `/PATH` or `unix:/PATH`. Repeatable."))
    socket_mode: int = _setting(0o660, Spec(
        ("--socket-mode",), OctalKind(), section=LISTEN,
        help="File mode of the unix sockets created (octal). 660 lets the owner and its group "
             "connect (put nginx's user in that group) and no other local user: whoever can "
             "connect to a uwsgi socket can claim any REMOTE_ADDR or HTTPS."))
    backlog: int = _setting(2048, Spec(
        ("--backlog",), IntKind(1), section=LISTEN,
        help="Listen queue length of each socket (the kernel caps it at net.core.somaxconn)."))
    uwsgi_allow_from: list[str] = _setting([], Spec(
        ("--uwsgi-allow-from",), ListKind("CIDR", _cidr, split_cli=True), section=LISTEN,
        help="Also accept TCP uwsgi connections from these addresses or networks (loopback is "
             "always allowed; `*` allows every peer). uwsgi peers are trusted with REMOTE_ADDR, "
             "HTTPS..., so other peers are refused and logged. Repeatable or comma-separated."))
    url_scheme: str = _setting("http", Spec(
        ("--url-scheme",), StrKind("SCHEME", ("http", "https"), lower=True), section=LISTEN,
        help="wsgi.url_scheme for HTTP listeners (set https behind a TLS-terminating proxy); "
             "uwsgi listeners follow the HTTPS / REQUEST_SCHEME vars nginx sends."))

    workers: int = _setting(1, Spec(
        ("-w", "--workers"), IntKind(1), section=PROC, extra_env=("WEB_CONCURRENCY",),
        help="Number of worker processes. Above 1 a supervisor process binds the sockets, forks "
             "the workers and replaces those that die. WEB_CONCURRENCY is read too, like "
             "gunicorn."))
    threads: int = _setting(1, Spec(
        ("--threads",), IntKind(1), section=PROC,
        help="1: each worker's event-loop thread calls the app (fastest). N>1: a pool of N "
             "Python threads calls it, for apps that block (the loop keeps serving sockets)."))
    supervise: bool = _setting(False, Spec(
        ("--supervise",), BoolKind(), section=PROC,
        help="Run the supervisor even with one worker (restart on crash, HUP reload). Implied "
             "by --workers > 1, --max-requests and --timeout."))
    preload: bool = _setting(False, Spec(
        ("--preload",), BoolKind(), section=PROC,
        help="Import the app once in the supervisor before forking the workers (memory shared "
             "copy-on-write, faster worker starts). Then HUP restarts the workers from that same "
             "code: restart the server to load new code."))
    max_requests: int = _setting(0, Spec(
        ("--max-requests",), IntKind(0), section=PROC,
        help="Replace a worker gracefully after about this many requests (0: never), for apps "
             "that leak memory."))
    max_requests_jitter: int = _setting(0, Spec(
        ("--max-requests-jitter",), IntKind(0), section=PROC,
        help="Add a random 0..N to each worker's --max-requests so workers are not replaced all "
             "at once."))
    timeout: float = _setting(0.0, Spec(
        ("-t", "--timeout"), FloatKind(0), section=PROC,
        help="Kill and replace a worker whose app call runs longer than this (uWSGI's harakiri; "
             "0: off). The log names the request it was stuck on."))
    graceful_timeout: float = _setting(30.0, Spec(
        ("--graceful-timeout",), FloatKind(0), section=PROC,
        help="On TERM (stop), HUP (reload), max-requests: in-flight requests get this long to "
             "finish before their worker is stopped."))
    retain_heap: int = _setting(32, Spec(
        ("--retain-heap",), IntKind(0), section=PROC,
        help="Freed memory, in MiB, each worker keeps at the top of its heap for reuse instead "
             "of handing it back to the kernel (glibc's malloc trim threshold; blocks up to that "
             "size, at most 32 MiB, come from the heap). Request and response bodies of up to "
             "that size then cost no page faults per request; a worker may hold that much more "
             "memory after a peak. With serve() and one worker it applies to the calling "
             "process. 0: glibc's defaults."))
    pid: str | None = _setting(None, Spec(
        ("-p", "--pid"), StrKind("FILE", optional=True), section=PROC,
        help="Write the pid of the server (the supervisor, when there is one) to FILE; removed "
             "at exit."))

    keep_alive: float = _setting(5.0, Spec(
        ("--keep-alive",), FloatKind(0), section=CONN,
        help="Close a kept-alive HTTP connection idle this long between requests (checked "
             "every tenth of the shorter of this and --header-timeout, at most every 100 ms)."))
    header_timeout: float = _setting(10.0, Spec(
        ("--header-timeout",), FloatKind(0), section=CONN,
        help="A connection must deliver a whole request head within this long (from accept, or "
             "from the previous response): silent clients cannot hold connections. TCP "
             "connections are accepted once their first bytes arrive (TCP_DEFER_ACCEPT), or "
             "after about a second of silence."))
    body_timeout: float = _setting(30.0, Spec(
        ("--body-timeout",), FloatKind(0), section=CONN,
        help="Close a connection whose request body makes no progress for this long."))
    write_timeout: float = _setting(30.0, Spec(
        ("--write-timeout",), FloatKind(0), section=CONN,
        help="Close a connection whose client stops reading the response for this long."))
    max_connections: int = _setting(1000, Spec(
        ("--max-connections", "--worker-connections"), IntKind(1), section=CONN,
        help="Open connections per worker; at the cap idle keep-alive connections are closed "
             "first."))
    max_body_in_memory: int = _setting(65536, Spec(
        ("--max-body-in-memory",), IntKind(0), section=CONN,
        help="Request bodies up to this many bytes are read before the app is called; larger "
             "ones are streamed as the app reads wsgi.input."))
    max_body_size: int = _setting(0, Spec(
        ("--max-body-size", "--limit-request-body"), IntKind(0), section=CONN,
        help="Largest request body in bytes (0: no limit). A larger Content-Length is answered "
             "413 before the body is read; a chunked body that grows past it makes wsgi.input "
             "raise (the app's error response follows)."))
    max_head_bytes: int | None = _setting(None, Spec(
        ("--max-head-bytes",), IntKind(1, optional=True), section=CONN,
        help="Largest HTTP request head, request line and headers (431 above; default 16384)."))
    max_headers: int | None = _setting(None, Spec(
        ("--max-headers", "--limit-request-fields"), IntKind(1, optional=True), section=CONN,
        help="Most header fields in a request (431 above; default 100)."))
    max_target_bytes: int | None = _setting(None, Spec(
        ("--max-target-bytes",), IntKind(1, optional=True), section=CONN,
        help="Longest request target, the URL (414 above; default 8190)."))
    max_uwsgi_vars_bytes: int | None = _setting(None, Spec(
        ("--max-uwsgi-vars-bytes",), IntKind(1, optional=True), section=CONN,
        help="Largest uwsgi vars block (at most and by default 65535)."))
    server_header: str = _setting("velocior", Spec(
        ("--server-header",), StrKind("TEXT"), section=CONN,
        help="Value of the Server response header; empty: no Server header."))
    native_response: bool = _setting(False, Spec(
        ("--native-response",), BoolKind(), section=CONN, hidden=True,
        help="Benchmark floor: answer every request with a fixed 200 without calling Python."))

    log_level: str = _setting("info", Spec(
        ("--log-level",), StrKind("LEVEL", LOG_LEVELS, lower=True), section=LOG,
        help="Level of the error log (logger velocior.error)."))
    access_log: str | None = _setting(None, Spec(
        ("--access-log", "--access-logfile"), StrKind("FILE", optional=True), section=LOG,
        const="-",
        help="Log every request, combined log format (logger velocior.access), to FILE or, "
             "with `-` or no value, to stdout. Off by default."))
    error_log: str = _setting("-", Spec(
        ("--error-log", "--error-logfile", "--log-file"), StrKind("FILE"), section=LOG,
        help="Where the error log goes: FILE, or `-` for stderr."))

    def __init__(self, **values: object) -> None:
        for name, setting in _SETTINGS.items():
            if name in values:
                value = values.pop(name)
            else:
                value = setting.default
                if isinstance(value, list):
                    value = list(value)  # each Config its own list
            setattr(self, name, value)
        for name in values:
            raise TypeError(f"Config.__init__() got an unexpected keyword argument {name!r}")

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in _SETTINGS)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _SETTINGS)

    # --- derived values ---

    def env_names(self) -> dict[str, str]:
        return {name: env_var(name) for name in _SETTINGS}

    def use_supervisor(self) -> bool:
        """The supervisor runs when a feature needs a process to outlive the workers."""
        return (self.workers > 1 or self.supervise or self.max_requests > 0
                or self.timeout > 0)

    def server_options(self) -> dict[str, object]:
        """The options dict of `velocior._velocior.Server` (docs/INTERFACES.md, section 2).

        `max_requests` is the configured value; the supervisor adds each worker's jitter.
        """
        allow = ["127.0.0.0/8", "::1"] + [c for c in self.uwsgi_allow_from
                                          if c not in ("127.0.0.0/8", "::1/128")]
        opts: dict[str, object] = {
            "threads": self.threads,
            "keepalive_timeout": self.keep_alive,
            "header_timeout": self.header_timeout,
            "body_timeout": self.body_timeout,
            "write_timeout": self.write_timeout,
            "graceful_timeout": self.graceful_timeout,
            "max_connections": self.max_connections,
            "max_requests": self.max_requests,
            "worker_timeout": self.timeout,
            "uwsgi_allow_from": allow,
            "access_log": self.access_log is not None,
            "server_header": self.server_header or None,
            # Under the supervisor two workers overlap at least during reloads and recycling.
            "multiprocess": self.use_supervisor(),
            "url_scheme": self.url_scheme,
            "max_body_in_memory": self.max_body_in_memory,
            "max_body_size": self.max_body_size,
            "retain_heap_mib": self.retain_heap,
        }
        if self.native_response:
            opts["native_response"] = True
        for name in ("max_head_bytes", "max_headers", "max_target_bytes",
                     "max_uwsgi_vars_bytes"):
            value = getattr(self, name)
            if value is not None:
                opts[name] = value
        return opts


def _register(cls: type) -> dict[str, _Setting]:
    """The settings declared in the body of `cls`, in declaration order; each class attribute
    becomes its setting's default (lists are copied per instance, so none is left there)."""
    found: dict[str, _Setting] = {}
    for name, value in list(vars(cls).items()):
        if isinstance(value, _Setting):
            found[name] = value
            if isinstance(value.default, list):
                delattr(cls, name)
            else:
                setattr(cls, name, value.default)
    return found


_SETTINGS = _register(Config)


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def settings() -> Iterator[tuple[str, Spec, object]]:
    """(name, spec, default) of every setting, in declaration order."""
    defaults = Config()
    for name, setting in _SETTINGS.items():
        yield name, setting.spec, getattr(defaults, name)


# --- building a Config ----------------------------------------------------------------------------


def _from_env(environ: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, spec, _default in settings():
        for var in (env_var(name),) + spec.extra_env:
            text = environ.get(var)
            if text is None:
                continue
            try:
                values[name] = spec.kind.from_text(text)
            except ValueError as e:
                raise ConfigError(f"{var}={text!r}: {e}") from None
            break
    return values


def from_kwargs(kwargs: Mapping[str, object], environ: Mapping[str, str] | None = None
                ) -> Config:
    """A Config from `velocior.serve()` keywords (environment variables apply underneath)."""
    known = {name: spec for name, spec, _ in settings() if spec.api}
    values = _from_env(os.environ if environ is None else environ)
    for key, value in kwargs.items():
        spec = known.get(key)
        if spec is None:
            raise TypeError(f"serve() got an unexpected keyword argument {key!r}")
        if key == "access_log" and isinstance(value, bool):
            value = "-" if value else None
        try:
            values[key] = spec.kind.check(value)
        except ValueError as e:
            raise ConfigError(f"{key}={value!r}: {e}") from None
    return _finish(Config(**values))


def _finish(cfg: Config) -> Config:
    if cfg.max_requests_jitter and not cfg.max_requests:
        raise ConfigError("--max-requests-jitter needs --max-requests")
    return cfg


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse builds a formatter for every add_argument() (to check the metavar), and without a
    width the formatter imports shutil for the terminal's; shutil imports zlib, bz2 and lzma,
    about 0.7 MiB that every worker would hold. The width is found here instead, the same way."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_columns() - 2 if width is None else width)


def _terminal_columns() -> int:
    """The width shutil.get_terminal_size() gives: $COLUMNS when a positive integer, else the
    terminal's on stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        columns = os.get_terminal_size(stdout.fileno()).columns if stdout is not None else 0
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or 80


def _help_text(name: str, spec: Spec, default: object) -> str:
    extra = [f"env {env_var(name)}"]
    if spec.extra_env:
        extra[0] += " or " + " or ".join(spec.extra_env)
    if not isinstance(spec.kind, BoolKind) and not spec.positional:
        extra.append(f"default: {spec.kind.show(default)}")
    text = spec.help.replace("`", "").replace("%", "%%")
    return f"{text} [{'; '.join(extra)}]"


EPILOG = """\
processes:
  With one worker and none of --max-requests, --timeout, --supervise, velocior runs as a
  single process: it binds, imports the app and serves. Otherwise a supervisor binds every
  socket, forks the workers (each imports the app, unless --preload) and keeps them running.

signals (to the server, or to the supervisor when there is one):
  TERM       graceful stop: stop accepting, finish in-flight requests (--graceful-timeout), exit 0
  INT, QUIT  quick stop (Ctrl-C); a second INT interrupts a request still running
  HUP        rolling reload: new workers import the app again, then the old ones drain (supervisor)
  TTIN/TTOU  one worker more / less (supervisor)
  USR1       reopen the log files

systemd socket activation: with LISTEN_FDS/LISTEN_PID set, the inherited sockets (fd 3...) are used
  instead of binding. A socket named "http" or "uwsgi" (FileDescriptorName=) speaks that protocol;
  unnamed ones take the --http addresses first, then the --uwsgi ones, in order (their count must
  match); with neither option given they are all HTTP.

exit codes: 0 stopped, 1 bad option or bind error, 3 a worker failed to boot (supervisor),
  4 the app failed to import (single process, or --preload).

Every option can also be set by its environment variable, VELOCIOR_<NAME>; repeatable options take
  comma-separated values there. Reference: docs/cli.md.
"""


def build_parser(version: str) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="velocior", allow_abbrev=False, epilog=EPILOG,
        formatter_class=_HelpFormatter,
        description="Serve a WSGI application over HTTP/1.1 and the uwsgi protocol.",
        usage="velocior [OPTIONS] MODULE:APP",
    )
    parser.add_argument("--version", action="version", version=f"velocior {version}",
                        help="Print the version and exit.")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, spec, default in settings():
        group = groups.get(spec.section)
        if group is None:
            group = groups[spec.section] = parser.add_argument_group(spec.section.lower())
        help_text = argparse.SUPPRESS if spec.hidden else _help_text(name, spec, default)
        kind = spec.kind
        if spec.positional:
            group.add_argument(name, nargs="?", default=argparse.SUPPRESS,
                               metavar=kind.metavar, help=help_text)
        elif isinstance(kind, BoolKind):
            group.add_argument(*spec.flags, dest=name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        elif isinstance(kind, ListKind):
            group.add_argument(*spec.flags, dest=name, action="append",
                               default=argparse.SUPPRESS, metavar=kind.metavar, help=help_text)
        else:
            group.add_argument(*spec.flags, dest=name, default=argparse.SUPPRESS,
                               nargs="?" if spec.const is not None else None, const=spec.const,
                               metavar=kind.metavar, help=help_text)
    return parser


def from_cli(argv: Sequence[str], environ: Mapping[str, str], version: str) -> Config:
    """A Config from command-line arguments over environment variables over defaults."""
    parsed = vars(build_parser(version).parse_args(list(argv)))
    values = _from_env(environ)
    specs = {name: spec for name, spec, _ in settings()}
    for name, raw in parsed.items():
        spec = specs[name]
        flag = spec.long_flag
        try:
            if isinstance(spec.kind, ListKind):
                assert isinstance(raw, list)
                items: list[str] = []
                for text in raw:
                    items += spec.kind.items_from_text(text, spec.kind.split_cli)
                values[name] = items
            elif isinstance(spec.kind, BoolKind):
                values[name] = bool(raw)
            else:
                assert isinstance(raw, str)
                values[name] = spec.kind.from_text(raw)
        except ValueError as e:
            raise ConfigError(f"{flag}: {e}") from None
    # `--access-log` takes an optional FILE, so `velocior --access-log app:app` reads the app as
    # the log file: the app is required, so when it is missing that word was the app.
    if "app" not in parsed and "access_log" in parsed and values.get("access_log") != "-":
        if environ.get(env_var("app")) is None:
            values["app"] = values["access_log"]
            values["access_log"] = "-"
    cfg = _finish(Config(**values))
    if not cfg.app:
        raise ConfigError("no application given: velocior [OPTIONS] MODULE:APP "
                          "(see velocior --help)")
    return cfg


# --- reference ---------------------------------------------------------------------------------


def reference_markdown() -> str:
    """The options tables of docs/cli.md, generated from the registry."""
    out: list[str] = []
    section = None
    for name, spec, default in settings():
        if spec.hidden:
            continue
        if spec.section != section:
            section = spec.section
            out += ["", f"### {section}", "",
                    "| option | environment | default | meaning |", "| --- | --- | --- | --- |"]
        kind = spec.kind
        if spec.positional:
            flags = f"`{kind.metavar}` (argument)"
        elif isinstance(kind, BoolKind):
            flags = ", ".join(f"`{f}`" for f in spec.flags) + f" / `--no-{spec.flags[-1][2:]}`"
        elif spec.const is not None:
            flags = ", ".join(f"`{f} [{kind.metavar}]`" for f in spec.flags)
        else:
            flags = ", ".join(f"`{f} {kind.metavar}`" for f in spec.flags)
        env = " or ".join(f"`{v}`" for v in (env_var(name),) + spec.extra_env)
        shown = "" if spec.positional else kind.show(default)
        out.append(f"| {flags} | {env} | {shown} | {spec.help} |")
    return "\n".join(out).lstrip("\n") + "\n"

