"""Listening sockets: parse addresses, bind them (or take them from systemd), clean up unix files.

Python binds every socket before any worker exists, so one socket is shared by all workers (the
kernel spreads connections over the processes that accept on it) and outlives worker restarts: a
connection that arrives while workers are replaced waits in the listen queue instead of failing.
The Rust server only receives the file descriptors (`Server` dup()s them).
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from velocior.errors import BindError, ConfigError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Iterable, MutableMapping, Sequence

PROTOCOLS = ("http", "uwsgi")
DEFAULT_HTTP = "127.0.0.1:8000"


class Address:
    """A parsed --http / --uwsgi value."""

    __slots__ = ("protocol", "text", "path", "host", "port")

    def __init__(self, protocol: str, text: str, path: str | None = None, host: str = "",
                 port: int = 0) -> None:
        self.protocol = protocol  # "http" | "uwsgi"
        self.text = text  # as the user wrote it
        self.path = path  # unix socket path (absolute)
        self.host = host
        self.port = port

    def _key(self) -> tuple[str, str, str | None, str, int]:
        return (self.protocol, self.text, self.path, self.host, self.port)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Address)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Address(protocol={self.protocol!r}, text={self.text!r}, path={self.path!r}, "
                f"host={self.host!r}, port={self.port!r})")

    def describe(self) -> str:
        if self.path is not None:
            return f"{self.protocol} on unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol}://{host}:{self.port}"


def parse_address(text: str, protocol: str) -> Address:
    """Parse `HOST:PORT`, `[IPv6]:PORT`, `:PORT`, `PORT`, `unix:/PATH` (and `/PATH`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(protocol)
    value = text.strip()
    if value.startswith("unix:") or value.startswith("/") or value.startswith("./"):
        path = value[5:] if value.startswith("unix:") else value
        if not path:
            raise ConfigError(f"--{protocol} {text!r}: empty unix socket path")
        return Address(protocol, text, path=os.path.abspath(path))
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise ConfigError(f"--{protocol} {text!r}: expected [IPv6]:PORT")
        host, port_text = value[1:end], value[end + 2:]
    elif value.isdigit():
        host, port_text = "127.0.0.1", value
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ConfigError(f"--{protocol} {text!r}: expected HOST:PORT or unix:/PATH")
        if ":" in host:
            raise ConfigError(f"--{protocol} {text!r}: write IPv6 addresses as [ADDRESS]:PORT")
        host = host or "0.0.0.0"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"--{protocol} {text!r}: {port_text!r} is not a port number")
    return Address(protocol, text, host=host, port=int(port_text))


class Listener:
    """A bound, listening socket and what to tell the Rust server about it."""

    __slots__ = ("address", "sock", "display", "created", "inherited")

    def __init__(self, address: Address, sock: socket.socket, display: str,
                 created: tuple[str, int, int] | None = None, inherited: bool = False) -> None:
        self.address = address
        self.sock = sock
        self.display = display  # e.g. "http://127.0.0.1:8000", "unix:/run/app.sock"
        self.created = created  # (path, st_dev, st_ino) of a file we created
        # Handed down by systemd: the socket outlives us (the .socket unit queues connections
        # for the next instance), so it is only ever closed, never shut down.
        self.inherited = inherited

    def __repr__(self) -> str:
        return (f"Listener(address={self.address!r}, sock={self.sock!r}, "
                f"display={self.display!r}, created={self.created!r}, "
                f"inherited={self.inherited!r})")

    def fileno(self) -> int:
        return self.sock.fileno()

    def spec(self) -> tuple[int, str, str]:
        return (self.sock.fileno(), self.address.protocol, self.display)

    def close(self) -> None:
        """Close the socket and remove its unix file (see remove_file)."""
        self.sock.close()
        self.remove_file()

    def remove_file(self) -> None:
        """Remove the unix socket file if this process created it, and it is still that very
        file: a successor may already have bound a new one at the same path."""
        if self.created is not None:
            path, dev, ino = self.created
            self.created = None
            try:
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.unlink(path)
            except OSError:
                pass


def _reason(e: OSError) -> str:
    reasons = {
        errno.EADDRINUSE: "address already in use",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EADDRNOTAVAIL: "address not available on this machine",
        errno.ENOENT: "no such directory",
    }
    if e.errno in reasons:
        return reasons[e.errno]
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the host ({e.strerror})"
    return (e.strerror or str(e)).lower() if e.strerror else str(e)


def _display(addr: Address, sock: socket.socket) -> str:
    if addr.path is not None:
        return f"unix:{addr.path}"
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{addr.protocol}://{host}:{port}"


def _bind_tcp(addr: Address, backlog: int) -> Listener:
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise BindError(f"cannot listen on {addr.describe()}: {_reason(e)}") from None
    except UnicodeError:
        # The IDNA codec refuses the name (an empty label, a label over 63 characters).
        raise BindError(f"cannot listen on {addr.describe()}: cannot resolve the host "
                        "(not a valid host name)") from None
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        # Lets a restarted server bind while connections of the old one linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # As nginx does: [::]:80 means IPv6 only, so 0.0.0.0:80 can be bound beside it.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise BindError(f"cannot listen on {addr.describe()}: {_reason(e)}") from None
    sock.setblocking(False)
    return Listener(addr, sock, _display(addr, sock))


