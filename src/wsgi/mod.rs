//! The WSGI adapter: the only code that touches Python at request time.
//!
//! `WsgiService` implements the server's `Service`: for each request it builds the environ from a
//! per-worker template, then either calls the app right here on the loop thread (the default: no
//! hand-off, one GIL acquisition for a whole list response) or hands the call to the thread pool.

mod access;
pub mod environ;
pub mod file_wrapper;
pub mod input;
mod pool;
mod response;
pub mod start_response;
mod watchdog;

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};
use velocior_protocol::http1::Version;

use crate::server::{
    Body, Dispatch, Piece, Request, RequestKind, Responder, Service, Step, WireProtocol,
};
pub use access::AccessInfo;
use environ::EnvBuilder;
use input::Input;
use response::{Call, WsgiResponder};
use watchdog::{Slot, Watchdog};

/// What every request shares (movable to pool threads).
pub struct Common {
    error_logger: Py<PyAny>,
    access_logger: Py<PyAny>,
    pub server_header: Option<Vec<u8>>,
}

impl Common {
    pub fn log_error(&self, py: Python<'_>, msg: &str) {
        let _ = self
            .error_logger
            .bind(py)
            .call_method1(pyo3::intern!(py, "error"), (msg,));
    }

    pub fn log_error_gil_held(&self, msg: &str) {
        Python::with_gil(|py| self.log_error(py, msg));
    }

    pub fn log_info(&self, py: Python<'_>, msg: &str) {
        let _ = self
            .error_logger
            .bind(py)
            .call_method1(pyo3::intern!(py, "info"), (msg,));
    }

    /// An error line with the exception's traceback (never sent to the client).
    pub fn log_exception(&self, py: Python<'_>, msg: &str, err: PyErr) {
        let kwargs = PyDict::new(py);
        // A (type, value, traceback) tuple: the traceback is kept apart from the value in PyErr.
        let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
        let _ = kwargs.set_item("exc_info", exc_info);
        let r = self.error_logger.bind(py).call_method(
            pyo3::intern!(py, "error"),
            (msg,),
            Some(&kwargs),
        );
        if r.is_err() {
            err.print(py);
        }
    }

    pub fn log_access(&self, py: Python<'_>, info: &AccessInfo, status: u16, bytes: u64) {
        let line = info.line(status, bytes);
        let _ = self
            .access_logger
            .bind(py)
            .call_method1(pyo3::intern!(py, "info"), (line,));
    }
}

/// Per-worker options the adapter needs (the rest is the server's `Config`).
pub struct WsgiOptions {
    pub threads: usize,
    pub access_log: bool,
    pub multiprocess: bool,
    pub url_scheme: String,
    pub worker_timeout: Option<Duration>,
    pub server_header: Option<Vec<u8>>,
}

pub struct WsgiService {
    app: Py<PyAny>,
    common: Arc<Common>,
    env: EnvBuilder,
    access_log: bool,
    pool: Option<pool::Pool>,
    watchdog: Option<Arc<Watchdog>>,
    loop_slot: Option<Arc<Slot>>,
    signal_error: Arc<Mutex<Option<PyErr>>>,
    /// The GIL state while the loop holds it for a turn (inline mode).
    turn_gil: Cell<Option<pyo3::ffi::PyGILState_STATE>>,
}

thread_local! {
    static THREAD_SLOT: RefCell<Option<Arc<Slot>>> = const { RefCell::new(None) };
}

