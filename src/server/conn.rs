//! One connection's state machine. This is the only place that decides what happens on a
//! connection, for both protocols.
//!
//! Theory of operation (HTTP): the task owns a read buffer `buf` whose unparsed part is
//! `buf[pos..]`, and a write buffer `wbuf`. It parses as many complete request heads as the buffer
//! holds, answering each in turn into `wbuf`; it writes `wbuf` only when it must wait for more
//! input (so pipelined responses leave in one write), when a response streams, or when `wbuf`
//! grows large. A request with a body lends the bytes after its head to a [`BodyState`] for the
//! length of the call (small bodies are read ahead here, asynchronously, large ones are read by
//! `wsgi.input` on demand) and gets back what follows the body: the next pipelined request.
//! Waiting for a head is bounded by the header timeout (from accept or from the previous
//! response) or, while no byte of the next request has arrived, the keep-alive timeout; the wait
//! also ends when the connection is "kicked" (graceful stop, or shed at the connection cap).
//!
//! uwsgi: one packet (vars then exactly CONTENT_LENGTH body bytes), one response, close: nginx
//! never reuses uwsgi connections.

use std::cell::Cell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Timer;
use event_listener::Event;
use velocior_protocol::http1::{self, BodyKind, Version};
use velocior_protocol::response::canned_response;
use velocior_protocol::{uwsgi, Status};

use super::body::{Body, BodyState};
use super::stream::Stream;
use super::{
    count_request, ConnInfo, Dispatch, Piece, Protocol, Request, RequestKind, Responder, Service,
    Shared, Step, WireProtocol,
};

/// Flush the write buffer once it holds this much, even mid-batch.
const WBUF_FLUSH: usize = 64 * 1024;
/// An unread request body up to this size is drained to keep the connection; a larger one closes it.
const DRAIN_LIMIT: u64 = 256 * 1024;
/// First size of a connection's read buffer; it doubles when a head needs more.
const READ_SIZE: usize = 4 * 1024;
/// How long an idle keep-alive connection may still deliver a request once a graceful stop began.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Connection phase, as seen by the shedding logic.
const BUSY: u8 = 0;
const IDLE: u8 = 1;
const READING_HEAD: u8 = 2;

pub(crate) struct Kick {
    phase: Cell<u8>,
    kicked: Cell<bool>,
    /// When the connection's current wait for input ends (none while it is not waiting). The
    /// loop's sweeper (`expire`) enforces it: a timer of its own per wait would cost a reactor
    /// wakeup (an eventfd write, read and re-arm) each time a keep-alive connection goes idle.
    deadline: Cell<Option<Instant>>,
    expired: Cell<bool>,
    event: Event,
}

impl Kick {
    pub fn idle(&self) -> bool {
        self.phase.get() == IDLE
    }
    pub fn kicked(&self) -> bool {
        self.kicked.get() || self.phase.get() == BUSY
    }
    pub fn kick(&self) {
        self.kicked.set(true);
        self.event.notify(usize::MAX);
    }
    /// End the current wait with a timeout if its deadline is `now` or earlier.
    pub fn expire(&self, now: Instant) {
        if matches!(self.deadline.get(), Some(d) if d <= now) {
            self.deadline.set(None);
            self.expired.set(true);
            self.event.notify(usize::MAX);
        }
    }
}

/// Keeps the open-connection count and the shedding registry right on every exit path.
pub(crate) struct ConnGuard<S: Service> {
    shared: Rc<Shared<S>>,
    kick: Rc<Kick>,
    id: u64,
}

impl<S: Service> Drop for ConnGuard<S> {
    fn drop(&mut self) {
        self.shared.waiting.borrow_mut().remove(self.id);
        let n = self.shared.open.get() - 1;
        self.shared.open.set(n);
        if n == 0 {
            self.shared.all_closed.notify(usize::MAX);
        }
    }
}

enum Wait {
    Data,
    Eof,
    Kicked,
    TimedOut,
}