def _remove_stale(addr: Address) -> None:
    """Remove a unix socket file left by a server that is gone; never anything else."""
    assert addr.path is not None
    try:
        st = os.lstat(addr.path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise BindError(f"cannot listen on {addr.describe()}: {_reason(e)}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise BindError(f"cannot listen on {addr.describe()}: the file exists and is not a "
                        "socket (not removing it)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(addr.path)
    except ConnectionRefusedError:
        try:
            os.unlink(addr.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise BindError(f"cannot listen on {addr.describe()}: cannot remove the stale "
                            f"socket file: {_reason(e)}") from None
        return
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.ETIMEDOUT) or isinstance(e, TimeoutError):
            raise BindError(f"cannot listen on {addr.describe()}: address already in use "
                            "(another process listens on it)") from None
        raise BindError(f"cannot listen on {addr.describe()}: {_reason(e)}") from None
    finally:
        probe.close()
    raise BindError(f"cannot listen on {addr.describe()}: address already in use (another "
                    "process listens on it)")


def _bind_unix(addr: Address, backlog: int, mode: int) -> Listener:
    assert addr.path is not None
    _remove_stale(addr)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask makes the file appear with no more than `mode`; chmod then sets exactly `mode`.
    # Nobody can connect between the two: the socket is not listening yet.
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(addr.path)
    except OSError as e:
        sock.close()
        raise BindError(f"cannot listen on {addr.describe()}: {_reason(e)}") from None
    finally:
        os.umask(old_umask)
    try:
        st = os.lstat(addr.path)
        listener = Listener(addr, sock, _display(addr, sock), (addr.path, st.st_dev, st.st_ino))
        os.chmod(addr.path, mode)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        try:
            os.unlink(addr.path)
        except OSError:
            pass
        raise BindError(f"cannot listen on {addr.describe()}: {_reason(e)}") from None
    sock.setblocking(False)
    return listener


def addresses(http: Sequence[str], uwsgi: Sequence[str]) -> list[Address]:
    """Every configured address, HTTP ones first; the default when none is given."""
    result = [parse_address(a, "http") for a in http] + [parse_address(a, "uwsgi") for a in uwsgi]
    return result or [parse_address(DEFAULT_HTTP, "http")]


def bind(addrs: Iterable[Address], backlog: int = 2048, mode: int = 0o660) -> list[Listener]:
    """Bind and listen on every address; on any failure close those already bound and raise."""
    bound: list[Listener] = []
    try:
        for addr in addrs:
            if addr.path is not None:
                bound.append(_bind_unix(addr, backlog, mode))
            else:
                bound.append(_bind_tcp(addr, backlog))
    except BaseException:
        close_all(bound)
        raise
    return bound


def close_all(listeners: Iterable[Listener]) -> None:
    for listener in listeners:
        listener.close()


# --- systemd socket activation ---------------------------------------------------------------

SD_LISTEN_FDS_START = 3


def from_systemd(environ: MutableMapping[str, str], http: Sequence[str], uwsgi: Sequence[str]
                 ) -> list[Listener] | None:
    """The sockets passed by systemd (LISTEN_FDS / LISTEN_PID), or None when there are none.

    The variables are removed from `environ` once read, as sd_listen_fds(unset=1) does, so that
    programs the app starts do not take the sockets for theirs.
    """
    pid_text = environ.get("LISTEN_PID")
    count_text = environ.get("LISTEN_FDS")
    if not pid_text or not count_text:
        return None
    if pid_text.strip() != str(os.getpid()):
        return None
    names_text = environ.get("LISTEN_FDNAMES")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(var, None)
    try:
        count = int(count_text)
    except ValueError:
        raise ConfigError(f"LISTEN_FDS={count_text!r} is not a number") from None
    if count <= 0:
        return None
    names = names_text.split(":") if names_text else []
    if len(names) == count and all(n in PROTOCOLS for n in names):
        protocols = names
    else:
        given = ["http"] * len(http) + ["uwsgi"] * len(uwsgi)
        if not given:
            protocols = ["http"] * count
        elif len(given) == count:
            protocols = given
        else:
            raise ConfigError(
                f"systemd passed {count} socket(s) but {len(given)} --http/--uwsgi option(s) "
                "were given: give one per socket, in order (HTTP first), or name the sockets "
                "http / uwsgi with FileDescriptorName=")
    result: list[Listener] = []
    for i, protocol in enumerate(protocols):
        fd = SD_LISTEN_FDS_START + i
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            raise BindError(f"socket activation: fd {fd} is not a socket: {_reason(e)}") from None
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET,
                                                                    socket.SO_ACCEPTCONN):
            sock.detach()
            raise BindError(f"socket activation: fd {fd} is not a listening stream socket")
        os.set_inheritable(fd, False)
        sock.setblocking(False)
        if sock.family == socket.AF_UNIX:
            path = sock.getsockname()
            path = path.decode(errors="replace") if isinstance(path, bytes) else path
            addr = Address(protocol, f"fd:{fd}", path=path or f"fd{fd}")
            display = f"unix:{addr.path}"
        else:
            host, port = sock.getsockname()[:2]
            addr = Address(protocol, f"fd:{fd}", host=host, port=port)
            display = _display(addr, sock)
        result.append(Listener(addr, sock, f"{display} (systemd)", inherited=True))
    return result


def open_listeners(http: Sequence[str], uwsgi: Sequence[str], backlog: int, mode: int,
                   environ: MutableMapping[str, str] | None = None) -> list[Listener]:
    """Socket activation when systemd passed sockets, else bind the configured addresses."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    activated = from_systemd(env, http, uwsgi)
    if activated is not None:
        return activated
    return bind(addresses(http, uwsgi), backlog, mode)


def describe(listeners: Sequence[Listener]) -> str:
    return ", ".join(f"{lst.display} ({lst.address.protocol})" for lst in listeners)


