//! The WSGI environ: a per-worker template dict copied for each request, then the per-request keys
//! set with interned names. Header and uwsgi var names are turned into Python strings once and
//! cached (a bounded cache: a client sending random names cannot grow it without limit).

use std::cell::RefCell;
use std::collections::HashMap;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use velocior_protocol::http1::Version;
use velocior_protocol::util::percent_decode_into;

use super::input::Input;
use crate::server::{Body, ConnInfo, Request, RequestKind};

const KEY_CACHE_MAX: usize = 512;

pub struct EnvBuilder {
    template: Py<PyDict>,
    empty_input: Py<Input>,
    keys: RefCell<HashMap<Vec<u8>, Py<PyString>>>,
    scratch: RefCell<Vec<u8>>,
}

/// A native (latin-1) str from bytes, as PEP 3333 wants for every environ value.
pub fn latin1<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    if b.is_ascii() {
        // ASCII is valid UTF-8 and means the same in latin-1.
        PyString::new(py, std::str::from_utf8(b).unwrap_or_default())
    } else {
        // SAFETY: the pointer and length describe a live slice; latin-1 decoding cannot fail
        // except on memory exhaustion, which panics into a Python exception below.
        unsafe {
            let ptr = ffi::PyUnicode_DecodeLatin1(b.as_ptr().cast(), b.len() as ffi::Py_ssize_t, std::ptr::null());
            Bound::from_owned_ptr(py, ptr).downcast_into_unchecked()
        }
    }
}

impl EnvBuilder {
    pub fn new(template: Py<PyDict>, empty_input: Py<Input>) -> Self {
        EnvBuilder { template, empty_input, keys: RefCell::new(HashMap::new()), scratch: RefCell::new(Vec::new()) }
    }

    /// The environ key for an HTTP header name, or a uwsgi var name as it is.
    fn key<'py>(&self, py: Python<'py>, raw: &[u8], http: bool) -> Bound<'py, PyString> {
        if let Some(k) = self.keys.borrow().get(raw) {
            return k.bind(py).clone();
        }
        let s = if http {
            let mut k = Vec::with_capacity(raw.len() + 5);
            k.extend_from_slice(b"HTTP_");
            k.extend(raw.iter().map(|&c| if c == b'-' { b'_' } else { c.to_ascii_uppercase() }));
            latin1(py, &k)
        } else {
            latin1(py, raw)
        };
        let mut cache = self.keys.borrow_mut();
        if cache.len() < KEY_CACHE_MAX {
            cache.insert(raw.to_vec(), s.clone().unbind());
        }
        s
    }

    fn input<'py>(&self, py: Python<'py>, body: Option<Body>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match body {
            None => self.empty_input.bind(py).clone().into_any(),
            Some(b) => Bound::new(py, Input::new(Some(b)))?.into_any(),
        })
    }

    pub fn build<'py>(&self, py: Python<'py>, req: &Request<'_>, body: Option<Body>) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        match &req.kind {
            RequestKind::Http { head, headers } => {
                let buf = req.buf;
                env.set_item(intern!(py, "REQUEST_METHOD"), method(py, head.method.get(buf)))?;
                let raw_path = head.path.get(buf);
                let path = if raw_path.contains(&b'%') {
                    let mut scratch = self.scratch.borrow_mut();
                    percent_decode_into(raw_path, &mut scratch);
                    latin1(py, &scratch)
                } else {
                    latin1(py, raw_path)
                };
                env.set_item(intern!(py, "PATH_INFO"), path)?;
                env.set_item(intern!(py, "QUERY_STRING"), latin1(py, head.query.get(buf)))?;
                env.set_item(intern!(py, "RAW_URI"), latin1(py, head.target.get(buf)))?;
                env.set_item(
                    intern!(py, "SERVER_PROTOCOL"),
                    match head.version {
                        Version::Http11 => intern!(py, "HTTP/1.1"),
                        Version::Http10 => intern!(py, "HTTP/1.0"),
                    },
                )?;
                let mut host: Option<&[u8]> = None;
                for h in headers.iter() {
                    let name = h.name.get(buf);
                    let value = h.value.get(buf);
                    if name.eq_ignore_ascii_case(b"content-type") {
                        env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, value))?;
                        continue;
                    }
                    if name.eq_ignore_ascii_case(b"content-length") {
                        env.set_item(intern!(py, "CONTENT_LENGTH"), latin1(py, value))?;
                        continue;
                    }
                    if name.contains(&b'_') {
                        // `X_Foo` and `X-Foo` would share HTTP_X_FOO: a header smuggled past a
                        // proxy that filters one spelling. Dropped, as nginx does by default.
                        continue;
                    }
                    if host.is_none() && name.eq_ignore_ascii_case(b"host") {
                        host = Some(value);
                    }
                    let key = self.key(py, name, true);
                    set_or_join(&env, &key, latin1(py, value), name.eq_ignore_ascii_case(b"cookie"))?;
                }
                if body.is_some() && env.get_item(intern!(py, "CONTENT_LENGTH"))?.is_none() {
                    // A chunked body: its length is not known in advance.
                }
                server_name_port(py, &env, host, req.conn)?;
                remote(py, &env, req.conn)?;
            }
            RequestKind::Uwsgi { vars } => {
                let buf = req.buf;
                let mut https = false;
                for v in vars.iter() {
                    let k = v.key.get(buf);
                    let val = v.value.get(buf);
                    if val.is_empty() && (k == b"CONTENT_LENGTH" || k == b"CONTENT_TYPE") {
                        continue; // nginx sends them empty on bodyless requests: absent.
                    }
                    if (k == b"HTTPS" && (val.eq_ignore_ascii_case(b"on") || val == b"1"))
                        || (k == b"REQUEST_SCHEME" && val.eq_ignore_ascii_case(b"https"))
                    {
                        https = true;
                    }
                    let key = self.key(py, k, false);
                    set_or_join(&env, &key, latin1(py, val), k == b"HTTP_COOKIE")?;
                }
                if https {
                    env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
                }
                for (k, default) in [("REQUEST_METHOD", "GET"), ("PATH_INFO", ""), ("QUERY_STRING", ""), ("SERVER_PROTOCOL", "HTTP/1.1")] {
                    let key = PyString::new(py, k);
                    if env.get_item(&key)?.is_none() {
                        env.set_item(key, default)?;
                    }
                }
                if env.get_item(intern!(py, "SERVER_NAME"))?.is_none() {
                    server_name_port(py, &env, None, req.conn)?;
                }
            }
        }
        env.set_item(intern!(py, "wsgi.input"), self.input(py, body)?)?;
        Ok(env)
    }
}

