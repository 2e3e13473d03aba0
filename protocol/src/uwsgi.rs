//! The uwsgi request packet, as nginx's `uwsgi_pass` sends it.
//!
//! ```text
//! modifier1: u8 | vars size: u16 LE | modifier2: u8 | vars (exactly `vars size` bytes) | body
//! var = key size: u16 LE | key | value size: u16 LE | value
//! ```
//!
//! The vars are parsed with nom inside exactly `vars size` bytes, so a length that runs past the
//! block is an error, never a read into the body. nom's types stay inside this module.
//!
//! The body is framed by CONTENT_LENGTH alone: nginx de-chunks request bodies before passing them
//! on, so an HTTP_TRANSFER_ENCODING var describes the client's request, not these bytes. An empty
//! CONTENT_LENGTH means "no body" (nginx's `uwsgi_params` sends it empty on bodyless requests).

use nom::bytes::complete::take;
use nom::number::complete::{le_u16, le_u8};
use nom::{IResult, Parser};

use crate::error::{Error, ErrorKind};
use crate::limits::Limits;
use crate::util::parse_u64_digits;
use crate::{Span, Status};

/// One var: offsets of its key and value in the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UwsgiVar {
    /// The CGI-style name (`REQUEST_METHOD`, `HTTP_HOST`...).
    pub key: Span,
    /// Its value.
    pub value: Span,
}

/// A parsed packet head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UwsgiHead {
    /// Always 0 once parsed (anything else is refused with 501).
    pub modifier1: u8,
    /// Passed through; nginx sends 0.
    pub modifier2: u8,
    /// 4 + vars size: the body starts here.
    pub head_len: usize,
    /// 0 when CONTENT_LENGTH is absent or empty.
    pub content_length: u64,
}

const HEADER_LEN: usize = 4;
const CONTENT_LENGTH: &[u8] = b"CONTENT_LENGTH";

fn packet_header(i: &[u8]) -> IResult<&[u8], (u8, u16, u8)> {
    (le_u8, le_u16, le_u8).parse(i)
}

/// One length-prefixed string; `Err` when the length or the bytes run past `i`.
fn sized(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, n) = le_u16(i)?;
    take(n).parse(i)
}

/// Parses a packet head. `vars` is cleared and filled (a reused Vec: no allocation per var once
/// warm). `Partial` until the 4-byte header and the whole vars block are buffered.
pub fn parse(
    buf: &[u8],
    limits: &Limits,
    vars: &mut Vec<UwsgiVar>,
) -> Result<Status<UwsgiHead>, Error> {
    vars.clear();
    let Ok((_, (modifier1, size, modifier2))) = packet_header(buf) else {
        return Ok(Status::Partial);
    };
    if modifier1 != 0 {
        return Err(Error::new(ErrorKind::UwsgiModifier, 0));
    }
    let size = usize::from(size);
    if size > limits.max_uwsgi_vars_bytes.min(u16::MAX as usize) {
        return Err(Error::new(ErrorKind::UwsgiVarsTooLarge, 1));
    }
    let head_len = HEADER_LEN + size;
    let Some(block) = buf.get(HEADER_LEN..head_len) else {
        return Ok(Status::Partial);
    };

    let mut content_length: Option<u64> = None;
    let mut rest = block;
    while !rest.is_empty() {
        let var_start = head_len - rest.len();
        if vars.len() >= limits.max_uwsgi_vars {
            return Err(Error::new(ErrorKind::UwsgiTooManyVars, var_start));
        }
        let truncated = |at: &[u8]| Error::new(ErrorKind::UwsgiTruncatedVar, head_len - at.len());
        let (after_key, key) = sized(rest).map_err(|_| truncated(rest))?;
        if key.is_empty() {
            return Err(Error::new(ErrorKind::UwsgiEmptyKey, var_start));
        }
        let (after_value, value) = sized(after_key).map_err(|_| truncated(after_key))?;
        let key_start = var_start + 2;
        let value_start = head_len - after_key.len() + 2;
        if key == CONTENT_LENGTH && !value.is_empty() {
            let n = parse_u64_digits(value)
                .ok_or(Error::new(ErrorKind::UwsgiBadContentLength, value_start))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(Error::new(ErrorKind::UwsgiBadContentLength, value_start));
            }
            content_length = Some(n);
        }
        vars.push(UwsgiVar {
            key: Span::new(key_start, key_start + key.len()),
            value: Span::new(value_start, value_start + value.len()),
        });
        rest = after_value;
    }

    Ok(Status::Complete(UwsgiHead {
        modifier1,
        modifier2,
        head_len,
        content_length: content_length.unwrap_or(0),
    }))
}

/// Appends a packet header + vars (no body) to `out`. Errors when a key, a value or the vars
/// block exceeds 65535 bytes; `out` is then left as it was on entry.
pub fn encode(
    vars: &[(&[u8], &[u8])],
    modifier1: u8,
    modifier2: u8,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let mut size: usize = 0;
    for (k, v) in vars {
        if k.len() > usize::from(u16::MAX) || v.len() > usize::from(u16::MAX) {
            return Err(Error::new(ErrorKind::UwsgiEncodeTooLarge, size));
        }
        size += 4 + k.len() + v.len();
        if size > usize::from(u16::MAX) {
            return Err(Error::new(ErrorKind::UwsgiEncodeTooLarge, size));
        }
    }
    out.reserve(HEADER_LEN + size);
    out.push(modifier1);
    out.extend_from_slice(&(size as u16).to_le_bytes());
    out.push(modifier2);
    for (k, v) in vars {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v);
    }
    Ok(())
}
