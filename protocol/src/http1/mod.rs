//! HTTP/1.1 requests with llhttp's strict semantics, plus the server rules on top.
//!
//! * [`parse_request_head`]: request line + header block, resumable at any byte boundary.
//! * [`check_host`]: RFC 9112 3.2 (kept apart so the corpus replay can check the parser alone).
//! * [`request_framing`]: the one place that decides body framing and keep-alive.
//! * [`ChunkedDecoder`]: the strict chunked body decoder.
//!
//! What the head parser accepts (everything else is an [`Error`] with its status):
//!
//! * optional empty lines (CRLF) before the request line (RFC 9112 2.2);
//! * `method SP request-target SP HTTP/D.D CRLF`, exactly one SP between parts;
//! * method: a token among the methods llhttp knows for HTTP (`GET`, `POST`, ... `QUERY`;
//!   case-sensitive). Any other well-formed token is answered **501** ([`ErrorKind::UnknownMethod`],
//!   RFC 9110 9.1: "unrecognized or not implemented"); a method with a non-token byte is 400;
//! * target: bytes 0x21..=0x7E only (no controls, SP, DEL or bytes >= 0x80: 400), at most
//!   `max_target_bytes` (414); origin-form (`/...`), absolute-form (`scheme://authority...`, not
//!   for CONNECT), asterisk-form (`*`, OPTIONS only) or authority-form (`host:port`, CONNECT only);
//! * version: `HTTP/1.0` or `HTTP/1.1`. Any other `HTTP/D.D` (0.9, 2.0, 5.6...) and an HTTP/0.9
//!   request line without a version get **505**; anything that is not `HTTP/D.D` is 400;
//! * header lines `token ":" OWS value OWS CRLF`: no whitespace before the colon, no line folding,
//!   value bytes HTAB, SP, VCHAR or obs-text (>= 0x80); no other control byte and no DEL;
//! * every line ends with CRLF: a bare LF or a bare CR is 400;
//! * at most `max_headers` header lines and `max_head_bytes` in all (431).

mod chunked;

pub use chunked::{Chunk, ChunkedDecoder};

use crate::error::{Error, ErrorKind};
use crate::limits::Limits;
use crate::response::name_eq;
use crate::util::{
    load16, load32, parse_u64_digits, target_stop16, trim_ows, value_stop16, value_stop32, TOKEN,
};
use crate::{Span, Status};

/// The two versions Velocior serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

impl Version {
    /// `"HTTP/1.0"` or `"HTTP/1.1"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// One header line, as offsets into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The name as sent.
    pub name: Span,
    /// The value without leading/trailing SP/HTAB.
    pub value: Span,
}

/// A parsed request line (the headers go to the caller's Vec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token.
    pub method: Span,
    /// The request-target as sent.
    pub target: Span,
    /// origin-form: up to '?' or '#'; absolute-form: the path after the authority ("/" when
    /// empty: the span then covers a '/' of the `://`); asterisk-form: "*"; authority-form: empty.
    pub path: Span,
    /// After '?', up to '#'; empty when none.
    pub query: Span,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Bytes of (leading empty lines +) request line + headers + final CRLF.
    pub head_len: usize,
}

/// Parses a request head. `headers` is cleared and filled. `Partial` until the whole head is
/// buffered; the head size, target length and header count limits are checked while still
/// partial (a 1 MB header line fails once it crosses `max_head_bytes`).
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
    headers: &mut Vec<Header>,
) -> Result<Status<RequestHead>, Error> {
    headers.clear();
    // Parsing a view cut at the limit makes "too large" the answer exactly when the head has not
    // ended within the limit, whatever the split points.
    let max = limits.max_head_bytes;
    let (view, over) = if buf.len() > max {
        (&buf[..max], true)
    } else {
        (buf, false)
    };
    match parse_head(view, limits, headers)? {
        Some(head) => Ok(Status::Complete(head)),
        None if over => Err(Error::new(ErrorKind::HeadTooLarge, max)),
        None => Ok(Status::Partial),
    }
}