impl WsgiService {
    pub fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        opts: &WsgiOptions,
        signal_error: Arc<Mutex<Option<PyErr>>>,
    ) -> PyResult<Self> {
        let logging = py.import("logging")?;
        let error_logger = logging
            .call_method1("getLogger", ("velocior.error",))?
            .unbind();
        let access_logger = logging
            .call_method1("getLogger", ("velocior.access",))?
            .unbind();
        let base: [(&str, Bound<'_, PyAny>); 10] = [
            ("wsgi.version", PyTuple::new(py, [1, 0])?.into_any()),
            (
                "wsgi.url_scheme",
                PyString::new(py, &opts.url_scheme).into_any(),
            ),
            ("wsgi.errors", py.import("sys")?.getattr("stderr")?),
            (
                "wsgi.multithread",
                PyBool::new(py, opts.threads > 1).to_owned().into_any(),
            ),
            (
                "wsgi.multiprocess",
                PyBool::new(py, opts.multiprocess).to_owned().into_any(),
            ),
            (
                "wsgi.run_once",
                PyBool::new(py, false).to_owned().into_any(),
            ),
            (
                "wsgi.input_terminated",
                PyBool::new(py, true).to_owned().into_any(),
            ),
            (
                "wsgi.file_wrapper",
                py.get_type::<file_wrapper::FileWrapper>().into_any(),
            ),
            ("SCRIPT_NAME", PyString::new(py, "").into_any()),
            (
                "SERVER_SOFTWARE",
                PyString::new(py, concat!("velocior/", env!("CARGO_PKG_VERSION"))).into_any(),
            ),
        ];
        let empty = Py::new(py, Input::new(None))?;
        let env = EnvBuilder::new(py, &base, empty, opts.url_scheme == "https")?;
        let watchdog = opts.worker_timeout.map(Watchdog::start);
        let loop_slot = watchdog.as_ref().map(|w| w.slot());
        Ok(WsgiService {
            app,
            common: Arc::new(Common {
                error_logger,
                access_logger,
                server_header: opts.server_header.clone(),
            }),
            env,
            access_log: opts.access_log,
            pool: (opts.threads > 1).then(|| pool::Pool::new(opts.threads)),
            watchdog,
            loop_slot,
            signal_error,
            turn_gil: Cell::new(None),
        })
    }

    fn access_info(&self, req: &Request<'_>) -> AccessInfo {
        let buf = req.buf;
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let remote = req.conn.peer_ip.clone();
        match &req.kind {
            RequestKind::Http { head, headers } => {
                let find = |name: &[u8]| {
                    headers
                        .iter()
                        .find(|h| h.name.get(buf).eq_ignore_ascii_case(name))
                        .map(|h| s(h.value.get(buf)))
                        .unwrap_or_default()
                };
                AccessInfo {
                    remote,
                    method: s(head.method.get(buf)),
                    target: s(head.target.get(buf)),
                    protocol: match head.version {
                        Version::Http11 => "HTTP/1.1".into(),
                        Version::Http10 => "HTTP/1.0".into(),
                    },
                    referer: find(b"referer"),
                    user_agent: find(b"user-agent"),
                }
            }
            RequestKind::Uwsgi { vars } => {
                let find = |name: &[u8]| {
                    vars.iter()
                        .find(|v| v.key.get(buf) == name)
                        .map(|v| s(v.value.get(buf)))
                        .unwrap_or_default()
                };
                let addr = find(b"REMOTE_ADDR");
                AccessInfo {
                    remote: if addr.is_empty() { remote } else { addr },
                    method: find(b"REQUEST_METHOD"),
                    target: find(b"REQUEST_URI"),
                    protocol: find(b"SERVER_PROTOCOL"),
                    referer: find(b"HTTP_REFERER"),
                    user_agent: find(b"HTTP_USER_AGENT"),
                }
            }
        }
    }
}

/// Responses from a pool thread arrive as owned pieces through a bounded channel.
fn run_remote(call: Call, app: Py<PyAny>, tx: async_channel::Sender<Piece>) {
    let mut out = Vec::new();
    let mut r: WsgiResponder = Python::with_gil(|py| call.run(py, app.bind(py), &mut out));
    loop {
        let step = r.next(&mut out);
        let flush = |out: &mut Vec<u8>| -> bool {
            out.is_empty() || tx.send_blocking(Piece::Data(std::mem::take(out))).is_ok()
        };
        let ok = match step {
            Step::Data => flush(&mut out),
            Step::Bytes(b) => flush(&mut out) && tx.send_blocking(Piece::Bytes(b)).is_ok(),
            Step::File { file, offset, len } => {
                flush(&mut out) && tx.send_blocking(Piece::File { file, offset, len }).is_ok()
            }
            Step::Done { keep_alive } => {
                let _ = flush(&mut out) && tx.send_blocking(Piece::Done { keep_alive }).is_ok();
                return;
            }
            Step::Abort => {
                let _ = flush(&mut out) && tx.send_blocking(Piece::Abort).is_ok();
                return;
            }
        };
        if !ok {
            // The connection is gone: close() the app's iterable.
            r.abort();
            return;
        }
    }
}

