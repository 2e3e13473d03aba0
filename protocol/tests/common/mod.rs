//! A miniature connection driver used by the corpus replay and the property tests: it plays the
//! server's part (buffer, head, framing, body, keep-alive) using only the crate's public API, so
//! the tests exercise exactly what the server will call.
#![allow(dead_code)]

use velocior_protocol::http1::{
    parse_request_head, request_framing, BodyKind, Chunk, ChunkedDecoder, Header, Version,
};
use velocior_protocol::{ErrorKind, Limits, Status};

#[derive(Clone, PartialEq, Eq)]
pub struct Req {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub path: Vec<u8>,
    pub query: Vec<u8>,
    pub version: &'static str,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// `check_host` verdict (the parser accepts; the server rule may not).
    pub host_error: Option<ErrorKind>,
}

impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |b: &[u8]| {
            let t = String::from_utf8_lossy(b);
            if t.len() > 60 {
                format!(
                    "{}...({} bytes)",
                    t.chars().take(60).collect::<String>(),
                    b.len()
                )
            } else {
                t.into_owned()
            }
        };
        write!(
            f,
            "{} {} {} [",
            s(&self.method),
            s(&self.target),
            self.version
        )?;
        for (n, v) in &self.headers {
            write!(f, "{}: {}; ", s(n), s(v))?;
        }
        write!(f, "] body {:?}", s(&self.body))?;
        if let Some(e) = self.host_error {
            write!(f, " host {e:?}")?;
        }
        Ok(())
    }
}

/// How the byte stream ended for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Every byte was consumed at a request boundary.
    Clean,
    /// The input ended inside a message (head or body).
    Incomplete,
    /// A request said the connection is not reused; the bytes after it were ignored.
    Closed,
    /// A parse or framing error (kind, offset relative to the start of the message/body).
    Error(ErrorKind, usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub requests: Vec<Req>,
    pub end: End,
}

enum St {
    Head,
    Length(Req, u64, bool),
    Chunked(Req, ChunkedDecoder, bool),
    Stopped,
}

pub struct Driver {
    limits: Limits,
    buf: Vec<u8>,
    pos: usize,
    st: St,
    headers: Vec<Header>,
    out: Vec<Req>,
    error: Option<(ErrorKind, usize)>,
}

impl Driver {
    pub fn new(limits: Limits) -> Self {
        Driver {
            limits,
            buf: Vec::new(),
            pos: 0,
            st: St::Head,
            headers: Vec::with_capacity(16),
            out: Vec::new(),
            error: None,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if matches!(self.st, St::Stopped) {
            return;
        }
        self.buf.extend_from_slice(data);
        self.run();
    }

    pub fn finish(self) -> Outcome {
        let end = match (self.error, &self.st) {
            (Some((k, o)), _) => End::Error(k, o),
            (None, St::Stopped) => End::Closed,
            (None, St::Head) if self.pos == self.buf.len() => End::Clean,
            _ => End::Incomplete,
        };
        Outcome {
            requests: self.out,
            end,
        }
    }

    fn fail(&mut self, kind: ErrorKind, offset: usize) {
        self.error = Some((kind, offset));
        self.st = St::Stopped;
    }

    fn done(&mut self, req: Req, keep_alive: bool) {
        self.out.push(req);
        self.st = if keep_alive { St::Head } else { St::Stopped };
    }

    fn run(&mut self) {
        loop {
            match std::mem::replace(&mut self.st, St::Stopped) {
                St::Stopped => return,
                St::Head => {
                    let buf = &self.buf[self.pos..];
                    match parse_request_head(buf, &self.limits, &mut self.headers) {
                        Ok(Status::Partial) => {
                            self.st = St::Head;
                            return;
                        }
                        Err(e) => return self.fail(e.kind, e.offset),
                        Ok(Status::Complete(h)) => {
                            let host_error =
                                velocior_protocol::http1::check_host(&h, buf, &self.headers)
                                    .err()
                                    .map(|e| e.kind);
                            let framing = match request_framing(&h, buf, &self.headers) {
                                Ok(f) => f,
                                Err(e) => return self.fail(e.kind, e.offset),
                            };
                            let req = Req {
                                method: h.method.get(buf).to_vec(),
                                target: h.target.get(buf).to_vec(),
                                path: h.path.get(buf).to_vec(),
                                query: h.query.get(buf).to_vec(),
                                version: match h.version {
                                    Version::Http10 => "HTTP/1.0",
                                    Version::Http11 => "HTTP/1.1",
                                },
                                headers: self
                                    .headers
                                    .iter()
                                    .map(|x| (x.name.get(buf).to_vec(), x.value.get(buf).to_vec()))
                                    .collect(),
                                body: Vec::new(),
                                host_error,
                            };
                            self.pos += h.head_len;
                            match framing.body {
                                BodyKind::None => self.done(req, framing.keep_alive),
                                BodyKind::Length(n) => {
                                    self.st = St::Length(req, n, framing.keep_alive)
                                }
                                BodyKind::Chunked => {
                                    self.st = St::Chunked(
                                        req,
                                        ChunkedDecoder::new(&self.limits),
                                        framing.keep_alive,
                                    )
                                }
                            }
                        }
                    }
                }
                St::Length(mut req, left, ka) => {
                    let avail = (self.buf.len() - self.pos) as u64;
                    let n = avail.min(left) as usize;
                    req.body
                        .extend_from_slice(&self.buf[self.pos..self.pos + n]);
                    self.pos += n;
                    if left - n as u64 == 0 {
                        self.done(req, ka);
                    } else {
                        self.st = St::Length(req, left - n as u64, ka);
                        return;
                    }
                }
                St::Chunked(mut req, mut dec, ka) => match dec.decode(&self.buf[self.pos..]) {
                    Err(e) => return self.fail(e.kind, e.offset),
                    Ok((used, ev)) => {
                        let start = self.pos;
                        self.pos += used;
                        match ev {
                            Chunk::Data(r) => {
                                assert!(r.end <= used, "data range past consumed");
                                assert!(!r.is_empty(), "empty data event");
                                req.body
                                    .extend_from_slice(&self.buf[start + r.start..start + r.end]);
                                self.st = St::Chunked(req, dec, ka);
                            }
                            Chunk::NeedMore => {
                                assert_eq!(self.pos, self.buf.len(), "NeedMore left bytes");
                                self.st = St::Chunked(req, dec, ka);
                                return;
                            }
                            Chunk::End => self.done(req, ka),
                        }
                    }
                },
            }
        }
    }
}

/// Drives `input` cut into the given pieces (a list of cut offsets, ascending).
pub fn drive_split(input: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
    let mut d = Driver::new(limits.clone());
    let mut prev = 0;
    for &c in cuts {
        d.feed(&input[prev..c]);
        prev = c;
    }
    d.feed(&input[prev..]);
    d.finish()
}

pub fn drive_whole(input: &[u8], limits: &Limits) -> Outcome {
    drive_split(input, &[], limits)
}

pub fn drive_bytewise(input: &[u8], limits: &Limits) -> Outcome {
    let mut d = Driver::new(limits.clone());
    for b in input.chunks(1) {
        d.feed(b);
    }
    d.finish()
}
