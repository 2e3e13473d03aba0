//! Size limits, with defaults that protect a server that nobody tuned.

/// Every size limit the parsers enforce. The server may change any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line + headers + final CRLF (431 when exceeded). Default 16384.
    pub max_head_bytes: usize,
    /// Header lines in one request head (431). Default 100.
    pub max_headers: usize,
    /// Request-target length (414). Default 8190, the figure nginx and gunicorn use.
    pub max_target_bytes: usize,
    /// uwsgi vars block (the u16 after modifier1). Default 65535; values above 65535 act as 65535
    /// since the wire format cannot express more.
    pub max_uwsgi_vars_bytes: usize,
    /// uwsgi vars in one packet. Default 512.
    pub max_uwsgi_vars: usize,
    /// Chunk extension bytes (after the size, before CRLF) per chunk. Default 1024.
    pub max_chunk_ext_bytes: usize,
    /// Trailer section bytes after the last chunk (431). Default 8192.
    pub max_trailer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16384,
            max_headers: 100,
            max_target_bytes: 8190,
            max_uwsgi_vars_bytes: 65535,
            max_uwsgi_vars: 512,
            max_chunk_ext_bytes: 1024,
            max_trailer_bytes: 8192,
        }
    }
}