/// The methods llhttp accepts with `HTTP/`; RTSP- and ICE-only methods are not among them.
fn known_method(m: &[u8]) -> bool {
    matches!(
        m,
        b"GET"
            | b"POST"
            | b"HEAD"
            | b"PUT"
            | b"DELETE"
            | b"OPTIONS"
            | b"PATCH"
            | b"CONNECT"
            | b"TRACE"
            | b"COPY"
            | b"LOCK"
            | b"MKCOL"
            | b"MOVE"
            | b"PROPFIND"
            | b"PROPPATCH"
            | b"SEARCH"
            | b"UNLOCK"
            | b"BIND"
            | b"REBIND"
            | b"UNBIND"
            | b"ACL"
            | b"REPORT"
            | b"MKACTIVITY"
            | b"CHECKOUT"
            | b"MERGE"
            | b"M-SEARCH"
            | b"NOTIFY"
            | b"SUBSCRIBE"
            | b"UNSUBSCRIBE"
            | b"PURGE"
            | b"MKCALENDAR"
            | b"LINK"
            | b"UNLINK"
            | b"SOURCE"
            | b"PRI"
            | b"QUERY"
    )
}

/// `None` = need more bytes.
#[inline]
fn parse_head(
    b: &[u8],
    limits: &Limits,
    headers: &mut Vec<Header>,
) -> Result<Option<RequestHead>, Error> {
    use ErrorKind::*;
    let len = b.len();
    let mut pos = 0;

    // Empty lines before the request line.
    while pos < len && b[pos] == b'\r' {
        match b.get(pos + 1) {
            None => return Ok(None),
            Some(b'\n') => pos += 2,
            Some(_) => return Err(Error::new(BareCr, pos)),
        }
    }

    // Method.
    let m_start = pos;
    pos = scan_token(b, pos);
    if pos == len {
        return Ok(None);
    }
    if b[pos] != b' ' {
        return Err(Error::new(
            match b[pos] {
                b'\r' | b'\n' if pos > m_start => BadRequestLine,
                _ => BadMethod,
            },
            pos,
        ));
    }
    if pos == m_start {
        return Err(Error::new(BadMethod, pos));
    }
    let method = &b[m_start..pos];
    if !known_method(method) {
        return Err(Error::new(UnknownMethod, m_start));
    }
    pos += 1;

    // Target.
    let t_start = pos;
    let t_limit = t_start.saturating_add(limits.max_target_bytes + 1);
    let scan_end = t_limit.min(len);
    pos = scan_target(b, pos, scan_end);
    if pos == scan_end {
        if scan_end == t_limit {
            return Err(Error::new(TargetTooLong, t_limit - 1));
        }
        return Ok(None);
    }
    let t_end = pos;
    match b[pos] {
        b' ' if t_end > t_start => {}
        b' ' => return Err(Error::new(BadRequestLine, pos)),
        b'\r' | b'\n' if t_end > t_start => {
            // "GET /\r\n": an HTTP/0.9 simple request, unless the target is not even a target.
            analyse_target(b, method, t_start, t_end)?;
            return Err(Error::new(
                if b[pos] == b'\r' {
                    UnsupportedVersion
                } else {
                    BareLf
                },
                pos,
            ));
        }
        b'\r' | b'\n' => return Err(Error::new(BadRequestLine, pos)),
        _ => return Err(Error::new(BadTarget, pos)),
    }
    pos += 1;

    // Version + CRLF.
    let v = pos;
    let version = if b.len() >= v + 10 && &b[v..v + 10] == b"HTTP/1.1\r\n" {
        Version::Http11
    } else {
        const PATTERN: &[u8; 10] = b"HTTP/D.D\r\n";
        let avail = (len - v).min(10);
        for i in 0..avail {
            let c = b[v + i];
            let ok = match PATTERN[i] {
                b'D' => c.is_ascii_digit(),
                p => c == p,
            };
            if !ok {
                let kind = match i {
                    8 if c == b'\n' => BareLf,
                    9 => BareCr,
                    _ => BadVersion,
                };
                return Err(Error::new(kind, v + i));
            }
        }
        if avail < 10 {
            return Ok(None);
        }
        match (b[v + 5], b[v + 7]) {
            (b'1', b'1') => Version::Http11,
            (b'1', b'0') => Version::Http10,
            _ => return Err(Error::new(UnsupportedVersion, v)),
        }
    };
    pos = v + 10;
    let (path, query) = analyse_target(b, method, t_start, t_end)?;

    Ok(
        parse_headers(b, pos, limits.max_headers, headers)?.map(|head_len| RequestHead {
            method: Span::new(m_start, m_start + method.len()),
            target: Span::new(t_start, t_end),
            path,
            query,
            version,
            head_len,
        }),
    )
}

