//! `velocior._velocior`: the classes Python sees. The server loop lives in `server`, everything
//! that touches Python at request time in `wsgi`. The user-facing docs are in `_velocior.pyi`.

pub mod server;
pub mod wsgi;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use server::{Cidr, Config, Control, ListenerSpec, Protocol};
use wsgi::{WsgiOptions, WsgiService};

/// One worker's server: listeners, options and the app; `run()` serves until stopped.
#[pyclass(module = "velocior._velocior", frozen)]
struct Server {
    app: Py<PyAny>,
    listeners: Mutex<Vec<ListenerSpec>>,
    config: Config,
    wsgi: Mutex<Option<WsgiOptions>>,
    control: Arc<Control>,
    busy_threads: Mutex<Option<Arc<AtomicUsize>>>,
}

fn secs(v: &Bound<'_, PyAny>, key: &str) -> PyResult<Duration> {
    let f: f64 = v.extract()?;
    if !f.is_finite() || f < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{key} must be a non-negative number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(f))
}

fn parse_options(options: &Bound<'_, PyDict>) -> PyResult<(Config, WsgiOptions)> {
    let mut c = Config::default();
    let mut w = WsgiOptions {
        threads: 1,
        access_log: false,
        multiprocess: false,
        url_scheme: "http".into(),
        worker_timeout: None,
        server_header: Some(b"velocior".to_vec()),
    };
    for (k, v) in options.iter() {
        let key: String = k.extract()?;
        match key.as_str() {
            "threads" => {
                let n: usize = v.extract()?;
                if n == 0 {
                    return Err(PyValueError::new_err("threads must be at least 1"));
                }
                w.threads = n;
            }
            "keepalive_timeout" => c.keepalive_timeout = secs(&v, &key)?,
            "header_timeout" => c.header_timeout = secs(&v, &key)?,
            "body_timeout" => c.body_timeout = secs(&v, &key)?,
            "write_timeout" => c.write_timeout = secs(&v, &key)?,
            "graceful_timeout" => c.graceful_timeout = secs(&v, &key)?,
            "max_connections" => {
                c.max_connections = v.extract::<usize>()?.max(1);
            }
            "max_requests" => c.max_requests = v.extract()?,
            "worker_timeout" => {
                let d = secs(&v, &key)?;
                w.worker_timeout = (!d.is_zero()).then_some(d);
            }
            "uwsgi_allow_from" => {
                let list = v.downcast::<PyList>()?;
                let mut nets = Vec::new();
                for item in list.iter() {
                    let s: String = item.extract()?;
                    nets.push(Cidr::parse(&s).map_err(PyValueError::new_err)?);
                }
                c.uwsgi_allow_from = nets;
            }
            "access_log" => w.access_log = v.extract()?,
            "server_header" => {
                let s: Option<String> = v.extract()?;
                if let Some(s) = &s {
                    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
                        return Err(PyValueError::new_err(
                            "server_header must not contain control characters",
                        ));
                    }
                }
                w.server_header = s.map(|s| s.into_bytes());
                c.server_header = w.server_header.clone();
            }
            "multiprocess" => w.multiprocess = v.extract()?,
            "url_scheme" => w.url_scheme = v.extract()?,
            "max_body_in_memory" => c.max_body_in_memory = v.extract()?,
            "max_body_size" => c.max_body_size = v.extract()?,
            "retain_heap_mib" => retain_heap(v.extract()?),
            "native_response" => c.native_response = v.extract()?,
            "max_head_bytes" => c.limits.max_head_bytes = v.extract()?,
            "max_headers" => c.limits.max_headers = v.extract()?,
            "max_target_bytes" => c.limits.max_target_bytes = v.extract()?,
            "max_uwsgi_vars_bytes" => {
                let n: usize = v.extract()?;
                c.limits.max_uwsgi_vars_bytes = n.min(65535);
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown server option {other:?}"
                )))
            }
        }
    }
    Ok((c, w))
}

/// Let this process's malloc keep up to `mib` MiB of freed memory at the top of its heap for
/// reuse, and serve blocks up to that size (at most 32 MiB, glibc's own ceiling for its adaptive
/// threshold) from the heap rather than from fresh mappings: a large body is then not
/// page-faulted in again on every request. 0 keeps the C library's own policy.
fn retain_heap(mib: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if mib > 0 {
        let bytes = mib.saturating_mul(1 << 20);
        let trim = bytes.min(i32::MAX as usize) as i32;
        let mmap = bytes.min(32 << 20) as i32;
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
            libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = mib;
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (app, listeners, options=None))]
    fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        listeners: Vec<(i32, String, String)>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let (config, wsgi) = match options {
            Some(o) => parse_options(o)?,
            None => parse_options(&PyDict::new(py))?,
        };
        let mut specs = Vec::new();
        for (fd, proto, display) in listeners {
            let protocol = match proto.as_str() {
                "http" => Protocol::Http,
                "uwsgi" => Protocol::Uwsgi,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown listener protocol {other:?}"
                    )))
                }
            };
            let fd = server::dup_fd(fd)
                .map_err(|e| PyOSError::new_err(format!("listener {display}: {e}")))?;
            specs.push(ListenerSpec {
                fd,
                protocol,
                display,
            });
        }
        if specs.is_empty() {
            return Err(PyValueError::new_err("at least one listener is needed"));
        }
        Ok(Server {
            app,
            listeners: Mutex::new(specs),
            config,
            wsgi: Mutex::new(Some(wsgi)),
            control: Arc::new(Control::default()),
            busy_threads: Mutex::new(None),
        })
    }

    /// Serve until stopped; returns "stopped", "quick" or "max-requests".
    #[pyo3(signature = (wakeup_fd=-1))]
    fn run(&self, py: Python<'_>, wakeup_fd: i32) -> PyResult<&'static str> {
        let opts = self
            .wsgi
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("run() can be called only once"))?;
        let signal_error = Arc::new(Mutex::new(None));
        let service = WsgiService::new(py, self.app.clone_ref(py), &opts, signal_error.clone())?;
        *self.busy_threads.lock().unwrap_or_else(|e| e.into_inner()) = Some(service.busy_threads());
        let config = self.config.clone();
        let listeners =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        let control = self.control.clone();
        let wakeup = (wakeup_fd >= 0).then_some(wakeup_fd);
        let r = py.allow_threads(move || server::run(service, config, listeners, control, wakeup));
        if let Some(e) = signal_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(e);
        }
        match r {
            Ok(reason) => Ok(reason.as_str()),
            Err(e) => Err(PyOSError::new_err(format!("server failed: {e}"))),
        }
    }

    /// Ask the server to stop: gracefully (finish in-flight requests) or at once.
    #[pyo3(signature = (graceful=true))]
    fn stop(&self, graceful: bool) {
        self.control.stop(graceful);
    }

    /// App threads (`threads` > 1) still inside a request. After a quick stop they may go on
    /// running the app; the interpreter must not be finalized under them (exit with os._exit).
    #[getter]
    fn busy_threads(&self) -> usize {
        match &*self.busy_threads.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(b) => b.load(Ordering::SeqCst),
            None => 0,
        }
    }

    #[getter]
    fn requests_served(&self) -> u64 {
        self.control.requests_served()
    }
}

#[pymodule]
fn _velocior(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Server>()?;
    m.add_class::<wsgi::file_wrapper::FileWrapper>()?;
    m.add_class::<wsgi::input::Input>()?;
    m.add_class::<wsgi::start_response::StartResponse>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
