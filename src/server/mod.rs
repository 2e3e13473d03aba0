//! The event loop: listeners, connection tasks, timeouts, back-pressure and graceful stop, on
//! smol's `LocalExecutor` driven by async-io's reactor on ONE thread.
//!
//! This module knows nothing of Python. It hands each parsed request to a [`Service`] (the WSGI
//! adapter implements it) and writes what the service produces. The service either answers inline
//! on this thread ([`Dispatch::Inline`]: the default, no cross-thread hand-off) or from a thread
//! pool ([`Dispatch::Remote`]: pieces arrive through a bounded channel, which is the back-pressure).

pub mod body;
mod conn;
pub mod date;
mod listener;
pub mod stream;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Timer;
use event_listener::Event;
use velocior_protocol::http1::{Header, RequestHead};
use velocior_protocol::util::push_decimal;
use velocior_protocol::uwsgi::UwsgiVar;
use velocior_protocol::Limits;

pub use body::Body;
pub use listener::{dup_fd, Cidr, ListenerSpec, Protocol};

/// Everything the loop needs to know; built once per worker.
#[derive(Clone, Debug)]
pub struct Config {
    pub keepalive_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    pub graceful_timeout: Duration,
    pub max_connections: usize,
    pub max_requests: u64,
    pub uwsgi_allow_from: Vec<Cidr>,
    pub server_header: Option<Vec<u8>>,
    pub max_body_in_memory: usize,
    /// 0: no limit; else a larger Content-Length gets 413 and a longer chunked body an error.
    pub max_body_size: u64,
    pub native_response: bool,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keepalive_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            graceful_timeout: Duration::from_secs(30),
            max_connections: 1000,
            max_requests: 0,
            uwsgi_allow_from: vec![
                Cidr::parse("127.0.0.0/8").expect("valid"),
                Cidr::parse("::1/128").expect("valid"),
            ],
            server_header: Some(b"velocior".to_vec()),
            max_body_in_memory: 64 * 1024,
            max_body_size: 0,
            native_response: false,
            limits: Limits::default(),
        }
    }
}

/// Facts about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub protocol: Protocol,
    /// Peer address; `None` on unix sockets.
    pub peer: Option<SocketAddr>,
    /// Local address; `None` on unix sockets.
    pub local: Option<SocketAddr>,
    /// The peer's address and port as text (IPv4-mapped IPv6 shown as IPv4), formatted once per
    /// connection rather than per request.
    pub peer_ip: String,
    pub peer_port: String,
    /// What the service keeps for this connection between its requests (opaque here; the WSGI
    /// adapter keeps an environ template for keep-alive connections).
    pub service_state: RefCell<Option<Box<dyn std::any::Any>>>,
}

impl ConnInfo {
    pub fn new(
        protocol: Protocol,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
    ) -> ConnInfo {
        let (peer_ip, peer_port) = match peer {
            Some(p) => {
                let ip = match p.ip() {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(p.ip()),
                    ip => ip,
                };
                let ip = match ip {
                    // Formatted by hand: this runs for every connection, and std's Display is
                    // generic (padding, width) and several times slower.
                    IpAddr::V4(v4) => {
                        let mut s = Vec::with_capacity(15);
                        for (i, octet) in v4.octets().into_iter().enumerate() {
                            if i > 0 {
                                s.push(b'.');
                            }
                            push_decimal(octet.into(), &mut s);
                        }
                        ascii_text(s)
                    }
                    ip => ip.to_string(),
                };
                let mut port = Vec::with_capacity(5);
                push_decimal(p.port().into(), &mut port);
                let port = ascii_text(port);
                (ip, port)
            }
            None => (String::new(), String::new()),
        };
        ConnInfo {
            protocol,
            peer,
            local,
            peer_ip,
            peer_port,
            service_state: RefCell::new(None),
        }
    }
}

/// Digits and dots as a String (always ASCII).
fn ascii_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// One parsed request, borrowed from the connection's buffer for the length of the call.
pub struct Request<'a> {
    pub buf: &'a [u8],
    /// The current Date header value.
    pub date: [u8; date::DATE_LEN],
    pub kind: RequestKind<'a>,
    pub conn: &'a ConnInfo,
    /// The client asked for (and the protocol allows) keeping the connection after this response.
    pub keep_alive: bool,
}

pub enum RequestKind<'a> {
    Http {
        head: &'a RequestHead,
        headers: &'a [Header],
    },
    Uwsgi {
        vars: &'a [UwsgiVar],
    },
}

