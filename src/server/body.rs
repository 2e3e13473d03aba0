//! A request body as the application sees it through `wsgi.input`.
//!
//! The connection's read buffer moves into the body for the length of one request: bytes already
//! buffered are served from memory, more are read from the socket only when the application asks
//! for them (that is the back-pressure: an upload is never forced whole into memory). Small bodies
//! are read ahead by the connection task before the app is called (`preload`), so the common case
//! never blocks the loop thread. After the response the connection takes the buffer back, with
//! whatever follows the body (a pipelined request).

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use velocior_protocol::http1::{Chunk, ChunkedDecoder};
use velocior_protocol::Limits;

use super::stream::Stream;

const READ_CHUNK: usize = 64 * 1024;

/// Where body bytes are delivered: a growing `Vec`, or a buffer of fixed size being filled.
pub trait Sink {
    fn put(&mut self, data: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, data: &[u8]) {
        self.extend_from_slice(data);
    }
}

/// A fixed buffer, possibly uninitialised, filled from the front (callers never ask for more
/// than it has room for).
pub struct Fill<'a> {
    pub buf: &'a mut [std::mem::MaybeUninit<u8>],
    pub len: usize,
}

impl Sink for Fill<'_> {
    fn put(&mut self, data: &[u8]) {
        for (dst, &b) in self.buf[self.len..self.len + data.len()]
            .iter_mut()
            .zip(data)
        {
            dst.write(b);
        }
        self.len += data.len();
    }
}
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

enum Kind {
    Length {
        remaining: u64,
    },
    Chunked {
        dec: Box<ChunkedDecoder>,
        done: bool,
        decoded: Vec<u8>,
        dpos: usize,
    },
}

pub struct BodyState {
    stream: Arc<Stream>,
    /// Raw bytes from the socket; `buf[pos..]` not yet consumed.
    buf: Vec<u8>,
    pos: usize,
    kind: Kind,
    timeout: Duration,
    continue_pending: bool,
    /// Bytes handed to the application so far.
    delivered: u64,
    /// Largest chunked body accepted (0: no limit); Content-Length is checked before.
    max: u64,
}

