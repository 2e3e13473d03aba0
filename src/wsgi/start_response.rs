//! `start_response` and the `write()` callable it returns (PEP 3333).

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

/// What the app told us, read by the responder once the app returns (or at the first write()).
#[derive(Default)]
pub struct SrState {
    pub status: Option<Py<PyString>>,
    pub headers: Option<Py<PyList>>,
    /// The head is on its way (first non-empty body bytes or a write() call): headers are frozen.
    pub head_frozen: bool,
    /// Bytes given to write(), in order, before the iterable's.
    pub written: Vec<Py<PyAny>>,
}

#[pyclass(module = "velocior._velocior", frozen)]
pub struct StartResponse {
    state: Mutex<SrState>,
}

impl Default for StartResponse {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    /// A finished request's start_response, ready for the next request on this thread.
    static SPARE: Cell<Option<Py<StartResponse>>> = const { Cell::new(None) };
}

impl StartResponse {
    pub fn new() -> Self {
        StartResponse {
            state: Mutex::new(SrState::default()),
        }
    }
    pub fn state(&self) -> MutexGuard<'_, SrState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A start_response for a new request: the one `release` kept, or a new one.
    pub fn acquire(py: Python<'_>) -> PyResult<Bound<'_, StartResponse>> {
        match SPARE.with(Cell::take) {
            Some(sr) => Ok(sr.into_bound(py)),
            None => Bound::new(py, StartResponse::new()),
        }
    }

    /// The request is over. If nothing else holds this start_response (the app kept no
    /// reference), it is reset and kept for the next request on this thread.
    pub fn release(py: Python<'_>, sr: Py<StartResponse>) {
        let sr = sr.into_bound(py);
        if sr.get_refcnt() != 1 {
            return;
        }
        let (status, headers, written) = {
            let mut st = sr.get().state();
            st.head_frozen = false;
            (
                st.status.take(),
                st.headers.take(),
                std::mem::take(&mut st.written),
            )
        };
        // Dropped outside the lock: a decref can run arbitrary code.
        if let Some(x) = status {
            x.drop_ref(py);
        }
        if let Some(x) = headers {
            x.drop_ref(py);
        }
        drop(written);
        if let Some(old) = SPARE.with(|s| s.replace(Some(sr.unbind()))) {
            old.drop_ref(py);
        }
    }
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, headers, exc_info=None)`. It returns itself as the `write()`
    /// callable (no new object per request): called with bytes alone, it writes them.
    #[pyo3(signature = (status, headers=None, exc_info=None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: Option<&Bound<'_, PyAny>>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let me = slf.get();
        let Some(headers) = headers else {
            if status.is_instance_of::<pyo3::types::PyBytes>() {
                me.write(status)?;
                return Ok(slf.py().None());
            }
            return Err(PyTypeError::new_err(
                "start_response() missing its headers argument",
            ));
        };
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let st = me.state();
            if st.status.is_some() {
                match exc_info {
                    None => {
                        return Err(PyRuntimeError::new_err(
                            "start_response() called a second time without exc_info",
                        ))
                    }
                    Some(exc) if st.head_frozen => {
                        // PEP 3333: the headers are gone; re-raise the original exception.
                        drop(st);
                        let t = exc.downcast::<PyTuple>()?;
                        let value = t.get_item(1)?;
                        let tb = t.get_item(2)?;
                        let err = PyErr::from_value(value.call_method1("with_traceback", (tb,))?);
                        return Err(err);
                    }
                    Some(_) => {}
                }
            }
        }
        let status = status.downcast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!("status must be a str, not {}", type_name(status)))
        })?;
        let list = headers.downcast::<PyList>().map_err(|_| {
            PyTypeError::new_err(format!(
                "headers must be a list, not {}",
                type_name(headers)
            ))
        })?;
        for item in list.iter() {
            let ok = item
                .downcast::<PyTuple>()
                .map(|t| {
                    t.len() == 2
                        && t.get_item(0).is_ok_and(|n| n.is_instance_of::<PyString>())
                        && t.get_item(1).is_ok_and(|v| v.is_instance_of::<PyString>())
                })
                .unwrap_or(false);
            if !ok {
                return Err(PyTypeError::new_err(format!(
                    "each header must be a (str, str) tuple, got {}",
                    item.repr().map(|r| r.to_string()).unwrap_or_default()
                )));
            }
        }
        let mut st = me.state();
        st.status = Some(status.clone().unbind());
        st.headers = Some(list.clone().unbind());
        drop(st);
        Ok(slf.clone().into_any().unbind())
    }

    /// The legacy write() callable: its bytes go out before the iterable's, in order.
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if !data.is_instance_of::<pyo3::types::PyBytes>() {
            return Err(PyTypeError::new_err(format!(
                "write() takes bytes, not {}",
                type_name(data)
            )));
        }
        let mut st = self.state();
        if st.status.is_none() {
            return Err(PyRuntimeError::new_err(
                "write() called before start_response()",
            ));
        }
        st.head_frozen = true;
        st.written.push(data.clone().unbind());
        Ok(())
    }
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}