impl Request<'_> {
    pub fn is_head(&self) -> bool {
        match &self.kind {
            RequestKind::Http { head, .. } => head.method.get(self.buf) == b"HEAD",
            RequestKind::Uwsgi { vars } => vars.iter().any(|v| {
                v.key.get(self.buf) == b"REQUEST_METHOD" && v.value.get(self.buf) == b"HEAD"
            }),
        }
    }
}

/// How the response must be framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireProtocol {
    Http11,
    Http10,
    /// uwsgi: `HTTP/1.1` status line for nginx, never chunked, one request per connection.
    Uwsgi,
}

/// Bytes owned by the service (an application's body buffer), written without being copied.
pub type Owned = Box<dyn AsRef<[u8]> + Send>;

/// One step of a response, as produced by a [`Responder`].
pub enum Step {
    /// More bytes were appended to the output buffer; call again.
    Data,
    /// Write the output buffer, then these bytes; call again.
    Bytes(Owned),
    /// Send `len` bytes of `file` from `offset` with sendfile(2), then call again.
    File { file: File, offset: u64, len: u64 },
    /// The response is complete.
    Done { keep_alive: bool },
    /// The response cannot be completed: close the connection (the client sees a truncated body).
    Abort,
}

/// The same steps as owned values, for responses produced on another thread.
pub enum Piece {
    Data(Vec<u8>),
    Bytes(Owned),
    File { file: File, offset: u64, len: u64 },
    Done { keep_alive: bool },
    Abort,
}

pub trait Responder {
    /// Produce the next part of the response, appending bytes to `out`.
    fn next(&mut self, out: &mut Vec<u8>) -> Step;
    /// The connection failed (client gone, timeout): release the app's resources (`close()`).
    fn abort(&mut self);
}

pub enum Dispatch<R> {
    Inline(R),
    Remote(async_channel::Receiver<Piece>),
}

/// What the loop calls for each request. Implemented by the WSGI adapter.
pub trait Service: 'static {
    type Responder: Responder;
    /// Start answering `req`. May already append the whole response to `out` (returning a responder
    /// whose first `next` says `Done`).
    fn dispatch(
        &self,
        req: &Request<'_>,
        wire: WireProtocol,
        body: Option<Body>,
        out: &mut Vec<u8>,
    ) -> Dispatch<Self::Responder>;
    /// Log a line on the error logger (rare events: refused peers, malformed packets).
    fn log_error(&self, msg: &str);
    /// Log a line at info level on the error logger (startup, shutdown).
    fn log_info(&self, msg: &str);
    /// A wakeup-fd byte arrived: run pending signal handlers. False means a handler raised:
    /// stop at once.
    fn check_signals(&self) -> bool;
    /// Run one turn of the loop (every task that is ready, until all wait on I/O or timers)
    /// inside `f`. A service that needs a lock for its own work can take it once per turn here
    /// instead of once per request; it must not hold it while the loop waits for I/O, and the
    /// loop never waits inside `f`.
    fn turn<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// The loop's top-level future: every poll is one turn, run inside `Service::turn`.
struct Turns<'a, S: Service, F> {
    service: &'a S,
    inner: std::pin::Pin<Box<F>>,
}

impl<S: Service, F: std::future::Future> std::future::Future for Turns<'_, S, F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = &mut *self;
        let inner = &mut this.inner;
        this.service.turn(|| inner.as_mut().poll(cx))
    }
}

/// Stop requests, from any thread (signal handlers run on the loop thread, `stop()` from anywhere).
#[derive(Default)]
pub struct Control {
    /// 0 running, 1 graceful stop, 2 quick stop.
    state: AtomicU8,
    event: Event,
    requests: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Stopped,
    Quick,
    MaxRequests,
    SignalError,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Stopped => "stopped",
            StopReason::Quick | StopReason::SignalError => "quick",
            StopReason::MaxRequests => "max-requests",
        }
    }
}