/// Count a connection just accepted and enter it in the shedding registry, before its task
/// first runs: a graceful stop waits for it, and a burst of accepts over the connection cap can
/// shed it (otherwise connections accepted in the same burst could not be shed, and a client
/// arriving with them would be refused while silent ones hold every slot).
pub(crate) fn register<S: Service>(shared: &Rc<Shared<S>>) -> ConnGuard<S> {
    let kick = Rc::new(Kick {
        phase: Cell::new(READING_HEAD),
        kicked: Cell::new(false),
        deadline: Cell::new(None),
        expired: Cell::new(false),
        event: Event::new(),
    });
    let id = shared.waiting.borrow_mut().add(kick.clone());
    shared.open.set(shared.open.get() + 1);
    ConnGuard {
        shared: shared.clone(),
        kick,
        id,
    }
}

/// One connection, from accept to close; `guard` is its entry made by `register`.
pub(crate) async fn run<S: Service>(stream: Stream, info: ConnInfo, guard: ConnGuard<S>) {
    let stream = Arc::new(stream);
    let mut c = Conn {
        shared: &guard.shared,
        kick: &guard.kick,
        stream,
        info,
        buf: Vec::with_capacity(READ_SIZE),
        pos: 0,
        wbuf: Vec::new(),
    };
    let r = match c.info.protocol {
        Protocol::Http => c.http().await,
        Protocol::Uwsgi => c.uwsgi().await,
    };
    if let Err(e) = r {
        // Client-side failures (resets, timeouts) are routine; they are logged at debug level by
        // the service when it matters (a response cut short).
        let _ = e;
    }
    drop(c);
    drop(guard);
}

struct Conn<'a, S: Service> {
    shared: &'a Rc<Shared<S>>,
    kick: &'a Rc<Kick>,
    stream: Arc<Stream>,
    info: ConnInfo,
    buf: Vec<u8>,
    pos: usize,
    wbuf: Vec<u8>,
}