/// The header block from `pos` to the empty line; returns the index after its CRLF. Kept out of
/// `parse_head` so the request-line values are not live (spilled) across this loop.
fn parse_headers(
    b: &[u8],
    mut pos: usize,
    max_headers: usize,
    headers: &mut Vec<Header>,
) -> Result<Option<usize>, Error> {
    use ErrorKind::*;
    let len = b.len();
    loop {
        if pos >= len {
            return Ok(None);
        }
        match b[pos] {
            b'\r' => {
                return match b.get(pos + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some(pos + 2)),
                    Some(_) => Err(Error::new(BareCr, pos + 1)),
                };
            }
            b'\n' => return Err(Error::new(BareLf, pos)),
            b' ' | b'\t' if headers.is_empty() => return Err(Error::new(BadHeaderName, pos)),
            b' ' | b'\t' => return Err(Error::new(ObsFold, pos)),
            _ => {}
        }
        if headers.len() >= max_headers {
            return Err(Error::new(TooManyHeaders, pos));
        }
        match parse_header_line(b, pos)? {
            None => return Ok(None),
            Some((header, next)) => {
                headers.push(header);
                pos = next;
            }
        }
    }
}

/// Parses `name ":" OWS value OWS CRLF` starting at `pos` (not at CR/LF/SP/HTAB). Shared with
/// the trailer parser. `None` = need more bytes; `Some((header, index after CRLF))`.
#[inline(always)]
pub(crate) fn parse_header_line(b: &[u8], pos: usize) -> Result<Option<(Header, usize)>, Error> {
    use ErrorKind::*;
    let len = b.len();
    let n_start = pos;
    let mut p = scan_token(b, pos);
    if p == len {
        return Ok(None);
    }
    match b[p] {
        b':' if p > n_start => {}
        b' ' | b'\t' if p > n_start => return Err(Error::new(WhitespaceBeforeColon, p)),
        _ => return Err(Error::new(BadHeaderName, p)),
    }
    let name = Span::new(n_start, p);
    p += 1;
    while p < len && (b[p] == b' ' || b[p] == b'\t') {
        p += 1;
    }
    let v_start = p;
    loop {
        if p + 32 <= len {
            let i = value_stop32(load32(b, p));
            p += i;
            if i == 32 {
                continue;
            }
        } else if p + 16 <= len {
            let i = value_stop16(load16(b, p));
            p += i;
            if i == 16 {
                continue;
            }
        } else {
            while p < len && b[p] >= 0x20 && b[p] != 0x7f {
                p += 1;
            }
            if p == len {
                return Ok(None);
            }
        }
        // CR first: it ends almost every value
        let c = b[p];
        if c == b'\r' {
            if p + 1 < len && b[p + 1] == b'\n' {
                let mut v_end = p;
                while v_end > v_start && (b[v_end - 1] == b' ' || b[v_end - 1] == b'\t') {
                    v_end -= 1;
                }
                let value = Span::new(v_start, v_end);
                return Ok(Some((Header { name, value }, p + 2)));
            }
            if p + 1 == len {
                return Ok(None);
            }
            return Err(Error::new(BareCr, p + 1));
        }
        if c != b'\t' {
            let kind = if c == b'\n' { BareLf } else { BadHeaderValue };
            return Err(Error::new(kind, p));
        }
        p += 1;
    }
}

