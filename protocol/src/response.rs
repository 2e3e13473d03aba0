//! Response heads: status line, the app's headers (validated), framing, canned error answers.
//!
//! An app can never inject a header or split a response: every name must be a token and every
//! value is checked for CR, LF and NUL; a bad one is a [`HeaderError`] for the caller to turn into
//! a 500. Framing (Content-Length / Transfer-Encoding) and Connection are the caller's decision,
//! so the app's own copies of those headers are not written.

use std::fmt;

use crate::util::{is_token, push_decimal};

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 only; never towards nginx over uwsgi).
    Chunked,
    /// No framing header; the body ends when the connection closes.
    CloseDelimited,
    /// No framing header and no body (1xx, 204, 304 or when the caller says so).
    NoBody,
}

/// The Connection header the caller wants written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// None written.
    None,
    /// `Connection: close`.
    Close,
    /// `Connection: keep-alive` (HTTP/1.0 clients that asked for it).
    KeepAlive,
}

/// Options for [`encode_response_head`].
#[derive(Clone, Copy, Debug)]
pub struct ResponseOptions<'a> {
    /// Body framing.
    pub framing: ResponseFraming,
    /// Connection header.
    pub connection: ConnectionHeader,
    /// Written unless the app gave a Date header.
    pub date: Option<&'a [u8]>,
    /// Written unless the app gave a Server header.
    pub server: Option<&'a [u8]>,
}

/// Why a response head could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The status string is not `NNN reason`.
    BadStatus,
    /// The name of header number `.0` is not a token.
    BadName(usize),
    /// The value of header number `.0` holds CR, LF or NUL.
    BadValue(usize),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::BadStatus => f.write_str("invalid status line"),
            HeaderError::BadName(i) => write!(f, "header #{i} has an invalid name"),
            HeaderError::BadValue(i) => write!(f, "header #{i} has CR, LF or NUL in its value"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Parses a WSGI status string "200 OK": three digits (100-999), one space, reason without
/// CR/LF/NUL (the reason may be empty, and a bare "200" is accepted too).
pub fn parse_status(status: &[u8]) -> Result<u16, HeaderError> {
    let (code, rest) = match status {
        [a, b, c, rest @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => (
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'),
            rest,
        ),
        _ => return Err(HeaderError::BadStatus),
    };
    if code < 100 {
        return Err(HeaderError::BadStatus);
    }
    // PEP 3333: "a Status-Code and a Reason-Phrase, separated by a single space"; the space is
    // also what the status line on the wire needs.
    match rest {
        [b' ', reason @ ..] if !has_crlf_nul(reason) => Ok(code),
        _ => Err(HeaderError::BadStatus),
    }
}

#[inline]
fn has_crlf_nul(v: &[u8]) -> bool {
    v.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0)
}

/// Case-insensitive (ASCII) header name test.
#[inline]
pub fn name_eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Appends `HTTP/1.1 <status>\r\n`, the app's headers (names checked as tokens, values checked
/// for CR, LF, NUL; app Content-Length / Transfer-Encoding / Connection / Keep-Alive are not
/// written: framing and connection are the caller's), Date, Server, the framing header,
/// Connection, CRLF. On error `out` is truncated back to its length on entry.
pub fn encode_response_head<'h, I>(
    out: &mut Vec<u8>,
    status: &[u8],
    headers: I,
    opts: &ResponseOptions,
) -> Result<(), HeaderError>
where
    I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
{
    let entry = out.len();
    let r = encode_inner(out, status, headers, opts);
    if r.is_err() {
        out.truncate(entry);
    }
    r
}

fn encode_inner<'h, I>(
    out: &mut Vec<u8>,
    status: &[u8],
    headers: I,
    opts: &ResponseOptions,
) -> Result<(), HeaderError>
where
    I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
{
    parse_status(status)?;
    // One growth at most for a typical head (a fresh buffer would otherwise grow several times).
    out.reserve(status.len() + 256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\n");
    let mut app_date = false;
    let mut app_server = false;
    for (i, (name, value)) in headers.into_iter().enumerate() {
        if !is_token(name) {
            return Err(HeaderError::BadName(i));
        }
        if has_crlf_nul(value) {
            return Err(HeaderError::BadValue(i));
        }
        let skip = match name.len() {
            4 => {
                app_date |= name_eq(name, b"date");
                false
            }
            6 => {
                app_server |= name_eq(name, b"server");
                false
            }
            10 => name_eq(name, b"connection") || name_eq(name, b"keep-alive"),
            14 => name_eq(name, b"content-length"),
            17 => name_eq(name, b"transfer-encoding"),
            _ => false,
        };
        if skip {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let (Some(date), false) = (opts.date, app_date) {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    if let (Some(server), false) = (opts.server, app_server) {
        out.extend_from_slice(b"Server: ");
        out.extend_from_slice(server);
        out.extend_from_slice(b"\r\n");
    }
    match opts.framing {
        ResponseFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(n, out);
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        ResponseFraming::CloseDelimited | ResponseFraming::NoBody => {}
    }
    match opts.connection {
        ConnectionHeader::None => {}
        ConnectionHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ConnectionHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Appends a chunk header `<hex>\r\n` for a chunk of `len` bytes (len > 0).
pub fn chunk_header(len: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The last-chunk and empty trailer section that end a chunked body.
pub const CHUNK_END: &[u8] = b"0\r\n\r\n";

/// A complete canned response (status line, Content-Type text/plain, Content-Length,
/// Connection: close, short body) for 400, 408, 413, 414, 431, 500, 501, 502, 503, 505; other
/// statuses map to 500.
pub fn canned_response(status: u16) -> &'static [u8] {
    match status {
        400 => CANNED_400,
        408 => CANNED_408,
        413 => CANNED_413,
        414 => CANNED_414,
        431 => CANNED_431,
        501 => CANNED_501,
        502 => CANNED_502,
        503 => CANNED_503,
        505 => CANNED_505,
        _ => CANNED_500,
    }
}

const fn canned_bytes(status_line: &'static str) -> &'static [u8] {
    status_line.as_bytes()
}

// Content-Length is spelled out next to each body; a unit test checks every one against the
// body actually sent.
const CANNED_400: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 400 Bad Request\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
    "Bad Request\n"
));
const CANNED_408: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 408 Request Timeout\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n",
    "Request Timeout\n"
));
const CANNED_413: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 413 Content Too Large\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 18\r\nConnection: close\r\n\r\n",
    "Content Too Large\n"
));
const CANNED_414: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 414 URI Too Long\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 13\r\nConnection: close\r\n\r\n",
    "URI Too Long\n"
));
const CANNED_431: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 431 Request Header Fields Too Large\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\nConnection: close\r\n\r\n",
    "Request Header Fields Too Large\n"
));
const CANNED_500: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 500 Internal Server Error\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\nConnection: close\r\n\r\n",
    "Internal Server Error\n"
));
const CANNED_501: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 501 Not Implemented\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n",
    "Not Implemented\n"
));
const CANNED_502: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 502 Bad Gateway\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
    "Bad Gateway\n"
));
const CANNED_503: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\nConnection: close\r\n\r\n",
    "Service Unavailable\n"
));
const CANNED_505: &[u8] = canned_bytes(concat!(
    "HTTP/1.1 505 HTTP Version Not Supported\r\n",
    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 27\r\nConnection: close\r\n\r\n",
    "HTTP Version Not Supported\n"
));