impl<S: Service> Conn<'_, S> {
    async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            let r = self
                .stream
                .write_all(&self.wbuf, self.shared.config.write_timeout)
                .await;
            self.wbuf.clear();
            r?;
        }
        Ok(())
    }

    /// Write the output buffer and then `more`, in one vectored write where possible.
    async fn flush_with(&mut self, more: &[u8]) -> io::Result<()> {
        let wt = self.shared.config.write_timeout;
        if self.wbuf.is_empty() {
            return self.stream.write_all(more, wt).await;
        }
        let r = self.stream.write_all2(&self.wbuf, more, wt).await;
        self.wbuf.clear();
        r
    }

    /// Make room and read more request bytes, waiting until `deadline` at most (enforced by the
    /// loop's sweeper, to within its tick). `try_first`: attempt the read before waiting (skipped
    /// right after a response, when the client cannot have sent the next request yet: that read
    /// would only say EAGAIN).
    async fn wait_input(&mut self, deadline: Instant, try_first: bool) -> io::Result<Wait> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(self.buf.capacity().max(READ_SIZE));
        }
        let kick = self.kick;
        kick.expired.set(false);
        let mut attempt = try_first;
        let w = loop {
            if kick.kicked.get() {
                break Wait::Kicked;
            }
            if attempt {
                match self.stream.try_read_spare(&mut self.buf, usize::MAX) {
                    Ok(0) => break Wait::Eof,
                    Ok(_) => break Wait::Data,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        kick.deadline.set(None);
                        return Err(e);
                    }
                }
            }
            attempt = true;
            if kick.expired.get() || Instant::now() >= deadline {
                break Wait::TimedOut;
            }
            kick.deadline.set(Some(deadline));
            let listener = kick.event.listen();
            if kick.kicked.get() {
                break Wait::Kicked;
            }
            let ready = async { self.stream.readable().await.map(|_| false) };
            let other = async {
                listener.await;
                Ok(true)
            };
            match futures_lite::future::or(ready, other).await {
                Ok(false) => {}
                Ok(true) if kick.expired.get() => break Wait::TimedOut,
                Ok(true) => {}
                Err(e) => {
                    kick.deadline.set(None);
                    return Err(e);
                }
            }
        };
        kick.deadline.set(None);
        Ok(w)
    }

    /// The body of the request whose head ends at `head_end`, starting with the bytes already
    /// read after the head (copied: the head stays in `buf` for the length of the call).
    fn body_state(&self, kind: BodyKind, head_end: usize) -> BodyState {
        let cfg = &self.shared.config;
        let rest = self.buf[head_end..].to_vec();
        match kind {
            BodyKind::Chunked => {
                BodyState::chunked(self.stream.clone(), rest, 0, &cfg.limits, cfg.body_timeout)
                    .with_max(cfg.max_body_size)
            }
            BodyKind::Length(n) => {
                BodyState::length(self.stream.clone(), rest, 0, n, cfg.body_timeout)
            }
            BodyKind::None => BodyState::length(self.stream.clone(), rest, 0, 0, cfg.body_timeout),
        }
    }

    /// Stopping gracefully, on an idle keep-alive connection: our last response promised to keep
    /// the connection, so the client may be sending its next request right now. Give it a moment
    /// (at most STOP_GRACE) instead of closing under it; a request that comes is answered with
    /// `Connection: close`. True when request bytes arrived.
    async fn last_request_grace(&mut self) -> io::Result<bool> {
        self.kick.kicked.set(false);
        let grace = STOP_GRACE.min(self.shared.config.keepalive_timeout);
        Ok(matches!(
            self.wait_input(Instant::now() + grace, true).await?,
            Wait::Data
        ))
    }

    /// Answer a protocol error with its canned response and close.
    async fn reject(&mut self, status: u16, what: &str) -> io::Result<()> {
        let peer = self
            .info
            .peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unix socket".into());
        self.shared
            .service
            .log_error(&format!("{what} from {peer}: answered {status}, closing"));
        self.wbuf.extend_from_slice(canned_response(status));
        self.flush().await?;
        self.close_gracefully().await;
        Ok(())
    }

    /// Shut down our side, then discard what the client still sends for a short while, so the
    /// kernel does not answer unread bytes with a reset that would destroy our last response.
    async fn close_gracefully(&mut self) {
        self.stream.shutdown_write();
        let deadline = Instant::now() + Duration::from_secs(2);
        // On the heap: an array here would sit in every connection future, copied on each spawn.
        let mut sink = vec![0u8; 4096];
        let mut budget: usize = 1 << 20;
        while budget > 0 {
            let r = futures_lite::future::or(
                async {
                    self.stream
                        .read(&mut sink, Duration::from_secs(2), "closing")
                        .await
                },
                async {
                    Timer::at(deadline).await;
                    Ok(0)
                },
            )
            .await;
            match r {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    }

    async fn http(&mut self) -> io::Result<()> {
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let mut headers = Vec::with_capacity(32);
        // When the current wait for a head began; taken lazily (a pipelined request never waits).
        let mut started = Some(Instant::now());
        let mut first = true;
        let mut just_answered = false;
        loop {
            // 1. A complete request head.
            // Parse again only when new bytes hold a LF (a head can only end on one) or the
            // buffer outgrew the head limit: a client sending a byte at a time costs O(n), not
            // a re-parse of the whole buffer per byte.
            let mut parse_needed = true;
            let head = loop {
                if parse_needed && self.pos < self.buf.len() {
                    match http1::parse_request_head(
                        &self.buf[self.pos..],
                        &cfg.limits,
                        &mut headers,
                    ) {
                        Ok(Status::Complete(h)) => break h,
                        Ok(Status::Partial) => {}
                        Err(e) => {
                            return self
                                .reject(e.kind.status(), &format!("bad request ({e})"))
                                .await
                        }
                    }
                }
                self.flush().await?;
                let idle = self.pos == self.buf.len();
                let just_answered = std::mem::take(&mut just_answered);
                if idle && !first && shared.control.state() >= 1 {
                    if self.last_request_grace().await? {
                        parse_needed = true;
                        continue;
                    }
                    return Ok(());
                }
                self.kick
                    .phase
                    .set(if idle && !first { IDLE } else { READING_HEAD });
                let limit = if idle && !first {
                    cfg.keepalive_timeout
                } else {
                    cfg.header_timeout
                };
                let since = *started.get_or_insert_with(Instant::now);
                // wait_input moves the unparsed bytes to the front: new ones follow them.
                let had = self.buf.len() - self.pos;
                match self
                    .wait_input(since + limit, !(idle && just_answered))
                    .await?
                {
                    Wait::Data => {
                        parse_needed = self.buf[had..].contains(&b'\n')
                            || self.buf.len() > cfg.limits.max_head_bytes;
                    }
                    Wait::Kicked if idle && !first && shared.control.state() >= 1 => {
                        if self.last_request_grace().await? {
                            parse_needed = true;
                            continue;
                        }
                        return Ok(());
                    }
                    Wait::Eof | Wait::Kicked => return Ok(()),
                    Wait::TimedOut => {
                        if !idle {
                            return self.reject(408, "request head timed out").await;
                        }
                        return Ok(());
                    }
                }
            };
            self.kick.phase.set(BUSY);
            let head_start = self.pos;
            let head_end = head_start + head.head_len;
            let hbuf = &self.buf[head_start..head_end];
            let framing = match http1::request_framing(&head, hbuf, &headers) {
                Ok(f) => f,
                Err(e) => {
                    return self
                        .reject(e.kind.status(), &format!("bad request ({e})"))
                        .await
                }
            };
            if let Err(e) = http1::check_host(&head, hbuf, &headers) {
                // The message itself is well framed: take in its (small) body first, so that a
                // truncated message is never answered and the 400 is not sent mid-upload.
                if framing.body != BodyKind::None && !framing.expect_continue {
                    let mut st = self.body_state(framing.body, head_end);
                    if !matches!(st.drain(DRAIN_LIMIT).await, Ok(true)) {
                        return Ok(());
                    }
                }
                return self
                    .reject(e.kind.status(), &format!("bad request ({e})"))
                    .await;
            }
            let mut keep_alive = framing.keep_alive && shared.control.state() == 0;
            let wire = if head.version == Version::Http11 {
                WireProtocol::Http11
            } else {
                WireProtocol::Http10
            };

            // 2. The body: lend it the bytes after the head.
            if let BodyKind::Length(n) = framing.body {
                if cfg.max_body_size > 0 && n > cfg.max_body_size {
                    return self
                        .reject(
                            413,
                            &format!("request body of {n} bytes over --max-body-size"),
                        )
                        .await;
                }
            }
            let body = match framing.body {
                BodyKind::None | BodyKind::Length(0) => None,
                kind => {
                    let mut st = self.body_state(kind, head_end);
                    self.buf.truncate(head_end);
                    if framing.expect_continue && !st.fully_buffered() {
                        st.set_continue_pending(true);
                    } else if let Err(e) = st.preload(cfg.max_body_in_memory).await {
                        if e.kind() == io::ErrorKind::FileTooLarge {
                            return self
                                .reject(413, &format!("request body too large ({e})"))
                                .await;
                        }
                        if e.kind() == io::ErrorKind::InvalidData {
                            return self.reject(400, &format!("bad request body ({e})")).await;
                        }
                        return Err(e);
                    }
                    Some(Body::new(st))
                }
            };

            // 3. The response.
            let hbuf = &self.buf[head_start..head_end];
            let req = Request {
                buf: hbuf,
                date: shared.date.get(),
                kind: RequestKind::Http {
                    head: &head,
                    headers: &headers,
                },
                conn: &self.info,
                keep_alive,
            };
            let ok = if cfg.native_response {
                native_response(&shared, &req, wire, &mut self.wbuf);
                true
            } else {
                match dispatch_guarded(&shared, &req, wire, body.clone(), &mut self.wbuf) {
                    Some(d) => match self.drive(d).await {
                        Some(ka) => {
                            keep_alive &= ka;
                            true
                        }
                        None => false,
                    },
                    None => {
                        let _ = self.flush().await;
                        false
                    }
                }
            };
            count_request(&shared);
            if !ok {
                return Ok(());
            }

            // 4. Take the buffer back; what follows the body is the next request.
            let mut body_done = true;
            match body {
                None => self.pos = head_end,
                Some(b) => {
                    let mut st = b.reclaim();
                    if !st.finished() {
                        let small = st.remaining_hint().is_some_and(|n| n <= DRAIN_LIMIT);
                        if !keep_alive || !small || !st.drain(DRAIN_LIMIT).await.unwrap_or(false) {
                            keep_alive = false;
                        }
                    }
                    body_done = st.finished();
                    let (rest, rpos) = st.into_leftover();
                    // The head stays where it was: drop it and continue with the leftover.
                    self.buf.clear();
                    self.buf.extend_from_slice(&rest[rpos..]);
                    self.pos = 0;
                }
            }
            if !keep_alive {
                self.flush().await?;
                // With nothing unread, a plain close sends FIN after the response. Bytes already
                // here (pipelined after `Connection: close`, an unread body) would make the
                // kernel send a reset that can destroy the response: linger for those.
                if self.pos < self.buf.len() || !body_done {
                    self.close_gracefully().await;
                }
                return Ok(());
            }
            if self.wbuf.len() >= WBUF_FLUSH {
                self.flush().await?;
            }
            started = None;
            first = false;
            just_answered = true;
        }
    }

    async fn uwsgi(&mut self) -> io::Result<()> {
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let started = Instant::now();
        let mut vars = Vec::with_capacity(32);
        let head = loop {
            if !self.buf.is_empty() {
                match uwsgi::parse(&self.buf, &cfg.limits, &mut vars) {
                    Ok(Status::Complete(h)) => break h,
                    Ok(Status::Partial) => {}
                    Err(e) => {
                        return self
                            .reject(e.kind.status(), &format!("malformed uwsgi packet ({e})"))
                            .await
                    }
                }
            }
            match self.wait_input(started + cfg.header_timeout, true).await? {
                Wait::Data => {}
                Wait::Eof | Wait::Kicked => return Ok(()),
                Wait::TimedOut => {
                    shared
                        .service
                        .log_error("uwsgi packet not received in time: closing");
                    return Ok(());
                }
            }
        };
        self.kick.phase.set(BUSY);
        let head_end = head.head_len;
        if cfg.max_body_size > 0 && head.content_length > cfg.max_body_size {
            let n = head.content_length;
            return self
                .reject(
                    413,
                    &format!("uwsgi request body of {n} bytes over --max-body-size"),
                )
                .await;
        }
        let body = if head.content_length > 0 {
            let rest = self.buf[head_end..].to_vec();
            self.buf.truncate(head_end);
            let mut st = BodyState::length(
                self.stream.clone(),
                rest,
                0,
                head.content_length,
                cfg.body_timeout,
            );
            st.preload(cfg.max_body_in_memory).await?;
            Some(Body::new(st))
        } else {
            None
        };
        let req = Request {
            buf: &self.buf[..head_end],
            date: shared.date.get(),
            kind: RequestKind::Uwsgi { vars: &vars },
            conn: &self.info,
            keep_alive: false,
        };
        let ok = if cfg.native_response {
            native_response(&shared, &req, WireProtocol::Uwsgi, &mut self.wbuf);
            true
        } else {
            match dispatch_guarded(
                &shared,
                &req,
                WireProtocol::Uwsgi,
                body.clone(),
                &mut self.wbuf,
            ) {
                Some(d) => self.drive(d).await.is_some(),
                None => {
                    let _ = self.flush().await;
                    false
                }
            }
        };
        count_request(&shared);
        if ok {
            self.flush().await?;
            // With the whole packet read, closing sends a plain FIN. With body bytes still unread
            // the kernel would answer them with a reset, which can destroy the response in
            // flight: shut down our side first and discard the rest for a moment.
            if body.is_some_and(|b| !b.reclaim().finished()) {
                self.close_gracefully().await;
            }
        }
        Ok(())
    }

    /// Write out a response. Some(keep_alive) when it completed, None when the connection failed.
    async fn drive<R: Responder>(&mut self, d: Dispatch<R>) -> Option<bool> {
        let wt = self.shared.config.write_timeout;
        match d {
            Dispatch::Inline(mut r) => loop {
                let step = catch_unwind(AssertUnwindSafe(|| r.next(&mut self.wbuf)));
                let Ok(step) = step else {
                    self.shared.service.log_error(
                        "internal error (panic) while sending a response: closing the connection",
                    );
                    return None;
                };
                match step {
                    Step::Done { keep_alive } => return Some(keep_alive),
                    Step::Data => {
                        if self.flush().await.is_err() {
                            r.abort();
                            return None;
                        }
                    }
                    Step::Bytes(b) => {
                        if self.flush_with((*b).as_ref()).await.is_err() {
                            r.abort();
                            return None;
                        }
                    }
                    Step::File { file, offset, len } => {
                        let sent = match self.flush().await {
                            Ok(()) => self.stream.sendfile(&file, offset, len, wt).await,
                            Err(e) => Err(e),
                        };
                        if !matches!(sent, Ok(n) if n == len) {
                            r.abort();
                            return None;
                        }
                    }
                    Step::Abort => {
                        let _ = self.flush().await;
                        return None;
                    }
                }
            },
            Dispatch::Remote(rx) => loop {
                let piece = rx.recv().await;
                let failed = match piece {
                    Ok(Piece::Done { keep_alive }) => return Some(keep_alive),
                    Ok(Piece::Data(v)) => self.flush_with(&v).await.is_err(),
                    Ok(Piece::Bytes(b)) => self.flush_with((*b).as_ref()).await.is_err(),
                    Ok(Piece::File { file, offset, len }) => match self.flush().await {
                        Ok(()) => {
                            !matches!(self.stream.sendfile(&file, offset, len, wt).await, Ok(n) if n == len)
                        }
                        Err(_) => true,
                    },
                    Ok(Piece::Abort) | Err(_) => {
                        let _ = self.flush().await;
                        return None;
                    }
                };
                if failed {
                    // Dropping the receiver tells the producing thread to stop and close().
                    return None;
                }
            },
        }
    }
}

/// Call the service. A panic there is a bug of ours: it is contained to this request (500, then
/// the connection closes) instead of unwinding through the loop and stopping the worker.
fn dispatch_guarded<S: Service>(
    shared: &Shared<S>,
    req: &Request<'_>,
    wire: WireProtocol,
    body: Option<Body>,
    out: &mut Vec<u8>,
) -> Option<Dispatch<S::Responder>> {
    let start = out.len();
    match catch_unwind(AssertUnwindSafe(|| {
        shared.service.dispatch(req, wire, body, out)
    })) {
        Ok(d) => Some(d),
        Err(_) => {
            shared.service.log_error(
                "internal error (panic) while handling a request: answered 500, closing",
            );
            out.truncate(start);
            out.extend_from_slice(canned_response(500));
            None
        }
    }
}

/// The benchmark floor: a fixed answer, no Python.
fn native_response<S: Service>(
    shared: &Shared<S>,
    req: &Request<'_>,
    wire: WireProtocol,
    out: &mut Vec<u8>,
) {
    let head_only = req.is_head();
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: ",
    );
    out.extend_from_slice(&req.date);
    if let Some(s) = &shared.config.server_header {
        out.extend_from_slice(b"\r\nServer: ");
        out.extend_from_slice(s);
    }
    match (wire, req.keep_alive) {
        (WireProtocol::Http10, true) => out.extend_from_slice(b"\r\nConnection: keep-alive"),
        (WireProtocol::Uwsgi, _) => {}
        (_, false) => out.extend_from_slice(b"\r\nConnection: close"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(b"Hello, World!");
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;

    use event_listener::Event;

    use super::*;
    use crate::server::{date::DateCache, Config, Control};

    struct Boom {
        logged: RefCell<Vec<String>>,
    }

    struct NoResponder;

    impl Responder for NoResponder {
        fn next(&mut self, _out: &mut Vec<u8>) -> Step {
            Step::Done { keep_alive: false }
        }
        fn abort(&mut self) {}
    }

    impl Service for Boom {
        type Responder = NoResponder;
        fn dispatch(
            &self,
            _req: &Request<'_>,
            _wire: WireProtocol,
            _body: Option<Body>,
            out: &mut Vec<u8>,
        ) -> Dispatch<NoResponder> {
            out.extend_from_slice(b"half a head");
            panic!("a bug in the service");
        }
        fn log_error(&self, msg: &str) {
            self.logged.borrow_mut().push(msg.to_string());
        }
        fn log_info(&self, _msg: &str) {}
        fn check_signals(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_panicking_service_gives_500_not_a_dead_worker() {
        let shared = Shared {
            service: Boom {
                logged: RefCell::new(Vec::new()),
            },
            config: Config::default(),
            control: Arc::new(Control::default()),
            date: DateCache::new(),
            open: Cell::new(0),
            waiting: RefCell::new(Default::default()),
            all_closed: Event::new(),
            max_reached: Cell::new(false),
        };
        let info = ConnInfo::new(Protocol::Uwsgi, None, None);
        let req = Request {
            buf: b"",
            date: shared.date.get(),
            kind: RequestKind::Uwsgi { vars: &[] },
            conn: &info,
            keep_alive: false,
        };
        let mut out = b"earlier response;".to_vec();
        let d = dispatch_guarded(&shared, &req, WireProtocol::Uwsgi, None, &mut out);
        assert!(d.is_none());
        let mut want = b"earlier response;".to_vec();
        want.extend_from_slice(canned_response(500));
        assert_eq!(out, want);
        assert!(shared.service.logged.borrow()[0].contains("panic"));
    }
}
