//! `wsgi.input`: the request body as a file-like object. Reads that need the socket release the
//! GIL and are bounded by the body timeout, so they never block forever.

use std::io;

use pyo3::exceptions::{PyIOError, PyTimeoutError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::server::body::{BodyState, Fill};
use crate::server::Body;

const CHUNK: usize = 64 * 1024;
/// Largest read() given a bytes object of its final size up front (larger ones grow as they go).
const MAX_FILL: u64 = 64 << 20;

/// The buffer of a bytes object being filled, handed to the code that runs without the GIL.
#[derive(Clone, Copy)]
struct SendPtr(*mut u8);
// SAFETY: only the thread that allocated the bytes object writes through it, while it waits.
unsafe impl Send for SendPtr {}

#[pyclass(module = "velocior._velocior", frozen)]
pub struct Input {
    body: Option<Body>,
}

impl Input {
    pub fn new(body: Option<Body>) -> Self {
        Input { body }
    }

    fn run<T: Default + Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut BodyState) -> io::Result<T> + Send,
    ) -> PyResult<T> {
        let Some(body) = &self.body else {
            return Ok(T::default());
        };
        let needs_io = {
            let g = body.lock();
            !g.fully_buffered() || g.continue_pending()
        };
        let r = if needs_io {
            py.allow_threads(|| f(&mut body.lock()))
        } else {
            f(&mut body.lock())
        };
        r.map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => PyTimeoutError::new_err(format!("wsgi.input: {e}")),
            _ => PyIOError::new_err(format!("wsgi.input: {e}")),
        })
    }

    fn read_vec(&self, py: Python<'_>, size: Option<isize>) -> PyResult<Vec<u8>> {
        let size = size.filter(|s| *s >= 0).map(|s| s as usize);
        self.run(py, move |b| {
            let mut out = Vec::new();
            match size {
                Some(n) => {
                    while out.len() < n {
                        if b.read(n - out.len(), &mut out)? == 0 {
                            break;
                        }
                    }
                }
                None => {
                    if let Some(hint) = b.remaining_hint() {
                        out.reserve(hint.min(1 << 26) as usize);
                    }
                    while b.read(CHUNK, &mut out)? > 0 {}
                }
            }
            Ok(out)
        })
    }

    /// Read up to `n` bytes straight into a new bytes object.
    fn read_filled<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        // SAFETY: a new, uninitialised bytes object of size `n` that nothing else can see yet.
        let mut obj =
            unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), n as ffi::Py_ssize_t) };
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        // Owns `obj` until it is handed to Python (or released on error).
        let owned = unsafe { Bound::from_owned_ptr(py, obj) };
        let data = SendPtr(unsafe { ffi::PyBytes_AsString(obj) }.cast::<u8>());
        let filled = self.run(py, move |b| {
            let data = data;
            // SAFETY: `n` bytes at `data` belong to the bytes object, alive until we return;
            // uninitialised until written, hence MaybeUninit.
            let buf = unsafe {
                std::slice::from_raw_parts_mut(data.0.cast::<std::mem::MaybeUninit<u8>>(), n)
            };
            let mut sink = Fill { buf, len: 0 };
            while sink.len < n {
                if b.read(n - sink.len, &mut sink)? == 0 {
                    break;
                }
            }
            Ok(sink.len)
        })?;
        if filled == n {
            return Ok(owned.downcast_into::<PyBytes>()?);
        }
        obj = owned.into_ptr();
        // SAFETY: `obj` is our only reference; on failure it is released and set to NULL.
        if unsafe { ffi::_PyBytes_Resize(&mut obj, filled as ffi::Py_ssize_t) } < 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(unsafe { Bound::from_owned_ptr(py, obj).downcast_into_unchecked() })
    }

    fn line_vec(&self, py: Python<'_>, size: Option<isize>) -> PyResult<Vec<u8>> {
        let max = size
            .filter(|s| *s >= 0)
            .map(|s| s as usize)
            .unwrap_or(usize::MAX);
        self.run(py, move |b| {
            let mut out = Vec::new();
            b.read_line(max, &mut out)?;
            Ok(out)
        })
    }
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        // With a known body length, the bytes object is allocated once at its final size (or
        // trimmed) and filled in place: no intermediate buffer, one copy.
        let size = size.filter(|s| *s >= 0).map(|s| s as u64);
        let known = self
            .body
            .as_ref()
            .and_then(|b| b.lock().remaining_hint())
            .map(|left| size.map_or(left, |s| s.min(left)));
        match known {
            Some(n) if n <= MAX_FILL => self.read_filled(py, n as usize),
            _ => {
                let v = self.read_vec(py, size.map(|s| s as isize))?;
                Ok(PyBytes::new(py, &v))
            }
        }
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.line_vec(py, size)?;
        Ok(PyBytes::new(py, &v))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = hint.filter(|h| *h > 0).map(|h| h as usize);
        let list = PyList::empty(py);
        let mut total = 0usize;
        loop {
            let line = self.line_vec(py, None)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            list.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(list)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.line_vec(py, None)?;
        Ok(if line.is_empty() {
            None
        } else {
            Some(PyBytes::new(py, &line))
        })
    }

    fn readable(&self) -> bool {
        true
    }

    fn close(&self) {}
}
