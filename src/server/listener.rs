//! Listening sockets handed over by Python (already bound and listening), and the accept loops.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// Duplicate a descriptor the caller keeps (and may close at once).
pub fn dup_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: the caller guarantees `fd` is open for the duration of this call.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;

use async_io::Async;

use super::conn;
use super::stream::Stream;
use super::{ConnInfo, Service, Shared};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Uwsgi,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Uwsgi => "uwsgi",
        }
    }
}

#[derive(Debug)]
pub struct ListenerSpec {
    /// Our own descriptor (a dup of the caller's, taken when the Server is created).
    pub fd: OwnedFd,
    pub protocol: Protocol,
    pub display: String,
}

/// An IPv4 or IPv6 network in CIDR notation (a bare address means a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid address in {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|_| format!("invalid prefix in {s:?}"))?,
            None => max,
        };
        if prefix > max {
            return Err(format!("prefix too long in {s:?}"));
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                (u32::from(net) & mask) == (u32::from(ip) & mask)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                (u128::from(net) & mask) == (u128::from(ip) & mask)
            }
            _ => false,
        }
    }
}

pub(crate) enum Kind {
    Tcp(Async<TcpListener>),
    Unix(Async<UnixListener>),
}

pub(crate) struct Listener {
    pub kind: Kind,
    pub protocol: Protocol,
    pub display: String,
    /// TCP_NODELAY is set on the listener, and Linux copies it to every accepted socket.
    pub nodelay_inherited: bool,
}

impl Listener {
    pub fn from_spec(spec: ListenerSpec) -> std::io::Result<Listener> {
        let sock = socket2::Socket::from(spec.fd);
        let domain = sock.local_addr()?.domain();
        let raw = sock.into_raw_fd();
        let mut nodelay_inherited = false;
        let kind = if domain == socket2::Domain::UNIX {
            Kind::Unix(Async::new(unsafe { UnixListener::from_raw_fd(raw) })?)
        } else {
            defer_accept(raw);
            // Set once here instead of once per connection (a syscall each).
            nodelay_inherited = set_int_option(raw, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
            Kind::Tcp(Async::new(unsafe { TcpListener::from_raw_fd(raw) })?)
        };
        Ok(Listener {
            kind,
            protocol: spec.protocol,
            display: spec.display,
            nodelay_inherited,
        })
    }
}

/// TCP_DEFER_ACCEPT: the kernel hands us a TCP connection once its first bytes are there, not at
/// the end of the handshake. HTTP clients and nginx send the request right after connecting, so
/// the accepted socket can be read at once: no EAGAIN, no epoll registration, arming and removal
/// for the common short connection (a request per connection, `uwsgi_pass` over TCP). A client
/// that connects and stays silent is handed over after about a second, and the header timeout
/// runs from then. Best effort: a socket that refuses the option works as before.
fn defer_accept(fd: RawFd) {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1);
}

/// setsockopt(2) with an int value; true when the socket took it.
fn set_int_option(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: a plain integer option on a descriptor we hold; failure leaves the socket as it is.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// accept4(2) on a unix socket, the new one non-blocking and close-on-exec (see below).
fn accept_unix_nonblocking(l: &UnixListener) -> std::io::Result<UnixStream> {
    // SAFETY: no address is asked for; the descriptor returned is new and ours.
    let fd = unsafe {
        libc::accept4(
            l.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { UnixStream::from_raw_fd(fd) })
}

/// accept4(2) with the new socket already non-blocking and close-on-exec (std's accept would
/// leave the non-blocking switch to one more syscall per connection).
fn accept_nonblocking(l: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    // SAFETY: zeroed storage is a valid sockaddr_storage; accept4 writes at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let fd = unsafe {
        libc::accept4(
            l.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that we own from here.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // SAFETY: accept4 filled `len` bytes of a socket address of the listener's family.
    let addr = unsafe { socket2::SockAddr::new(storage, len) };
    let peer = addr
        .as_socket()
        .ok_or_else(|| std::io::Error::other("accept4 returned a non-IP peer address"))?;
    Ok((stream, peer))
}

pub(crate) async fn accept_loop<S: Service>(
    l: Listener,
    shared: Rc<Shared<S>>,
    ex: Rc<async_executor::LocalExecutor<'static>>,
) {
    // A listener bound to one address: that is every connection's own address (no syscall).
    let fixed_local = match &l.kind {
        Kind::Tcp(t) => t
            .get_ref()
            .local_addr()
            .ok()
            .filter(|a| !a.ip().is_unspecified()),
        Kind::Unix(_) => None,
    };
    loop {
        let accepted = match &l.kind {
            Kind::Tcp(t) => t.read_with(accept_nonblocking).await.map(|(s, peer)| {
                if !l.nodelay_inherited {
                    let _ = s.set_nodelay(true);
                }
                // Only HTTP needs our own address (SERVER_NAME without a Host header); uwsgi gets
                // it from nginx's vars: save the syscall on that path.
                let local = match (l.protocol, fixed_local) {
                    (Protocol::Http, Some(a)) => Some(a),
                    (Protocol::Http, None) => s.local_addr().ok(),
                    (Protocol::Uwsgi, _) => None,
                };
                (Stream::tcp(s), Some(peer), local)
            }),
            Kind::Unix(u) => u
                .read_with(accept_unix_nonblocking)
                .await
                .map(|s| (Stream::unix(s), None, None)),
        };
        let (stream, peer, local) = match accepted {
            Ok(x) => x,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // The supervisor shut the shared socket down to stop accepting: not an error.
                return;
            }
            Err(e) => {
                // EMFILE and friends: log, back off a little, keep serving what we have.
                shared
                    .service
                    .log_error(&format!("accept on {} failed: {e}", l.display));
                async_io::Timer::after(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if l.protocol == Protocol::Uwsgi {
            if let Some(peer) = peer {
                if !shared
                    .config
                    .uwsgi_allow_from
                    .iter()
                    .any(|c| c.contains(peer.ip()))
                {
                    shared.service.log_error(&format!(
                        "refused uwsgi connection from {} on {}: not in --uwsgi-allow-from",
                        peer.ip(),
                        l.display
                    ));
                    continue;
                }
            }
        }
        if shared.open.get() >= shared.config.max_connections
            && !shared.waiting.borrow_mut().shed_one()
        {
            shared.service.log_error(&format!(
                "connection limit ({}) reached: refusing a connection on {}",
                shared.config.max_connections, l.display
            ));
            if l.protocol == Protocol::Http {
                let _ = stream.try_write(velocior_protocol::response::canned_response(503));
            }
            continue;
        }
        let info = ConnInfo::new(l.protocol, peer, local);
        let guard = conn::register(&shared);
        ex.spawn(conn::run(stream, info, guard)).detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tcp_listener_defers_accept_and_passes_nodelay_to_accepted_sockets() {
        let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let l = Listener::from_spec(ListenerSpec {
            fd: OwnedFd::from(std_listener),
            protocol: Protocol::Http,
            display: "test".into(),
        })
        .unwrap();
        assert!(l.nodelay_inherited);
        let Kind::Tcp(t) = &l.kind else {
            panic!("a TCP listener")
        };
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        // Connected but silent: not handed over yet.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let e = accept_nonblocking(t.get_ref()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        // With its first bytes there, it is.
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let mut accepted = None;
        for _ in 0..200 {
            match accept_nonblocking(t.get_ref()) {
                Ok((s, _)) => {
                    accepted = Some(s);
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        let s = accepted.expect("accepted once the request bytes arrived");
        assert!(s.nodelay().unwrap());
    }
}
