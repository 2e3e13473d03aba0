//! Calling the application and turning its result into bytes on the wire (PEP 3333).
//!
//! - a list or tuple of bytes: one head with Content-Length, the body appended at once;
//! - `wsgi.file_wrapper` over a real file: the head, then sendfile(2);
//! - any other iterable: the head on the first non-empty chunk, then chunked (HTTP/1.1),
//!   close-delimited (HTTP/1.0, uwsgi) or the app's own Content-Length;
//! - `close()` on the result is called on every path: normal end, app error, client disconnect.
//!
//! Errors before the head is sent become a 500 with a short body (the traceback goes to the log);
//! after it, the connection is closed so the client sees a truncated body, never a wrong one.

use std::borrow::Cow;

use smallvec::SmallVec;
use std::fs::File;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd};
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use velocior_protocol::response::{
    canned_response, chunk_header, encode_response_head, name_eq, parse_status, ConnectionHeader,
    ResponseFraming, ResponseOptions, CHUNK_END,
};

use super::access::AccessInfo;
use super::file_wrapper::FileWrapper;
use super::start_response::{type_name, StartResponse};
use super::watchdog::Slot;
use super::Common;
use crate::server::{Responder, Step, WireProtocol};

/// Everything needed to call the app for one request (movable to a pool thread).
pub struct Call {
    pub common: Arc<Common>,
    pub environ: Py<PyDict>,
    pub wire: WireProtocol,
    pub is_head: bool,
    pub keep_alive: bool,
    pub date: [u8; 29],
    pub access: Option<AccessInfo>,
    /// "METHOD target", for the watchdog's line.
    pub label: Option<String>,
    pub slot: Option<Arc<Slot>>,
}

pub struct WsgiResponder {
    state: State,
}

impl WsgiResponder {
    pub fn done(keep_alive: bool) -> WsgiResponder {
        WsgiResponder {
            state: State::Done(keep_alive),
        }
    }
}

enum State {
    Done(bool),
    /// The head (and any small body part) is in the output buffer; these follow, then done.
    Pieces(std::vec::IntoIter<AppBytes>, bool),
    /// The head went out and the body cannot be completed: close the connection.
    Aborted,
    Active(Box<Active>),
}

struct Active {
    call: Call,
    sr: Py<StartResponse>,
    result: Option<Py<PyAny>>,
    iter: Option<Py<PyAny>>,
    head_sent: bool,
    no_body: bool,
    framing: ResponseFraming,
    declared: Option<u64>,
    body_sent: u64,
    status: u16,
    keep_alive: bool,
    file_pending: Option<(File, u64, u64)>,
    /// Body items to write from the app's own buffers, in order, after `out`.
    pieces: Vec<AppBytes>,
}

/// A list or tuple item at least this large is not copied into the output buffer.
const ZERO_COPY_MIN: usize = 16 * 1024;

/// (Part of) an app's bytes object, written by the loop without the GIL: bytes are immutable and
/// the reference held here keeps the buffer alive and in place.
struct AppBytes {
    ptr: *const u8,
    len: usize,
    owner: Option<Py<PyAny>>,
}

impl Drop for AppBytes {
    fn drop(&mut self) {
        // Released now rather than at the next request: it may be a large buffer.
        if let Some(owner) = self.owner.take() {
            Python::with_gil(|py| owner.drop_ref(py));
        }
    }
}

// SAFETY: the pointer is into an immutable bytes object that `owner` keeps alive; reading it
// from another thread needs no GIL.
unsafe impl Send for AppBytes {}