/// Index of the first non-token byte at or after `pos` (or `b.len()`). Four table lookups per
/// branch: names are short, and a branch per byte cost more than the lookups.
#[inline(always)]
fn scan_token(b: &[u8], mut pos: usize) -> usize {
    let t = |c: u8| TOKEN[c as usize];
    while pos + 4 <= b.len() {
        if !(t(b[pos]) & t(b[pos + 1]) & t(b[pos + 2]) & t(b[pos + 3])) {
            break;
        }
        pos += 4;
    }
    while pos < b.len() && t(b[pos]) {
        pos += 1;
    }
    pos
}

/// Index of the first byte in `b[pos..end]` that cannot be in a target (or `end`).
#[inline(always)]
fn scan_target(b: &[u8], mut pos: usize, end: usize) -> usize {
    while pos + 16 <= end {
        let i = target_stop16(load16(b, pos));
        pos += i;
        if i < 16 {
            return pos;
        }
    }
    while pos < end && (0x21..=0x7e).contains(&b[pos]) {
        pos += 1;
    }
    pos
}

/// Checks the target's form against the method; returns (path, query).
fn analyse_target(
    b: &[u8],
    method: &[u8],
    start: usize,
    end: usize,
) -> Result<(Span, Span), Error> {
    let bad = Err(Error::new(ErrorKind::BadTarget, start));
    let t = &b[start..end];
    let is_connect = method == b"CONNECT";
    if t[0] == b'/' && !is_connect {
        return Ok(path_and_query(b, start, start, end));
    }
    if t == b"*" {
        return if method == b"OPTIONS" {
            Ok((Span::new(start, end), Span::new(end, end)))
        } else {
            bad
        };
    }
    if is_connect {
        // authority-form = uri-host ":" port (RFC 9112 3.2.3)
        return match valid_authority(t, false) {
            Some(true) => Ok((Span::new(start, start), Span::new(start, start))),
            _ => bad,
        };
    }
    // absolute-form: scheme "://" authority path-abempty [ "?" query ]
    let Some(colon) = memchr::memchr(b':', t) else {
        return bad;
    };
    let scheme = &t[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok || !t[colon..].starts_with(b"://") {
        return bad;
    }
    let a_start = colon + 3;
    let a_end = t[a_start..]
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .map_or(t.len(), |i| a_start + i);
    let authority = &t[a_start..a_end];
    let host_part = match memchr::memrchr(b'@', authority) {
        Some(at) => {
            if !authority[..at].iter().all(|&c| is_userinfo_byte(c)) {
                return bad;
            }
            &authority[at + 1..]
        }
        None => authority,
    };
    if host_part.is_empty() || host_part[0] == b':' || valid_authority(host_part, true).is_none() {
        return bad;
    }
    let (mut path, query) = path_and_query(b, start, start + a_end, end);
    if path.is_empty() {
        // "http://host" or "http://host?q": the path is "/", and "://" holds one.
        path = Span::new(start + colon + 1, start + colon + 2);
    }
    Ok((path, query))
}

/// Splits `b[from..end]` at '?' and '#'.
#[inline]
fn path_and_query(b: &[u8], _target: usize, from: usize, end: usize) -> (Span, Span) {
    let rest = &b[from..end];
    match memchr::memchr2(b'?', b'#', rest) {
        None => (Span::new(from, end), Span::new(end, end)),
        Some(i) if rest[i] == b'#' => (Span::new(from, from + i), Span::new(end, end)),
        Some(i) => {
            let q = from + i + 1;
            let q_end = memchr::memchr(b'#', &b[q..end]).map_or(end, |j| q + j);
            (Span::new(from, from + i), Span::new(q, q_end))
        }
    }
}

/// unreserved / sub-delims (RFC 3986): the bytes of a reg-name besides pct-encoded triplets.
static HOST_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        i += 1;
    }
    t
};

#[inline(always)]
fn is_unreserved_or_sub_delim(c: u8) -> bool {
    HOST_BYTE[c as usize]
}

