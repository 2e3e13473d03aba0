//! Strict chunked transfer coding decoder (RFC 9112 7.1), as llhttp's strict mode reads it.
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-ext    = *( ";" ext-name [ "=" ext-val ] )      ; no BWS: strict like llhttp
//! ext-val      = token / quoted-string
//! ```
//!
//! No whitespace around sizes, no signs, no `0x`; a size that does not fit in 64 bits is an
//! error; extension bytes per chunk and trailer bytes are limited; trailer lines follow the header
//! rules and are validated, then dropped (WSGI has no trailers).
//!
//! The decoder is an explicit state machine: every byte moves it one step, and nothing but a few
//! counters is kept between calls, so it gives the same events whatever the split points of its
//! input.

use crate::error::{Error, ErrorKind};
use crate::limits::Limits;
use crate::util::{hex_val, TOKEN};

/// A decoder event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// `input[range]` is body data.
    Data(std::ops::Range<usize>),
    /// All of the input was consumed without producing data: read more.
    NeedMore,
    /// The last chunk and the trailer section were consumed.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a size.
    SizeStart,
    /// Inside the size digits.
    Size,
    /// Just after ';': an extension name must start.
    ExtNameStart,
    ExtName,
    /// Just after '=': a token or a quoted string must start.
    ExtValueStart,
    ExtValueToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// After a closing quote: ';' or CR.
    ExtAfterQuoted,
    /// CR after the size line seen, LF expected.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data: CR expected.
    DataCr,
    /// LF expected.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerLineStart,
    /// Inside a trailer line: bytes are collected into `line` and parsed at CRLF.
    TrailerLine,
    /// Final CR seen, LF expected.
    FinalLf,
    Done,
}