/// A shareable handle (the connection keeps one, `wsgi.input` holds another).
#[derive(Clone)]
pub struct Body(Arc<Mutex<BodyState>>);

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl BodyState {
    pub fn length(
        stream: Arc<Stream>,
        buf: Vec<u8>,
        pos: usize,
        len: u64,
        timeout: Duration,
    ) -> Self {
        BodyState {
            stream,
            buf,
            pos,
            kind: Kind::Length { remaining: len },
            timeout,
            continue_pending: false,
            delivered: 0,
            max: 0,
        }
    }

    pub fn with_max(mut self, max: u64) -> Self {
        self.max = max;
        self
    }

    pub fn chunked(
        stream: Arc<Stream>,
        buf: Vec<u8>,
        pos: usize,
        limits: &Limits,
        timeout: Duration,
    ) -> Self {
        BodyState {
            stream,
            buf,
            pos,
            kind: Kind::Chunked {
                dec: Box::new(ChunkedDecoder::new(limits)),
                done: false,
                decoded: Vec::new(),
                dpos: 0,
            },
            timeout,
            continue_pending: false,
            delivered: 0,
            max: 0,
        }
    }

    pub fn set_continue_pending(&mut self, v: bool) {
        self.continue_pending = v;
    }

    pub fn continue_pending(&self) -> bool {
        self.continue_pending
    }

    /// All of the body has been handed out.
    pub fn finished(&self) -> bool {
        match &self.kind {
            Kind::Length { remaining } => *remaining == 0,
            Kind::Chunked {
                done,
                decoded,
                dpos,
                ..
            } => *done && *dpos >= decoded.len(),
        }
    }

    /// All of the body is buffered (the app can read it without I/O).
    pub fn fully_buffered(&self) -> bool {
        match &self.kind {
            Kind::Length { remaining } => (self.buf.len() - self.pos) as u64 >= *remaining,
            Kind::Chunked { done, .. } => *done,
        }
    }

    /// Bytes held in memory: raw from the socket plus decoded and not yet handed out.
    fn buffered_len(&self) -> usize {
        let decoded = match &self.kind {
            Kind::Chunked { decoded, dpos, .. } => decoded.len() - dpos,
            Kind::Length { .. } => 0,
        };
        self.buf.len() - self.pos + decoded
    }

    /// Bytes of body that have not reached the app yet, when known.
    pub fn remaining_hint(&self) -> Option<u64> {
        match &self.kind {
            Kind::Length { remaining } => Some(*remaining),
            Kind::Chunked {
                done: true,
                decoded,
                dpos,
                ..
            } => Some((decoded.len() - dpos) as u64),
            Kind::Chunked { .. } => None,
        }
    }

    /// Decode what is buffered (chunked); returns bytes of body now ready without I/O.
    fn decode_buffered(&mut self) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Length { remaining } => {
                Ok(((self.buf.len() - self.pos) as u64).min(*remaining) as usize)
            }
            Kind::Chunked {
                dec,
                done,
                decoded,
                dpos,
            } => {
                if *dpos > 0 && *dpos == decoded.len() {
                    decoded.clear();
                    *dpos = 0;
                }
                while !*done && self.pos < self.buf.len() {
                    let input = &self.buf[self.pos..];
                    let (used, ev) = dec
                        .decode(input)
                        .map_err(|e| invalid(format!("bad chunked body: {e}")))?;
                    match ev {
                        Chunk::Data(r) => decoded.extend_from_slice(&input[r]),
                        Chunk::End => *done = true,
                        Chunk::NeedMore => {
                            self.pos += used;
                            break;
                        }
                    }
                    self.pos += used;
                }
                let ready = decoded.len() - *dpos;
                if self.max > 0 && self.delivered + ready as u64 > self.max {
                    return Err(io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        format!(
                            "the chunked request body exceeds --max-body-size ({} bytes)",
                            self.max
                        ),
                    ));
                }
                Ok(ready)
            }
        }
    }

    /// Move up to `max` buffered body bytes to `out` without I/O.
    fn take_buffered(&mut self, max: usize, out: &mut impl Sink) -> io::Result<usize> {
        let ready = self.decode_buffered()?.min(max);
        match &mut self.kind {
            Kind::Length { remaining } => {
                out.put(&self.buf[self.pos..self.pos + ready]);
                self.pos += ready;
                *remaining -= ready as u64;
            }
            Kind::Chunked { decoded, dpos, .. } => {
                out.put(&decoded[*dpos..*dpos + ready]);
                *dpos += ready;
            }
        }
        self.delivered += ready as u64;
        Ok(ready)
    }

    fn make_room(&mut self) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= READ_CHUNK) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
    }

    fn read_size(&self) -> usize {
        match &self.kind {
            // Never read past this body: what follows belongs to the next request.
            Kind::Length { remaining } => {
                let have = (self.buf.len() - self.pos) as u64;
                (remaining.saturating_sub(have)).clamp(1, READ_CHUNK as u64) as usize
            }
            Kind::Chunked { .. } => READ_CHUNK,
        }
    }

    /// One blocking read from the socket (sends the 100-continue first when it is owed).
    fn fill_blocking(&mut self) -> io::Result<()> {
        if self.continue_pending {
            self.continue_pending = false;
            self.stream.write_all_blocking(CONTINUE, self.timeout)?;
        }
        self.make_room();
        let want = self.read_size();
        match self
            .stream
            .read_buf_blocking(&mut self.buf, want, self.timeout)
        {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed before the end of the request body",
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Blocking: append up to `max` bytes of body to `out`; Ok(0) only at the end of the body.
    pub fn read(&mut self, max: usize, out: &mut impl Sink) -> io::Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        loop {
            let n = self.take_buffered(max, out)?;
            if n > 0 || self.finished() {
                return Ok(n);
            }
            self.fill_blocking()?;
        }
    }

    /// Blocking: append one line (up to and including b'\n', at most `max` bytes) to `out`.
    pub fn read_line(&mut self, max: usize, out: &mut Vec<u8>) -> io::Result<usize> {
        let start = out.len();
        while out.len() - start < max {
            let ready = self.decode_buffered()?;
            if ready == 0 {
                if self.finished() {
                    break;
                }
                self.fill_blocking()?;
                continue;
            }
            let avail: &[u8] = match &self.kind {
                Kind::Length { .. } => &self.buf[self.pos..self.pos + ready],
                Kind::Chunked { decoded, dpos, .. } => &decoded[*dpos..*dpos + ready],
            };
            let limit = (max - (out.len() - start)).min(avail.len());
            let take = match avail[..limit].iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => limit,
            };
            self.take_buffered(take, out)?;
            if out.last() == Some(&b'\n') {
                break;
            }
        }
        Ok(out.len() - start)
    }

    /// Async: read ahead until the whole body is buffered or `limit` raw bytes are held.
    /// Returns true when the whole body is buffered.
    pub async fn preload(&mut self, limit: usize) -> io::Result<bool> {
        loop {
            self.decode_buffered()?;
            if self.fully_buffered() {
                return Ok(true);
            }
            if self.buffered_len() >= limit {
                return Ok(false);
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed before the end of the request body",
                ));
            }
        }
    }

    /// Async: one read of more body bytes from the socket (never past this body). Ok(0) is EOF.
    async fn fill(&mut self) -> io::Result<usize> {
        self.make_room();
        let want = self.read_size();
        self.stream
            .read_buf(
                &mut self.buf,
                want,
                self.timeout,
                "reading the request body",
            )
            .await
    }

    /// Async: read and discard the rest of the body, up to `limit` bytes. True when it all went.
    pub async fn drain(&mut self, limit: u64) -> io::Result<bool> {
        let mut discarded = 0u64;
        let mut sink = Vec::new();
        loop {
            sink.clear();
            let n = self.take_buffered(READ_CHUNK, &mut sink)?;
            discarded += n as u64;
            if self.finished() {
                return Ok(true);
            }
            if discarded > limit || self.continue_pending {
                // No 100-continue was sent: the client may not send the body at all.
                return Ok(false);
            }
            if n == 0 && self.fill().await? == 0 {
                return Ok(false);
            }
        }
    }

    /// Give back the read buffer: bytes after the body are the start of the next request.
    pub fn into_leftover(self) -> (Vec<u8>, usize) {
        (self.buf, self.pos)
    }

    pub fn take_leftover(&mut self) -> (Vec<u8>, usize) {
        let pos = std::mem::take(&mut self.pos);
        (std::mem::take(&mut self.buf), pos)
    }
}

impl Body {
    pub fn new(state: BodyState) -> Body {
        Body(Arc::new(Mutex::new(state)))
    }

    pub fn lock(&self) -> MutexGuard<'_, BodyState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take the state back when the response is done (the app may still hold `wsgi.input`).
    pub fn reclaim(self) -> BodyState {
        match Arc::try_unwrap(self.0) {
            Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
            Err(arc) => {
                let mut g = arc.lock().unwrap_or_else(|e| e.into_inner());
                let stream = g.stream.clone();
                let (buf, pos) = g.take_leftover();
                let kind = std::mem::replace(&mut g.kind, Kind::Length { remaining: 0 });
                BodyState {
                    stream,
                    buf,
                    pos,
                    kind,
                    timeout: g.timeout,
                    continue_pending: g.continue_pending,
                    delivered: g.delivered,
                    max: g.max,
                }
            }
        }
    }
}