impl AsRef<[u8]> for AppBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see above; `len` never exceeds the object's size.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Call {
    /// Call the app; the fast path (a list) leaves the whole response in `out`.
    pub fn run(self, py: Python<'_>, app: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> WsgiResponder {
        let sr = match StartResponse::acquire(py) {
            Ok(sr) => sr,
            Err(e) => return fail_early(py, &self, e, out, "could not create start_response"),
        };
        let guard = self.slot.as_ref().map(|s| s.enter());
        let args = [self.environ.as_ptr(), sr.as_ptr()];
        // SAFETY: two live argument pointers, no keywords; a new reference or NULL comes back.
        let result = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                pyo3::ffi::PyObject_Vectorcall(
                    app.as_ptr(),
                    args.as_ptr(),
                    args.len(),
                    std::ptr::null_mut(),
                ),
            )
        };
        drop(guard);
        let result = match result {
            Ok(r) => r,
            Err(e) => return fail_early(py, &self, e, out, "the application raised an exception"),
        };
        let keep_alive = self.keep_alive;
        // On the stack: boxed only when the response goes on streaming.
        let mut a = Active {
            call: self,
            sr: sr.unbind(),
            result: Some(result.clone().unbind()),
            iter: None,
            head_sent: false,
            no_body: false,
            framing: ResponseFraming::NoBody,
            declared: None,
            body_sent: 0,
            status: 0,
            keep_alive,
            file_pending: None,
            pieces: Vec::new(),
        };
        let start = out.len();
        match a.start(py, &result, out) {
            Ok(Some(ka)) => {
                let pieces = std::mem::take(&mut a.pieces);
                a.retire(py);
                WsgiResponder {
                    state: if pieces.is_empty() {
                        State::Done(ka)
                    } else {
                        State::Pieces(pieces.into_iter(), ka)
                    },
                }
            }
            Ok(None) => WsgiResponder {
                state: State::Active(Box::new(a)),
            },
            Err(e) => {
                out.truncate(start);
                WsgiResponder {
                    state: Box::new(a).fail(py, e, out),
                }
            }
        }
    }
}

fn fail_early(
    py: Python<'_>,
    call: &Call,
    e: PyErr,
    out: &mut Vec<u8>,
    what: &str,
) -> WsgiResponder {
    call.common
        .log_exception(py, &format!("{what} handling {}", call.label()), e);
    out.extend_from_slice(canned_response(500));
    call.log_access(py, 500, 0);
    WsgiResponder {
        state: State::Done(false),
    }
}

impl Call {
    /// "METHOD /path" for log lines, read back from the environ (errors are rare: no cost per request).
    pub fn label(&self) -> String {
        Python::with_gil(|py| {
            let env = self.environ.bind(py);
            let get = |k: &str| {
                env.get_item(k)
                    .ok()
                    .flatten()
                    .and_then(|v| v.extract::<String>().ok())
                    .unwrap_or_default()
            };
            format!("{} {}", get("REQUEST_METHOD"), get("PATH_INFO"))
        })
    }

    fn log_access(&self, py: Python<'_>, status: u16, bytes: u64) {
        if let Some(a) = &self.access {
            self.common.log_access(py, a, status, bytes);
        }
    }
}

/// Bytes of a body item, or an error naming what the app gave instead.
fn as_bytes<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    match item.downcast::<PyBytes>() {
        Ok(b) => Ok(b.as_bytes()),
        Err(_) => Err(PyValueError::new_err(format!(
            "the application's iterable yielded {}, not bytes",
            type_name(item)
        ))),
    }
}

/// A header's name and value as bytes.
type HeaderBytes<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// A header item of the app's list, borrowed: its name and value as latin-1 bytes.
///
/// # Safety
/// `item` must be a live object that stays alive, unchanged, for `'a`.
unsafe fn header_item<'a>(py: Python<'_>, item: *mut ffi::PyObject) -> PyResult<HeaderBytes<'a>> {
    let changed = || PyValueError::new_err("headers changed after start_response()");
    if ffi::PyTuple_Check(item) == 0 || ffi::PyTuple_GET_SIZE(item) != 2 {
        return Err(changed());
    }
    let (name, value) = (
        ffi::PyTuple_GET_ITEM(item, 0),
        ffi::PyTuple_GET_ITEM(item, 1),
    );
    if ffi::PyUnicode_Check(name) == 0 || ffi::PyUnicode_Check(value) == 0 {
        return Err(changed());
    }
    Ok((latin1_of(py, name)?, latin1_of(py, value)?))
}