impl WsgiService {
    /// Inline mode: take the GIL for the rest of this loop turn (once; `turn` releases it).
    /// With a pool, pool threads need it while the loop does I/O: the loop takes it per use.
    fn hold_gil(&self) {
        if self.pool.is_none() && self.turn_gil.get().is_none() {
            // SAFETY: called on the loop thread, which has a thread state; released in `turn`.
            self.turn_gil
                .set(Some(unsafe { pyo3::ffi::PyGILState_Ensure() }));
        }
    }

    /// How many pool threads are inside the app right now (0 without a pool).
    pub fn busy_threads(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        match &self.pool {
            Some(p) => p.busy(),
            None => Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }
}

impl Service for WsgiService {
    type Responder = WsgiResponder;

    fn dispatch(
        &self,
        req: &Request<'_>,
        wire: WireProtocol,
        body: Option<Body>,
        out: &mut Vec<u8>,
    ) -> Dispatch<WsgiResponder> {
        self.hold_gil();
        Python::with_gil(|py| {
            let info = (self.access_log || self.watchdog.is_some()).then(|| self.access_info(req));
            let label = self
                .watchdog
                .as_ref()
                .and(info.as_ref())
                .map(|i| format!("{} {}", i.method, i.target));
            let environ = match self.env.build(py, req, body) {
                Ok(e) => e.unbind(),
                Err(e) => {
                    self.common
                        .log_exception(py, "could not build the WSGI environ", e);
                    out.extend_from_slice(velocior_protocol::response::canned_response(500));
                    return Dispatch::Inline(WsgiResponder::done(false));
                }
            };
            let call = Call {
                common: self.common.clone(),
                environ,
                wire,
                is_head: req.is_head(),
                keep_alive: req.keep_alive,
                date: req.date,
                access: if self.access_log { info } else { None },
                label,
                slot: None,
            };
            match &self.pool {
                None => {
                    let call = Call {
                        slot: self.loop_slot.clone(),
                        ..call
                    };
                    if let (Some(s), Some(l)) = (&call.slot, &call.label) {
                        s.set_label(l.clone());
                    }
                    Dispatch::Inline(call.run(py, self.app.bind(py), out))
                }
                Some(pool) => {
                    let (tx, rx) = async_channel::bounded(4);
                    let app = self.app.clone_ref(py);
                    let watchdog = self.watchdog.clone();
                    pool.submit(Box::new(move || {
                        let slot = watchdog.map(|w| {
                            THREAD_SLOT
                                .with(|s| s.borrow_mut().get_or_insert_with(|| w.slot()).clone())
                        });
                        if let (Some(s), Some(l)) = (&slot, &call.label) {
                            s.set_label(l.clone());
                        }
                        run_remote(Call { slot, ..call }, app, tx);
                    }));
                    Dispatch::Remote(rx)
                }
            }
        })
    }

    fn log_error(&self, msg: &str) {
        Python::with_gil(|py| self.common.log_error(py, msg));
    }

    fn log_info(&self, msg: &str) {
        Python::with_gil(|py| self.common.log_info(py, msg));
    }

    /// Without a pool, the GIL taken by the turn's first request (`hold_gil`) is kept to the end
    /// of the turn: every request answered in that turn shares one acquisition (a pipelined
    /// batch, or all the connections that became readable together), and a turn that only
    /// accepts, writes or closes never takes it.
    fn turn<R>(&self, f: impl FnOnce() -> R) -> R {
        // Released on every exit, a panic unwinding out of the turn included.
        struct Release<'a>(&'a Cell<Option<pyo3::ffi::PyGILState_STATE>>);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if let Some(state) = self.0.take() {
                    // SAFETY: taken by `hold_gil` on this thread in this turn; every acquisition
                    // nested in it has been released (they are all scoped inside the turn).
                    unsafe { pyo3::ffi::PyGILState_Release(state) };
                }
            }
        }
        let _release = Release(&self.turn_gil);
        f()
    }

    fn check_signals(&self) -> bool {
        Python::with_gil(|py| match py.check_signals() {
            Ok(()) => true,
            Err(e) => {
                *self.signal_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                false
            }
        })
    }
}
