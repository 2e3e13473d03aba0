//! Parse errors: what went wrong, the status to answer with, and where.

use std::fmt;

/// A final parse error. `offset` is the byte (into the buffer given to the parser, or for the
/// chunked decoder into the body since its start) at which the input became invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// Which rule was broken.
    pub kind: ErrorKind,
    /// Where.
    pub offset: usize,
}

impl Error {
    #[inline]
    pub(crate) fn new(kind: ErrorKind, offset: usize) -> Error {
        Error { kind, offset }
    }

    /// The HTTP status to answer with (shortcut for `self.kind.status()`).
    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

/// One variant per rule. [`ErrorKind::status`] gives the answer the server sends before closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    // --- request line ---
    /// The method is empty or holds a byte that is not a token character.
    BadMethod,
    /// A well-formed method token that is not in the list of methods Velocior knows (501).
    UnknownMethod,
    /// The request line is not `method SP target SP version CRLF` (extra spaces, missing parts).
    BadRequestLine,
    /// A byte that may not appear in a request-target (controls, SP, DEL, bytes >= 0x80), or a
    /// target whose form is wrong (not origin/absolute/asterisk/authority, or a form not allowed
    /// for the method).
    BadTarget,
    /// The request-target is longer than `Limits::max_target_bytes` (414).
    TargetTooLong,
    /// The version is not `HTTP/` DIGIT `.` DIGIT.
    BadVersion,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1, or an HTTP/0.9 request line (505).
    UnsupportedVersion,
    // --- line endings and headers ---
    /// A line ends with LF alone.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// A header line that starts with whitespace (obsolete line folding).
    ObsFold,
    /// A header name that is empty or holds a non-token byte.
    BadHeaderName,
    /// Whitespace between a header name and its colon.
    WhitespaceBeforeColon,
    /// A control byte (other than HTAB) or DEL in a header value.
    BadHeaderValue,
    /// The head is larger than `Limits::max_head_bytes` (431).
    HeadTooLarge,
    /// More header lines than `Limits::max_headers` (431).
    TooManyHeaders,
    // --- Host (server rule, RFC 9112 3.2) ---
    /// HTTP/1.1 request without a Host header.
    MissingHost,
    /// More than one Host header.
    DuplicateHost,
    /// A Host header whose value is not `uri-host [ ":" port ]`.
    BadHost,
    // --- body framing ---
    /// Content-Length is not a non-empty string of digits fitting in 64 bits.
    BadContentLength,
    /// Content-Length appears more than once.
    DuplicateContentLength,
    /// Both Content-Length and Transfer-Encoding are present.
    ContentLengthWithTransferEncoding,
    /// Transfer-Encoding whose final coding is not `chunked`, or `chunked` applied twice.
    TransferEncodingNotChunked,
    /// A transfer coding other than `chunked` (501).
    UnsupportedTransferCoding,
    // --- chunked body ---
    /// A chunk size that is empty, has a non-hex byte, or whitespace around it.
    BadChunkSize,
    /// A chunk size that does not fit in 64 bits.
    ChunkSizeOverflow,
    /// A malformed chunk extension (BWS, missing name, bad quoting...).
    BadChunkExtension,
    /// A chunk extension longer than `Limits::max_chunk_ext_bytes`.
    ChunkExtensionTooLong,
    /// Chunk data not followed by CRLF.
    MissingChunkCrlf,
    /// The trailer section is longer than `Limits::max_trailer_bytes` (431).
    TrailerTooLarge,
    // --- uwsgi ---
    /// modifier1 other than 0 (501): Velocior only speaks the WSGI request packet.
    UwsgiModifier,
    /// The vars block is larger than `Limits::max_uwsgi_vars_bytes` (431).
    UwsgiVarsTooLarge,
    /// More vars than `Limits::max_uwsgi_vars` (431).
    UwsgiTooManyVars,
    /// A key or value length that runs past the vars block.
    UwsgiTruncatedVar,
    /// A var with an empty key.
    UwsgiEmptyKey,
    /// CONTENT_LENGTH not made of digits only, too large, or given twice with different values.
    UwsgiBadContentLength,
    /// The encoder was given a key, value or vars block larger than 65535 bytes (500).
    UwsgiEncodeTooLarge,
}