/// A header name or value (or the status) as latin-1 bytes: the str's own buffer when CPython
/// stores it one byte per character (every str of latin-1 text), no copy and no scan.
///
/// # Safety
/// `s` must be a live str that stays alive, unchanged, for `'a`.
unsafe fn latin1_of<'a>(py: Python<'_>, s: *mut ffi::PyObject) -> PyResult<Cow<'a, [u8]>> {
    if ffi::PyUnicode_IS_READY(s) != 0 && ffi::PyUnicode_KIND(s) == ffi::PyUnicode_1BYTE_KIND {
        let data = ffi::PyUnicode_DATA(s).cast::<u8>();
        let len = ffi::PyUnicode_GET_LENGTH(s) as usize;
        return Ok(Cow::Borrowed(std::slice::from_raw_parts(data, len)));
    }
    // Wider kinds hold a character above U+00FF (the error below); legacy unready strings too.
    let owned = Bound::from_borrowed_ptr(py, s).downcast_into_unchecked::<PyString>();
    let t = owned.to_str()?;
    let mut bytes = Vec::with_capacity(t.len());
    for ch in t.chars() {
        let c = ch as u32;
        if c > 0xFF {
            return Err(PyValueError::new_err(format!(
                "header text {t:?} is not latin-1"
            )));
        }
        bytes.push(c as u8);
    }
    Ok(Cow::Owned(bytes))
}

impl Active {
    /// Returns Some(keep_alive) when the response is complete, None when it streams.
    fn start(
        &mut self,
        py: Python<'_>,
        result: &Bound<'_, PyAny>,
        out: &mut Vec<u8>,
    ) -> PyResult<Option<bool>> {
        if let Ok(list) = result.downcast::<PyList>() {
            return self
                .whole(py, list.len(), |i| list.get_item(i), out)
                .map(Some);
        }
        if let Ok(t) = result.downcast::<PyTuple>() {
            return self.whole(py, t.len(), |i| t.get_item(i), out).map(Some);
        }
        if let Ok(fw) = result.downcast::<FileWrapper>() {
            if let Some((file, offset, len)) = real_file(py, fw.get().filelike.bind(py)) {
                self.send_head(py, out, Some(len))?;
                let len = match self.declared {
                    Some(d) => d.min(len),
                    None => len,
                };
                if !self.no_body && len > 0 {
                    self.file_pending = Some((file, offset, len));
                    self.body_sent = len;
                    return Ok(None);
                }
                return self.finish(py, out).map(Some);
            }
        }
        self.iter = Some(result.try_iter()?.into_any().unbind());
        Ok(None)
    }