#[inline]
fn is_userinfo_byte(c: u8) -> bool {
    is_unreserved_or_sub_delim(c) || c == b'%' || c == b':'
}

/// `uri-host [ ":" port ]` (RFC 3986). Returns `Some(has_port)` when valid. With
/// `port_optional == false` the port is required (authority-form) and must be non-empty.
fn valid_authority(s: &[u8], port_optional: bool) -> Option<bool> {
    let (host, port) = if s.first() == Some(&b'[') {
        let close = memchr::memchr(b']', s)?;
        let inner = &s[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&c| c.is_ascii_hexdigit() || c == b':' || is_unreserved_or_sub_delim(c))
        {
            return None;
        }
        match &s[close + 1..] {
            [] => (&s[..close + 1], None),
            [b':', port @ ..] => (&s[..close + 1], Some(port)),
            _ => return None,
        }
    } else {
        match s.iter().rposition(|&c| c == b':') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    if !valid_reg_name_or_ip_literal(host) {
        return None;
    }
    match port {
        Some(p) if p.iter().all(u8::is_ascii_digit) && (port_optional || !p.is_empty()) => {
            Some(true)
        }
        Some(_) => None,
        None if port_optional => Some(false),
        None => None,
    }
}

fn valid_reg_name_or_ip_literal(host: &[u8]) -> bool {
    if host.first() == Some(&b'[') {
        return true; // checked by the caller
    }
    let mut i = 0;
    while i < host.len() {
        let c = host[i];
        if c == b'%' {
            if !(host.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && host.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !is_unreserved_or_sub_delim(c) {
            return false;
        }
        i += 1;
    }
    true
}

/// The server's Host rule (RFC 9112 3.2): HTTP/1.1 needs exactly one valid Host; HTTP/1.0 may
/// omit it (at most one, valid). An empty Host value is valid (RFC 9112 3.2 lets a client send
/// one when the target has no authority).
pub fn check_host(head: &RequestHead, buf: &[u8], headers: &[Header]) -> Result<(), Error> {
    let mut host: Option<&Header> = None;
    for h in headers {
        if name_eq(h.name.get(buf), b"host") {
            if host.is_some() {
                return Err(Error::new(ErrorKind::DuplicateHost, h.name.start as usize));
            }
            host = Some(h);
        }
    }
    match host {
        None if head.version == Version::Http11 => Err(Error::new(
            ErrorKind::MissingHost,
            head.head_len.saturating_sub(2),
        )),
        None => Ok(()),
        Some(h) => {
            let v = h.value.get(buf);
            if v.is_empty() || valid_authority(v, true).is_some() {
                Ok(())
            } else {
                Err(Error::new(ErrorKind::BadHost, h.value.start as usize))
            }
        }
    }
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no Content-Length nor Transfer-Encoding, or CONNECT).
    None,
    /// Exactly this many bytes (may be 0).
    Length(u64),
    /// Chunked transfer coding: feed the bytes after the head to a [`ChunkedDecoder`].
    Chunked,
}

/// The framing decision for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// How to read the body.
    pub body: BodyKind,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request that has a body: send `100 Continue` before
    /// reading it.
    pub expect_continue: bool,
}

/// The ONE place that decides request body framing and connection persistence.
///
/// RFC 9112 6.3 (message body length), as applied to requests, in order:
///
/// 1. (responses only: HEAD, 1xx, 204, 304; not applicable to requests)
/// 2. (responses only: 2xx to CONNECT) — for a CONNECT *request* the bytes after the head are
///    tunnel data, never a body (RFC 9110 9.3.6): body `None`, and the connection is not reused
///    because Velocior does not tunnel.
/// 3. Transfer-Encoding and Content-Length both present: reject (400) — a request "MUST be
///    treated as an error"; llhttp rejects too, whatever the values.
/// 4. Transfer-Encoding present: the final coding must be `chunked` (else 400, the length cannot
///    be determined); `chunked` may appear once only (400). Velocior implements no other transfer
///    coding, so `gzip, chunked` and the like are 501 (RFC 9112 6.1). HTTP/1.0 with
///    Transfer-Encoding: the framing is treated as faulty, so the body is decoded and the
///    connection closed afterwards (RFC 9112 6.1).
/// 5. Content-Length present: it must be one header whose value is digits only (no list, no
///    sign, no second Content-Length even with an equal value, as llhttp); else 400.
/// 6. (requests: covered by 5)
/// 7. Neither: the request has no body.
///
/// Keep-alive: HTTP/1.1 on unless `Connection: close`; HTTP/1.0 only with
/// `Connection: keep-alive` (and no `close`); never after CONNECT or an Upgrade request
/// (`Connection: upgrade` + `Upgrade`: Velocior does not switch protocols and the bytes that
/// follow are not HTTP), nor after HTTP/1.0 with Transfer-Encoding.
pub fn request_framing(
    head: &RequestHead,
    buf: &[u8],
    headers: &[Header],
) -> Result<Framing, Error> {
    use ErrorKind::*;
    let mut content_length: Option<(u64, usize)> = None;
    let mut te_seen: Option<usize> = None;
    // Transfer codings across all Transfer-Encoding lines, in order.
    let mut chunked_last = false;
    let mut chunked_count = 0u32;
    let mut other_coding = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut conn_upgrade = false;
    let mut upgrade = false;
    let mut expect_continue = false;

    for h in headers {
        let name = h.name.get(buf);
        let value = h.value.get(buf);
        let at = h.value.start as usize;
        match name.len() {
            14 if name_eq(name, b"content-length") => {
                if content_length.is_some() {
                    return Err(Error::new(DuplicateContentLength, h.name.start as usize));
                }
                let n = parse_u64_digits(value).ok_or(Error::new(BadContentLength, at))?;
                content_length = Some((n, at));
            }
            17 if name_eq(name, b"transfer-encoding") => {
                te_seen.get_or_insert(at);
                for coding in value.split(|&c| c == b',') {
                    let coding = trim_ows(coding);
                    if coding.is_empty() {
                        continue; // empty list elements are ignored (RFC 9110 5.6.1)
                    }
                    if name_eq(coding, b"chunked") {
                        chunked_count += 1;
                        chunked_last = true;
                    } else {
                        chunked_last = false;
                        other_coding = true;
                    }
                }
            }
            10 if name_eq(name, b"connection") => {
                for opt in value.split(|&c| c == b',') {
                    let opt = trim_ows(opt);
                    if name_eq(opt, b"close") {
                        conn_close = true;
                    } else if name_eq(opt, b"keep-alive") {
                        conn_keep_alive = true;
                    } else if name_eq(opt, b"upgrade") {
                        conn_upgrade = true;
                    }
                }
            }
            7 if name_eq(name, b"upgrade") => upgrade = true,
            6 if name_eq(name, b"expect") => {
                expect_continue = name_eq(value, b"100-continue");
            }
            _ => {}
        }
    }

    let is_connect = head.method.get(buf) == b"CONNECT";
    let http10 = head.version == Version::Http10;
    let body = match (te_seen, content_length) {
        (Some(at), Some(_)) => return Err(Error::new(ContentLengthWithTransferEncoding, at)),
        (Some(at), None) => {
            if !chunked_last || chunked_count != 1 {
                return Err(Error::new(TransferEncodingNotChunked, at));
            }
            if other_coding {
                return Err(Error::new(UnsupportedTransferCoding, at));
            }
            BodyKind::Chunked
        }
        (None, Some((n, _))) => BodyKind::Length(n),
        (None, None) => BodyKind::None,
    };
    let body = if is_connect { BodyKind::None } else { body };

    // Reasons to close after this request; keep-alive when none applies.
    let http10_close = http10 && (!conn_keep_alive || te_seen.is_some());
    let keep_alive = !(conn_close || http10_close || is_connect || (conn_upgrade && upgrade));
    let has_body =
        matches!(body, BodyKind::Chunked) || matches!(body, BodyKind::Length(n) if n > 0);
    Ok(Framing {
        body,
        keep_alive,
        expect_continue: expect_continue && !http10 && has_body,
    })
}