impl Control {
    pub fn stop(&self, graceful: bool) {
        let want = if graceful { 1 } else { 2 };
        self.state.fetch_max(want, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }
    pub fn state(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }
    pub fn requests_served(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    async fn wait_state(&self, at_least: u8) {
        loop {
            if self.state() >= at_least {
                return;
            }
            let listener = self.event.listen();
            if self.state() >= at_least {
                return;
            }
            listener.await;
        }
    }
}

/// Per-loop shared state (single-threaded: `Rc`/`Cell`).
pub(crate) struct Shared<S: Service> {
    pub service: S,
    pub config: Config,
    pub control: Arc<Control>,
    pub date: date::DateCache,
    pub open: Cell<usize>,
    /// Connections waiting for a request head, oldest first: the ones to shed at the cap.
    pub waiting: RefCell<slab_list::WaitList>,
    pub all_closed: Event,
    pub max_reached: Cell<bool>,
}

mod slab_list {
    use std::rc::Rc;

    use super::conn::Kick;

    /// A small registry of connections waiting for a head; pruned lazily.
    #[derive(Default)]
    pub struct WaitList {
        items: Vec<(u64, Rc<Kick>)>,
        next: u64,
    }

    impl WaitList {
        pub fn add(&mut self, kick: Rc<Kick>) -> u64 {
            self.next += 1;
            self.items.push((self.next, kick));
            self.next
        }
        pub fn remove(&mut self, id: u64) {
            if let Some(i) = self.items.iter().position(|(k, _)| *k == id) {
                self.items.swap_remove(i);
            }
        }
        /// Kick the oldest waiting connection (idle keep-alive first, then slow heads).
        pub fn shed_one(&mut self) -> bool {
            let pick = self
                .items
                .iter()
                .enumerate()
                .filter(|(_, (_, k))| !k.kicked())
                .min_by_key(|(_, (id, k))| (!k.idle(), *id))
                .map(|(i, _)| i);
            match pick {
                Some(i) => {
                    // It stays listed (its task removes it): the sweeper still ends its waits.
                    self.items[i].1.kick();
                    true
                }
                None => false,
            }
        }
        /// End every wait whose deadline has passed.
        pub fn expire(&self, now: std::time::Instant) {
            for (_, k) in &self.items {
                k.expire(now);
            }
        }
        pub fn kick_all_idle(&mut self) {
            for (_, k) in &self.items {
                if k.idle() {
                    k.kick();
                }
            }
        }
    }
}

/// Run the loop on the calling thread until stopped.
pub fn run<S: Service>(
    service: S,
    config: Config,
    listeners: Vec<ListenerSpec>,
    control: Arc<Control>,
    wakeup_fd: Option<RawFd>,
) -> std::io::Result<StopReason> {
    let shared = Rc::new(Shared {
        service,
        config,
        control,
        date: date::DateCache::new(),
        open: Cell::new(0),
        waiting: RefCell::new(Default::default()),
        all_closed: Event::new(),
        max_reached: Cell::new(false),
    });
    let mut bound = Vec::new();
    for spec in listeners {
        bound.push(listener::Listener::from_spec(spec)?);
    }
    let ex = Rc::new(async_executor::LocalExecutor::new());
    let signal_error = Rc::new(Cell::new(false));
    let main = {
        let ex2 = ex.clone();
        let shared = shared.clone();
        let signal_error = signal_error.clone();
        async move {
            let mut accept_tasks = Vec::new();
            for l in bound {
                shared.service.log_info(&format!(
                    "listening on {} ({})",
                    l.display,
                    l.protocol.name()
                ));
                accept_tasks.push(ex2.spawn(listener::accept_loop(l, shared.clone(), ex2.clone())));
            }
            if let Some(fd) = wakeup_fd {
                let shared = shared.clone();
                let signal_error = signal_error.clone();
                ex2.spawn(async move {
                    if let Err(e) = watch_signals(fd, &shared).await {
                        shared
                            .service
                            .log_error(&format!("signal wakeup fd failed: {e}"));
                    } else {
                        signal_error.set(true);
                        shared.control.stop(false);
                    }
                })
                .detach();
            }
            let date_task = {
                let shared = shared.clone();
                ex2.spawn(async move {
                    loop {
                        Timer::after(Duration::from_millis(500)).await;
                        shared.date.refresh();
                    }
                })
            };
            // One timer for every connection's wait for input (see `conn::Kick::deadline`):
            // deadlines hold to within a tenth of the shortest of those timeouts (at most 100 ms).
            let sweep_task = {
                let shared = shared.clone();
                let tick = (shared
                    .config
                    .keepalive_timeout
                    .min(shared.config.header_timeout)
                    / 10)
                    .clamp(Duration::from_millis(10), Duration::from_millis(100));
                ex2.spawn(async move {
                    let mut timer = Timer::interval(tick);
                    // async-io's helper thread names itself once running: look for it from here.
                    let mut helper_demoted = false;
                    loop {
                        futures_lite::StreamExt::next(&mut timer).await;
                        shared.waiting.borrow().expire(Instant::now());
                        if !helper_demoted {
                            helper_demoted = demote_reactor_helper();
                        }
                    }
                })
            };
            shared.control.wait_state(1).await;
            // Graceful: stop accepting (dropping the tasks closes our copies of the listening
            // sockets), close idle keep-alive connections, let in-flight requests finish.
            drop(accept_tasks);
            shared.waiting.borrow_mut().kick_all_idle();
            let deadline = Instant::now() + shared.config.graceful_timeout;
            let drained = async {
                while shared.open.get() > 0 {
                    let l = shared.all_closed.listen();
                    if shared.open.get() == 0 {
                        break;
                    }
                    l.await;
                }
                true
            };
            let quick = async {
                futures_lite::future::or(
                    async {
                        shared.control.wait_state(2).await;
                    },
                    async {
                        Timer::at(deadline).await;
                    },
                )
                .await;
                false
            };
            let finished = futures_lite::future::or(drained, quick).await;
            if !finished && shared.open.get() > 0 {
                shared.service.log_error(&format!(
                    "stopping with {} connection(s) still open",
                    shared.open.get()
                ));
            }
            drop(date_task);
            drop(sweep_task);
        }
    };
    let task = ex.spawn(main);
    async_io::block_on(Turns {
        service: &shared.service,
        inner: Box::pin(ex.run(task)),
    });
    // Dropping the executor cancels every remaining connection task (their responders see `abort`).
    drop(ex);
    let reason = if signal_error.get() {
        StopReason::SignalError
    } else if shared.max_reached.get() {
        StopReason::MaxRequests
    } else if shared.control.state() >= 2 {
        StopReason::Quick
    } else {
        StopReason::Stopped
    };
    Ok(reason)
}

/// async-io starts a helper thread, "async-io", that polls the reactor whenever it finds the
/// reactor's lock free for a while. This loop holds that lock only while it waits for I/O; while it
/// runs a turn of tasks the lock is free, and a turn of 64 busy connections lasts longer than the
/// helper's first back-off (50 us). Once the helper has polled, it keeps finding the lock free
/// between our turns and goes on polling: every turn then costs a futex hand-off and two context
/// switches, and the loop's own batching is lost (measured: the helper made 15k of 16k epoll
/// waits and 18k futex calls in 2.5 s, and keep-alive hello world fell from 108k to 73k req/s).
/// Lowered to SCHED_IDLE, it only runs when its CPU has nothing else to do, which is when this
/// loop sleeps in epoll holding the lock, so it no longer competes. Best effort, Linux only; true
/// once done (or impossible).
fn demote_reactor_helper() -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return true;
    };
    for task in tasks.flatten() {
        let is_helper = std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|name| name.trim_end() == "async-io");
        let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
        if let (true, Some(tid)) = (is_helper, tid) {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: a valid parameter block for a thread of this process; failure changes
            // nothing.
            unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) };
            return true;
        }
    }
    false
}