    /// A list or tuple: the length is known, one head with Content-Length.
    fn whole<'py>(
        &mut self,
        py: Python<'py>,
        len: usize,
        get: impl Fn(usize) -> PyResult<Bound<'py, PyAny>>,
        out: &mut Vec<u8>,
    ) -> PyResult<bool> {
        let mut total = 0u64;
        for i in 0..len {
            total += as_bytes(&get(i)?)?.len() as u64;
        }
        let written: Vec<Py<PyAny>> = std::mem::take(&mut self.call_sr(py).written);
        for w in &written {
            total += w.bind(py).downcast::<PyBytes>()?.as_bytes().len() as u64;
        }
        self.send_head(py, out, Some(total))?;
        for w in &written {
            self.body(w.bind(py).downcast::<PyBytes>()?.as_bytes(), out);
        }
        for i in 0..len {
            self.body_item(&get(i)?, out)?;
        }
        self.finish(py, out)
    }

    fn call_sr<'a>(
        &'a self,
        py: Python<'a>,
    ) -> std::sync::MutexGuard<'a, super::start_response::SrState> {
        self.sr.bind(py).get().state()
    }

    /// Encode the head. `known`: the body length when the server knows it.
    fn send_head(&mut self, py: Python<'_>, out: &mut Vec<u8>, known: Option<u64>) -> PyResult<()> {
        let (status, headers) = {
            let mut st = self.call_sr(py);
            st.head_frozen = true;
            match (&st.status, &st.headers) {
                (Some(s), Some(h)) => (s.clone_ref(py), h.clone_ref(py)),
                _ => {
                    return Err(PyValueError::new_err(
                        "the application never called start_response()",
                    ))
                }
            }
        };
        let status = status.bind(py);
        // SAFETY: `status` is a live str, held for the rest of this function.
        let status_bytes = unsafe { latin1_of(py, status.as_ptr())? };
        let code = parse_status(&status_bytes).map_err(|_| {
            PyValueError::new_err(format!(
                "invalid status line {:?} from the application",
                status.to_str().unwrap_or("?")
            ))
        })?;
        self.status = code;
        self.no_body = self.call.is_head || code < 200 || code == 204 || code == 304;
        let headers = headers.bind(py);
        let mut views: SmallVec<[HeaderBytes<'_>; 12]> = SmallVec::new();
        for i in 0..headers.len() {
            // SAFETY: `i` is in bounds, and nothing below runs Python code, so the list (held
            // by `headers`) keeps its items, and they their strings, alive and in place for as
            // long as `views` borrows them.
            let (n, v) =
                unsafe { header_item(py, ffi::PyList_GET_ITEM(headers.as_ptr(), i as _))? };
            if name_eq(&n, b"content-length") {
                let digits = !v.is_empty() && v.iter().all(|c| c.is_ascii_digit());
                let len = std::str::from_utf8(&v)
                    .ok()
                    .filter(|_| digits)
                    .and_then(|s| s.parse::<u64>().ok());
                let len = len.ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "invalid Content-Length header {:?} from the application",
                        String::from_utf8_lossy(&v)
                    ))
                })?;
                self.declared = Some(len);
            }
            views.push((n, v));
        }
        let wire = self.call.wire;
        let framing = if code < 200 || code == 204 || code == 304 {
            ResponseFraming::NoBody
        } else if let Some(d) = self.declared {
            ResponseFraming::Length(d)
        } else if let Some(k) = known {
            ResponseFraming::Length(k)
        } else if wire == WireProtocol::Http11 {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::CloseDelimited
        };
        if framing == ResponseFraming::CloseDelimited {
            self.keep_alive = false;
        }
        self.framing = framing;
        let connection = match (wire, self.keep_alive) {
            (WireProtocol::Uwsgi, _) => ConnectionHeader::None,
            (WireProtocol::Http11, false) => ConnectionHeader::Close,
            (WireProtocol::Http10, true) => ConnectionHeader::KeepAlive,
            _ => ConnectionHeader::None,
        };
        let date = self.call.date;
        let opts = ResponseOptions {
            framing,
            connection,
            date: Some(&date),
            server: self.call.common.server_header.as_deref(),
        };
        encode_response_head(
            out,
            &status_bytes,
            views.iter().map(|(n, v)| (&n[..], &v[..])),
            &opts,
        )
        .map_err(|e| {
            PyValueError::new_err(format!("refused to send the application's headers: {e}"))
        })?;
        self.head_sent = true;
        Ok(())
    }

    /// How many of `len` more body bytes may go out: all, or what the app's own Content-Length
    /// leaves room for (more is cut, logged, and the connection closed after the response).
    fn admit(&mut self, len: usize) -> usize {
        let Some(d) = self.declared else { return len };
        let room = d.saturating_sub(self.body_sent);
        if (len as u64) > room {
            self.call.common.log_error_gil_held(&format!(
                "{}: the application sent more than its Content-Length ({d}): body cut",
                self.call.label()
            ));
            self.keep_alive = false;
        }
        (len as u64).min(room) as usize
    }

    /// Append body bytes with the framing chosen at head time.
    fn body(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.no_body || data.is_empty() {
            return;
        }
        let data = &data[..self.admit(data.len())];
        if data.is_empty() {
            return;
        }
        if self.framing == ResponseFraming::Chunked {
            chunk_header(data.len(), out);
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(data);
        }
        self.body_sent += data.len() as u64;
    }

    /// A body item of a list or tuple response: a large one (and every one after it, to keep
    /// the order) is written from the app's bytes object instead of being copied.
    fn body_item(&mut self, item: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
        let data = as_bytes(item)?;
        let pass = self.framing != ResponseFraming::Chunked
            && (!self.pieces.is_empty() || data.len() >= ZERO_COPY_MIN);
        if !pass {
            self.body(data, out);
            return Ok(());
        }
        if self.no_body || data.is_empty() {
            return Ok(());
        }
        let len = self.admit(data.len());
        if len > 0 {
            self.pieces.push(AppBytes {
                ptr: data.as_ptr(),
                len,
                owner: Some(item.clone().unbind()),
            });
            self.body_sent += len as u64;
        }
        Ok(())
    }

    /// The end of a body: chunked terminator, length check, close(), access log.
    fn finish(&mut self, py: Python<'_>, out: &mut Vec<u8>) -> PyResult<bool> {
        if !self.head_sent {
            self.send_head(py, out, Some(0))?;
        }
        if self.framing == ResponseFraming::Chunked && !self.no_body {
            out.extend_from_slice(CHUNK_END);
        }
        if let Some(d) = self.declared {
            if !self.no_body && self.body_sent < d {
                self.call.common.log_error(py, &format!(
                    "{}: the application sent {} bytes of its Content-Length {d}: closing the connection",
                    self.call.label(),
                    self.body_sent
                ));
                self.keep_alive = false;
            }
        }
        self.close(py);
        self.call.log_access(py, self.status, self.body_sent);
        Ok(self.keep_alive)
    }

    /// A response finished inline: give back the start_response, drop the rest under the GIL we
    /// hold (no deferred decrefs).
    fn retire(self, py: Python<'_>) {
        let Active {
            call,
            sr,
            result,
            iter,
            ..
        } = self;
        StartResponse::release(py, sr);
        if let Some(x) = result {
            x.drop_ref(py);
        }
        if let Some(x) = iter {
            x.drop_ref(py);
        }
        call.environ.drop_ref(py);
    }

    fn close(&mut self, py: Python<'_>) {
        if let Some(i) = self.iter.take() {
            i.drop_ref(py);
        }
        if let Some(r) = self.result.take() {
            let r = r.into_bound(py);
            if r.is_exact_instance_of::<PyList>() || r.is_exact_instance_of::<PyTuple>() {
                return; // no close(); looking it up would raise and discard an AttributeError
            }
            if let Ok(close) = r.getattr(intern!(py, "close")) {
                if let Err(e) = close.call0() {
                    self.call.common.log_exception(
                        py,
                        &format!("{}: the result's close() raised", self.call.label()),
                        e,
                    );
                }
            }
        }
    }

    /// An app error: a 500 when nothing was sent yet, else abort the connection.
    fn fail(mut self: Box<Self>, py: Python<'_>, e: PyErr, out: &mut Vec<u8>) -> State {
        self.call
            .common
            .log_exception(py, &format!("error handling {}", self.call.label()), e);
        self.close(py);
        if self.head_sent {
            State::Aborted
        } else {
            out.extend_from_slice(canned_response(500));
            self.call.log_access(py, 500, 0);
            State::Done(false)
        }
    }

    /// One streaming step under the GIL.
    fn step(&mut self, py: Python<'_>, out: &mut Vec<u8>) -> PyResult<Option<bool>> {
        let Some(iter) = self.iter.as_ref().map(|i| i.clone_ref(py)) else {
            return self.finish(py, out).map(Some);
        };
        let iter = iter.bind(py);
        loop {
            let guard = self.call.slot.as_ref().map(|s| s.enter());
            // SAFETY: `iter` is an iterator object (from PyObject_GetIter).
            let next = unsafe { pyo3::ffi::PyIter_Next(iter.as_ptr()) };
            drop(guard);
            if next.is_null() {
                if let Some(e) = PyErr::take(py) {
                    return Err(e);
                }
                return self.finish(py, out).map(Some);
            }
            let item = unsafe { Bound::from_owned_ptr(py, next) };
            let data = as_bytes(&item)?;
            if data.is_empty() && !self.head_sent {
                continue;
            }
            let pending: Vec<Py<PyAny>> = if self.head_sent {
                Vec::new()
            } else {
                std::mem::take(&mut self.call_sr(py).written)
            };
            if !self.head_sent {
                self.send_head(py, out, None)?;
                for w in &pending {
                    self.body(w.bind(py).downcast::<PyBytes>()?.as_bytes(), out);
                }
            }
            self.body(data, out);
            if self.no_body {
                // HEAD, 204, 304: the head is all there is; stop iterating.
                return self.finish(py, out).map(Some);
            }
            if !data.is_empty() {
                return Ok(None);
            }
        }
    }
}

