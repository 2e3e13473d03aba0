//! Velocior's wire formats, sans-IO: bytes in, request heads / body events / encoded bytes out.
//!
//! Theory of operation
//! -------------------
//! The server owns the sockets and the buffers; this crate only looks at bytes it is handed.
//! Every parser is *resumable by re-parsing*: the caller appends what it read to its buffer and
//! calls the parser again on the whole buffer. A parser answers [`Status::Partial`] ("read more")
//! until it has everything it needs, then [`Status::Complete`] with offsets ([`Span`]s) into the
//! caller's buffer, so nothing is copied and no header allocates (the caller passes a reused
//! `Vec`). Errors are never used for "need more bytes": an [`Error`] is final and carries the HTTP
//! status to answer with and the byte offset where parsing failed.
//!
//! Because a parse only ever looks at the bytes before the point it reached, feeding a message
//! whole or in any number of pieces gives the same answer; the tests check exactly that for every
//! split point of the conformance corpora, and the fuzz targets check it on random input.
//!
//! Size limits ([`Limits`]) are enforced while a head is still partial, so a peer that sends a
//! megabyte of header line is stopped once it crosses the limit, not when it finally ends the line.
//!
//! The chunked body decoder is the one stateful piece: it is an explicit state machine that can be
//! fed any slice (it keeps at most a few counters between calls).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod http1;
pub mod limits;
pub mod response;
pub mod util;
pub mod uwsgi;

pub use error::{Error, ErrorKind};
pub use limits::Limits;

/// Result of an incremental parse: the value, or "need more bytes" (never an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// Parsing finished; the value refers to the caller's buffer.
    Complete(T),
    /// The buffer ends before the thing being parsed does: read more and call again.
    Partial,
}

impl<T> Status<T> {
    /// `true` for [`Status::Complete`].
    pub fn is_complete(&self) -> bool {
        matches!(self, Status::Complete(_))
    }

    /// `true` for [`Status::Partial`].
    pub fn is_partial(&self) -> bool {
        matches!(self, Status::Partial)
    }
}

/// A byte range into the caller's buffer (no copies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// Builds a span from `usize` offsets; buffers handed to the parsers are far below 4 GiB
    /// (the head limits see to that), so the narrowing cannot lose bits in practice.
    #[inline]
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The bytes this span covers in `buf` (the buffer it was parsed from).
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// `true` when the span covers no byte.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}