extern "C" {
    // Part of CPython's C API (all supported versions); pyo3's ffi does not declare it.
    fn PyDict_SetDefault(d: *mut ffi::PyObject, key: *mut ffi::PyObject, default: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// Set `key`, or join with the value already there (a repeated header or var).
fn set_or_join(env: &Bound<'_, PyDict>, key: &Bound<'_, PyString>, value: Bound<'_, PyString>, cookie: bool) -> PyResult<()> {
    // SAFETY: valid dict, key and value; PyDict_SetDefault returns a borrowed reference.
    let existing = unsafe { PyDict_SetDefault(env.as_ptr(), key.as_ptr(), value.as_ptr()) };
    if existing.is_null() {
        return Err(PyErr::fetch(env.py()));
    }
    if existing != value.as_ptr() {
        let py = env.py();
        let old = unsafe { Bound::from_borrowed_ptr(py, existing) };
        let joined = format!("{}{}{}", old.str()?, if cookie { "; " } else { ", " }, value.to_str()?);
        env.set_item(key, PyString::new(py, &joined))?;
    }
    Ok(())
}

fn method<'py>(py: Python<'py>, m: &[u8]) -> Bound<'py, PyString> {
    match m {
        b"GET" => intern!(py, "GET").clone(),
        b"POST" => intern!(py, "POST").clone(),
        b"HEAD" => intern!(py, "HEAD").clone(),
        b"PUT" => intern!(py, "PUT").clone(),
        b"DELETE" => intern!(py, "DELETE").clone(),
        _ => latin1(py, m),
    }
}

fn server_name_port(py: Python<'_>, env: &Bound<'_, PyDict>, host: Option<&[u8]>, conn: &ConnInfo) -> PyResult<()> {
    let (name, port): (Vec<u8>, Option<Vec<u8>>) = match host.filter(|h| !h.is_empty()) {
        Some(h) => {
            if h[0] == b'[' {
                match h.iter().position(|&c| c == b']') {
                    Some(i) => (h[..=i].to_vec(), h.get(i + 2..).filter(|p| h.get(i + 1) == Some(&b':') && !p.is_empty()).map(|p| p.to_vec())),
                    None => (h.to_vec(), None),
                }
            } else {
                match h.iter().rposition(|&c| c == b':') {
                    Some(i) => (h[..i].to_vec(), Some(h[i + 1..].to_vec())),
                    None => (h.to_vec(), None),
                }
            }
        }
        None => match conn.local {
            Some(a) => (a.ip().to_string().into_bytes(), Some(a.port().to_string().into_bytes())),
            None => (b"localhost".to_vec(), None),
        },
    };
    let port = match port {
        Some(p) => p,
        None => match conn.local {
            Some(a) if host.is_none() => a.port().to_string().into_bytes(),
            _ => {
                let https = env
                    .get_item(intern!(py, "wsgi.url_scheme"))?
                    .is_some_and(|s| s.extract::<&str>().is_ok_and(|s| s == "https"));
                if https { b"443".to_vec() } else { b"80".to_vec() }
            }
        },
    };
    env.set_item(intern!(py, "SERVER_NAME"), latin1(py, &name))?;
    env.set_item(intern!(py, "SERVER_PORT"), latin1(py, &port))?;
    Ok(())
}

fn remote(py: Python<'_>, env: &Bound<'_, PyDict>, conn: &ConnInfo) -> PyResult<()> {
    if let Some(p) = conn.peer {
        let ip = match p.ip() {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(p.ip()),
            ip => ip,
        };
        env.set_item(intern!(py, "REMOTE_ADDR"), ip.to_string())?;
        env.set_item(intern!(py, "REMOTE_PORT"), p.port().to_string())?;
    }
    Ok(())
}