impl Responder for WsgiResponder {
    fn next(&mut self, out: &mut Vec<u8>) -> Step {
        match &mut self.state {
            State::Done(ka) => return Step::Done { keep_alive: *ka },
            State::Pieces(pieces, ka) => {
                return match pieces.next() {
                    Some(p) => Step::Bytes(Box::new(p)),
                    None => Step::Done { keep_alive: *ka },
                }
            }
            State::Aborted => return Step::Abort,
            State::Active(a) => {
                if let Some((file, offset, len)) = a.file_pending.take() {
                    return Step::File { file, offset, len };
                }
            }
        }
        let start = out.len();
        Python::with_gil(|py| {
            let State::Active(a) = &mut self.state else {
                unreachable!()
            };
            match a.step(py, out) {
                Ok(None) => Step::Data,
                Ok(Some(ka)) => {
                    self.state = State::Done(ka);
                    if out.len() > start {
                        Step::Data
                    } else {
                        Step::Done { keep_alive: ka }
                    }
                }
                Err(e) => {
                    out.truncate(start);
                    let State::Active(a) = std::mem::replace(&mut self.state, State::Done(false))
                    else {
                        unreachable!()
                    };
                    let head_sent = a.head_sent;
                    self.state = a.fail(py, e, out);
                    if head_sent {
                        Step::Abort
                    } else {
                        Step::Data
                    }
                }
            }
        })
    }

    fn abort(&mut self) {
        if let State::Active(mut a) = std::mem::replace(&mut self.state, State::Done(false)) {
            Python::with_gil(|py| {
                a.close(py);
                a.call.log_access(py, a.status, a.body_sent);
            });
        }
    }
}

impl Drop for WsgiResponder {
    fn drop(&mut self) {
        self.abort();
    }
}

/// A file object backed by a regular file: (dup of its descriptor, current offset, bytes left).
fn real_file(py: Python<'_>, f: &Bound<'_, PyAny>) -> Option<(File, u64, u64)> {
    let fd: i32 = f.call_method0(intern!(py, "fileno")).ok()?.extract().ok()?;
    // SAFETY: the descriptor belongs to the live file object for the duration of this call.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .ok()?;
    let file = unsafe { File::from_raw_fd(owned.into_raw_fd()) };
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    // Respect data the app may have buffered or the position it seeked to.
    let pos: u64 = match f.call_method0(intern!(py, "tell")) {
        Ok(p) => p.extract().ok()?,
        Err(_) => 0,
    };
    Some((file, pos, meta.len().saturating_sub(pos)))
}