/// Strict chunked decoder; same output whatever the split points of its input.
///
/// Error offsets count from the first byte ever fed to this decoder.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    /// Data bytes left in the current chunk.
    remaining: u64,
    is_last: bool,
    ext_bytes: usize,
    trailer_bytes: usize,
    max_ext: usize,
    max_trailer: usize,
    /// Bytes consumed by earlier calls (for error offsets).
    base: usize,
    /// The trailer line being read (trailers are rare; the buffer only grows when they occur).
    line: Vec<u8>,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new(limits: &Limits) -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            remaining: 0,
            is_last: false,
            ext_bytes: 0,
            trailer_bytes: 0,
            max_ext: limits.max_chunk_ext_bytes,
            max_trailer: limits.max_trailer_bytes,
            base: 0,
            line: Vec::new(),
        }
    }

    /// `true` once [`Chunk::End`] was returned.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feed bytes; returns (consumed, event). `Data(r)`: `input[r]` is body data,
    /// `r.end == consumed`. `NeedMore`: all of `input` was consumed - read more. `End`: the last
    /// chunk and the trailers were consumed; bytes after `consumed` are the next request.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Chunk), Error> {
        let r = self.step(input);
        if let Ok((consumed, _)) = &r {
            self.base += consumed;
        }
        r
    }

    fn err(&self, kind: ErrorKind, at: usize) -> Error {
        Error::new(kind, self.base + at)
    }

    fn step(&mut self, input: &[u8]) -> Result<(usize, Chunk), Error> {
        use ErrorKind::*;
        let mut i = 0;
        while i < input.len() {
            let c = input[i];
            match self.state {
                State::Data => {
                    let avail = input.len() - i;
                    let n = if (avail as u64) < self.remaining {
                        avail
                    } else {
                        self.remaining as usize
                    };
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((i + n, Chunk::Data(i..i + n)));
                }
                State::SizeStart => match hex_val(c) {
                    Some(d) => {
                        self.size = u64::from(d);
                        self.ext_bytes = 0;
                        self.state = State::Size;
                    }
                    None => return Err(self.err(BadChunkSize, i)),
                },
                State::Size => match c {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(self.err(BareLf, i)),
                    b';' => self.enter_ext(i)?,
                    _ => {
                        let Some(d) = hex_val(c) else {
                            return Err(self.err(BadChunkSize, i));
                        };
                        if self.size > u64::MAX >> 4 {
                            return Err(self.err(ChunkSizeOverflow, i));
                        }
                        self.size = self.size << 4 | u64::from(d);
                    }
                },
                State::ExtNameStart
                | State::ExtName
                | State::ExtValueStart
                | State::ExtValueToken
                | State::ExtQuoted
                | State::ExtQuotedEscape
                | State::ExtAfterQuoted => {
                    if c != b'\r' {
                        self.ext_bytes += 1;
                        if self.ext_bytes > self.max_ext {
                            return Err(self.err(ChunkExtensionTooLong, i));
                        }
                    }
                    self.ext_byte(c, i)?;
                }
                State::SizeLf => {
                    if c != b'\n' {
                        return Err(self.err(BareCr, i));
                    }
                    if self.size == 0 {
                        self.is_last = true;
                        self.state = State::TrailerLineStart;
                    } else {
                        self.remaining = self.size;
                        self.state = State::Data;
                    }
                }
                State::DataCr => {
                    if c != b'\r' {
                        return Err(self.err(MissingChunkCrlf, i));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if c != b'\n' {
                        return Err(self.err(MissingChunkCrlf, i));
                    }
                    self.state = State::SizeStart;
                }
                State::TrailerLineStart => {
                    self.count_trailer(i)?;
                    match c {
                        b'\r' => self.state = State::FinalLf,
                        b'\n' => return Err(self.err(BareLf, i)),
                        b' ' | b'\t' => return Err(self.err(ObsFold, i)),
                        _ => {
                            self.line.clear();
                            self.line.push(c);
                            self.state = State::TrailerLine;
                        }
                    }
                }
                State::TrailerLine => {
                    self.count_trailer(i)?;
                    self.line.push(c);
                    if c == b'\n' {
                        self.check_trailer_line(i)?;
                        self.state = State::TrailerLineStart;
                    }
                }
                State::FinalLf => {
                    self.count_trailer(i)?;
                    if c != b'\n' {
                        return Err(self.err(BareCr, i));
                    }
                    self.state = State::Done;
                    return Ok((i + 1, Chunk::End));
                }
                State::Done => return Ok((i, Chunk::End)),
            }
            i += 1;
        }
        if self.state == State::Done {
            return Ok((i, Chunk::End));
        }
        Ok((i, Chunk::NeedMore))
    }

    fn enter_ext(&mut self, i: usize) -> Result<(), Error> {
        self.ext_bytes += 1;
        if self.ext_bytes > self.max_ext {
            return Err(self.err(ErrorKind::ChunkExtensionTooLong, i));
        }
        self.state = State::ExtNameStart;
        Ok(())
    }

    fn ext_byte(&mut self, c: u8, i: usize) -> Result<(), Error> {
        let bad = || Err(self.err(ErrorKind::BadChunkExtension, i));
        let token = TOKEN[c as usize];
        self.state = match self.state {
            State::ExtNameStart if token => State::ExtName,
            State::ExtNameStart => return bad(),
            State::ExtName if token => State::ExtName,
            State::ExtName => match c {
                b'=' => State::ExtValueStart,
                b';' => State::ExtNameStart,
                b'\r' => State::SizeLf,
                _ => return bad(),
            },
            State::ExtValueStart if token => State::ExtValueToken,
            State::ExtValueStart if c == b'"' => State::ExtQuoted,
            State::ExtValueStart => return bad(),
            State::ExtValueToken if token => State::ExtValueToken,
            State::ExtValueToken | State::ExtAfterQuoted => match c {
                b';' => State::ExtNameStart,
                b'\r' => State::SizeLf,
                _ => return bad(),
            },
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            State::ExtQuoted => match c {
                b'"' => State::ExtAfterQuoted,
                b'\\' => State::ExtQuotedEscape,
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => State::ExtQuoted,
                _ => return bad(),
            },
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            State::ExtQuotedEscape => match c {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => State::ExtQuoted,
                _ => return bad(),
            },
            _ => unreachable!("ext_byte called outside an extension state"),
        };
        Ok(())
    }

    fn count_trailer(&mut self, i: usize) -> Result<(), Error> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer {
            return Err(self.err(ErrorKind::TrailerTooLarge, i));
        }
        Ok(())
    }

    /// `self.line` holds one trailer line ending in LF: check it with the header rules.
    fn check_trailer_line(&self, i: usize) -> Result<(), Error> {
        // The line may have started in an earlier call: count back from the absolute end.
        let line_start = (self.base + i + 1).saturating_sub(self.line.len());
        match crate::http1::parse_header_line(&self.line, 0) {
            Ok(Some((_, end))) if end == self.line.len() => Ok(()),
            // The line holds a single LF at its end, so anything else is an error inside it.
            Ok(_) => Err(self.err(ErrorKind::BareLf, i)),
            Err(e) => Err(Error::new(e.kind, line_start + e.offset)),
        }
    }
}