impl ErrorKind {
    /// The HTTP status to answer with: 400, 414, 431, 500, 501 or 505.
    pub fn status(&self) -> u16 {
        use ErrorKind::*;
        match self {
            UnknownMethod | UnsupportedTransferCoding | UwsgiModifier => 501,
            TargetTooLong => 414,
            HeadTooLarge | TooManyHeaders | TrailerTooLarge | UwsgiVarsTooLarge
            | UwsgiTooManyVars => 431,
            UnsupportedVersion => 505,
            UwsgiEncodeTooLarge => 500,
            BadMethod
            | BadRequestLine
            | BadTarget
            | BadVersion
            | BareLf
            | BareCr
            | ObsFold
            | BadHeaderName
            | WhitespaceBeforeColon
            | BadHeaderValue
            | MissingHost
            | DuplicateHost
            | BadHost
            | BadContentLength
            | DuplicateContentLength
            | ContentLengthWithTransferEncoding
            | TransferEncodingNotChunked
            | BadChunkSize
            | ChunkSizeOverflow
            | BadChunkExtension
            | ChunkExtensionTooLong
            | MissingChunkCrlf
            | UwsgiTruncatedVar
            | UwsgiEmptyKey
            | UwsgiBadContentLength => 400,
        }
    }

    /// Short human text, for logs.
    pub fn description(&self) -> &'static str {
        use ErrorKind::*;
        match self {
            BadMethod => "invalid method",
            UnknownMethod => "unknown method",
            BadRequestLine => "malformed request line",
            BadTarget => "invalid request target",
            TargetTooLong => "request target too long",
            BadVersion => "malformed HTTP version",
            UnsupportedVersion => "unsupported HTTP version",
            BareLf => "line ends with LF without CR",
            BareCr => "CR not followed by LF",
            ObsFold => "obsolete line folding",
            BadHeaderName => "invalid header name",
            WhitespaceBeforeColon => "whitespace before header colon",
            BadHeaderValue => "invalid byte in header value",
            HeadTooLarge => "request head too large",
            TooManyHeaders => "too many headers",
            MissingHost => "HTTP/1.1 request without Host",
            DuplicateHost => "more than one Host header",
            BadHost => "invalid Host header",
            BadContentLength => "invalid Content-Length",
            DuplicateContentLength => "more than one Content-Length",
            ContentLengthWithTransferEncoding => "both Content-Length and Transfer-Encoding",
            TransferEncodingNotChunked => "Transfer-Encoding does not end with chunked",
            UnsupportedTransferCoding => "unsupported transfer coding",
            BadChunkSize => "invalid chunk size",
            ChunkSizeOverflow => "chunk size too large",
            BadChunkExtension => "invalid chunk extension",
            ChunkExtensionTooLong => "chunk extension too long",
            MissingChunkCrlf => "chunk data not followed by CRLF",
            TrailerTooLarge => "trailer section too large",
            UwsgiModifier => "unsupported uwsgi modifier1",
            UwsgiVarsTooLarge => "uwsgi vars block too large",
            UwsgiTooManyVars => "too many uwsgi vars",
            UwsgiTruncatedVar => "uwsgi var runs past the vars block",
            UwsgiEmptyKey => "uwsgi var with an empty key",
            UwsgiBadContentLength => "invalid uwsgi CONTENT_LENGTH",
            UwsgiEncodeTooLarge => "uwsgi key, value or vars block over 65535 bytes",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.description(), self.offset)
    }
}

impl std::error::Error for Error {}
