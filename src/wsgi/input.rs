//! `wsgi.input`: the request body as a file-like object. Reads that need the socket release the
//! GIL and are bounded by the body timeout, so they never block forever.

use std::io;

use pyo3::exceptions::{PyIOError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::server::body::BodyState;
use crate::server::Body;

const CHUNK: usize = 64 * 1024;

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
        let v = self.read_vec(py, size)?;
        Ok(PyBytes::new(py, &v))
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