/// Read the signal wakeup pipe; returns Ok(()) when a handler asked to stop (raised).
async fn watch_signals<S: Service>(fd: RawFd, shared: &Rc<Shared<S>>) -> std::io::Result<()> {
    use std::os::fd::{BorrowedFd, FromRawFd};
    // Our own descriptor: Python keeps its end.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    let file = unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(owned)) };
    let pipe = async_io::Async::new(file)?;
    let mut buf = [0u8; 64];
    loop {
        let n = pipe
            .read_with(|f| std::io::Read::read(&mut &*f, &mut buf))
            .await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        if !shared.service.check_signals() {
            return Ok(());
        }
    }
}

/// Count a finished request; true when max_requests was just reached.
pub(crate) fn count_request<S: Service>(shared: &Shared<S>) {
    let n = shared.control.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let max = shared.config.max_requests;
    if max > 0 && n >= max && !shared.max_reached.get() {
        shared.max_reached.set(true);
        shared.control.stop(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_matches_std_formatting() {
        for (addr, ip, port) in [
            ("127.0.0.1:8080", "127.0.0.1", "8080"),
            ("10.255.0.3:65535", "10.255.0.3", "65535"),
            ("0.0.0.0:0", "0.0.0.0", "0"),
            ("[::ffff:1.2.3.4]:9", "1.2.3.4", "9"),
            ("[::1]:443", "::1", "443"),
            ("[2001:db8::7]:80", "2001:db8::7", "80"),
        ] {
            let a: SocketAddr = addr.parse().unwrap();
            let info = ConnInfo::new(Protocol::Http, Some(a), None);
            assert_eq!((info.peer_ip.as_str(), info.peer_port.as_str()), (ip, port));
        }
        let unix = ConnInfo::new(Protocol::Http, None, None);
        assert_eq!((unix.peer_ip.as_str(), unix.peer_port.as_str()), ("", ""));
    }
}
