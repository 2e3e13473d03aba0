//! `wsgi.file_wrapper`: when the wrapped object is a real file, the responder sends it with
//! sendfile(2); otherwise it is iterated in `blksize` blocks.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

#[pyclass(module = "velocior._velocior", frozen)]
pub struct FileWrapper {
    pub filelike: Py<PyAny>,
    pub blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1(pyo3::intern!(py, "read"), (self.blksize,))?;
        let empty = match data.downcast::<PyBytes>() {
            Ok(b) => b.as_bytes().is_empty(),
            Err(_) => data.len().map(|n| n == 0).unwrap_or(false),
        };
        Ok(if empty { None } else { Some(data) })
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr(pyo3::intern!(py, "close"))? {
            f.call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }
}
