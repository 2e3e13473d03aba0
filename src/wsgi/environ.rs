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
/// Header / var positions remembered (more than nginx's stock uwsgi_params plus common headers).
const POS_CACHE_MAX: usize = 64;

pub struct EnvBuilder {
    template: Py<PyDict>,
    empty_input: Py<Input>,
    keys: RefCell<HashMap<Vec<u8>, Py<PyString>>>,
    http_pos: RefCell<Vec<Option<NamedKey>>>,
    uwsgi_pos: RefCell<Vec<Option<NamedKey>>>,
    scratch: RefCell<Vec<u8>>,
    /// The last peer's REMOTE_ADDR / REMOTE_PORT strings: requests on one connection (keep-alive,
    /// pipelining) reuse them instead of making new ones.
    last_peer: RefCell<Option<PeerStrings>>,
    /// The last Host header and the HTTP_HOST / SERVER_NAME / SERVER_PORT strings made from it.
    last_host: RefCell<Option<HostStrings>>,
}

/// A header or var name as received, and its environ key.
type NamedKey = (Box<[u8]>, Py<PyString>);

/// A peer address with its REMOTE_ADDR and REMOTE_PORT strings.
type PeerStrings = (std::net::SocketAddr, Py<PyString>, Py<PyString>);

struct HostStrings {
    raw: Vec<u8>,
    value: Py<PyString>,
    name: Py<PyString>,
    port: Option<Py<PyString>>,
}

/// A native (latin-1) str from bytes, as PEP 3333 wants for every environ value.
pub fn latin1<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    // SAFETY: the pointer and length describe a live slice; latin-1 decoding cannot fail (only
    // memory exhaustion, where from_owned_ptr panics into a Python exception).
    unsafe {
        let ptr = ffi::PyUnicode_DecodeLatin1(
            b.as_ptr().cast(),
            b.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        );
        Bound::from_owned_ptr(py, ptr).downcast_into_unchecked()
    }
}

impl EnvBuilder {
    pub fn new(template: Py<PyDict>, empty_input: Py<Input>) -> Self {
        EnvBuilder {
            template,
            empty_input,
            keys: RefCell::new(HashMap::new()),
            http_pos: RefCell::new(Vec::new()),
            uwsgi_pos: RefCell::new(Vec::new()),
            scratch: RefCell::new(Vec::new()),
            last_peer: RefCell::new(None),
            last_host: RefCell::new(None),
        }
    }

    /// The environ key for the `pos`-th HTTP header name, or uwsgi var name (as it is).
    ///
    /// A client (or nginx) sends the same names in the same order request after request, so the
    /// first look is at the name cached for this position: a compare, no hashing.
    fn key<'py>(
        &self,
        py: Python<'py>,
        pos: usize,
        raw: &[u8],
        http: bool,
    ) -> Bound<'py, PyString> {
        let by_pos = if http {
            &self.http_pos
        } else {
            &self.uwsgi_pos
        };
        let hit = by_pos
            .borrow()
            .get(pos)
            .and_then(Option::as_ref)
            .filter(|(name, _)| **name == *raw)
            .map(|(_, k)| k.bind(py).clone());
        if let Some(k) = hit {
            return k;
        }
        let cached = self.keys.borrow().get(raw).map(|k| k.bind(py).clone());
        let s = match cached {
            Some(k) => k,
            None => {
                let s = if http {
                    let mut k = Vec::with_capacity(raw.len() + 5);
                    k.extend_from_slice(b"HTTP_");
                    k.extend(raw.iter().map(|&c| {
                        if c == b'-' {
                            b'_'
                        } else {
                            c.to_ascii_uppercase()
                        }
                    }));
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
        };
        let mut by_pos = by_pos.borrow_mut();
        if pos < POS_CACHE_MAX {
            if by_pos.len() <= pos {
                by_pos.resize_with(pos + 1, || None);
            }
            by_pos[pos] = Some((raw.into(), s.clone().unbind()));
        }
        s
    }

    fn input<'py>(&self, py: Python<'py>, body: Option<Body>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match body {
            None => self.empty_input.bind(py).clone().into_any(),
            Some(b) => Bound::new(py, Input::new(Some(b)))?.into_any(),
        })
    }

    pub fn build<'py>(
        &self,
        py: Python<'py>,
        req: &Request<'_>,
        body: Option<Body>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        match &req.kind {
            RequestKind::Http { head, headers } => {
                let buf = req.buf;
                env.set_item(
                    intern!(py, "REQUEST_METHOD"),
                    method(py, head.method.get(buf)),
                )?;
                let raw_path = head.path.get(buf);
                let path = if raw_path.contains(&b'%') {
                    let mut scratch = self.scratch.borrow_mut();
                    percent_decode_into(raw_path, &mut scratch);
                    latin1(py, &scratch)
                } else {
                    latin1(py, raw_path)
                };
                let target = head.target.get(buf);
                // The raw target is usually the path itself: share the string.
                let raw_uri = if target == raw_path && !raw_path.contains(&b'%') {
                    path.clone()
                } else {
                    latin1(py, target)
                };
                env.set_item(intern!(py, "PATH_INFO"), path)?;
                let query = head.query.get(buf);
                if query.is_empty() {
                    env.set_item(intern!(py, "QUERY_STRING"), intern!(py, ""))?;
                } else {
                    env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query))?;
                }
                env.set_item(intern!(py, "RAW_URI"), raw_uri)?;
                env.set_item(
                    intern!(py, "SERVER_PROTOCOL"),
                    match head.version {
                        Version::Http11 => intern!(py, "HTTP/1.1"),
                        Version::Http10 => intern!(py, "HTTP/1.0"),
                    },
                )?;
                let mut host_seen = false;
                for (pos, h) in headers.iter().enumerate() {
                    let name = h.name.get(buf);
                    let value = h.value.get(buf);
                    if !host_seen && name.eq_ignore_ascii_case(b"host") {
                        host_seen = true;
                        self.host(py, &env, value)?;
                        continue;
                    }
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
                    let key = self.key(py, pos, name, true);
                    set_or_join(
                        &env,
                        &key,
                        latin1(py, value),
                        name.eq_ignore_ascii_case(b"cookie"),
                    )?;
                }
                if !host_seen {
                    server_name_port(py, &env, req.conn)?;
                }
                self.remote(py, &env, req.conn)?;
            }
            RequestKind::Uwsgi { vars } => {
                let buf = req.buf;
                let mut https = false;
                // Bits of the keys WSGI needs that nginx's uwsgi_params normally sends.
                let (mut seen_method, mut seen_path, mut seen_query, mut seen_proto, mut seen_name) =
                    (false, false, false, false, false);
                for (pos, v) in vars.iter().enumerate() {
                    let k = v.key.get(buf);
                    let val = v.value.get(buf);
                    if val.is_empty() && (k == b"CONTENT_LENGTH" || k == b"CONTENT_TYPE") {
                        continue; // nginx sends them empty on bodyless requests: absent.
                    }
                    match k {
                        b"HTTPS" => https |= val.eq_ignore_ascii_case(b"on") || val == b"1",
                        b"REQUEST_SCHEME" => https |= val.eq_ignore_ascii_case(b"https"),
                        b"REQUEST_METHOD" => seen_method = true,
                        b"PATH_INFO" => seen_path = true,
                        b"QUERY_STRING" => seen_query = true,
                        b"SERVER_PROTOCOL" => seen_proto = true,
                        b"SERVER_NAME" => seen_name = true,
                        _ => {}
                    }
                    let key = self.key(py, pos, k, false);
                    set_or_join(&env, &key, latin1(py, val), k == b"HTTP_COOKIE")?;
                }
                if https {
                    env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
                }
                if !seen_method {
                    env.set_item(intern!(py, "REQUEST_METHOD"), intern!(py, "GET"))?;
                }
                if !seen_path {
                    env.set_item(intern!(py, "PATH_INFO"), intern!(py, ""))?;
                }
                if !seen_query {
                    env.set_item(intern!(py, "QUERY_STRING"), intern!(py, ""))?;
                }
                if !seen_proto {
                    env.set_item(intern!(py, "SERVER_PROTOCOL"), intern!(py, "HTTP/1.1"))?;
                }
                if !seen_name {
                    server_name_port(py, &env, req.conn)?;
                }
            }
        }
        env.set_item(intern!(py, "wsgi.input"), self.input(py, body)?)?;
        Ok(env)
    }
}

extern "C" {
    // Part of CPython's C API (all supported versions); pyo3's ffi does not declare it.
    fn PyDict_SetDefault(
        d: *mut ffi::PyObject,
        key: *mut ffi::PyObject,
        default: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
}

/// Set `key`, or join with the value already there (a repeated header or var).
fn set_or_join(
    env: &Bound<'_, PyDict>,
    key: &Bound<'_, PyString>,
    value: Bound<'_, PyString>,
    cookie: bool,
) -> PyResult<()> {
    // SAFETY: valid dict, key and value; PyDict_SetDefault returns a borrowed reference.
    let existing = unsafe { PyDict_SetDefault(env.as_ptr(), key.as_ptr(), value.as_ptr()) };
    if existing.is_null() {
        return Err(PyErr::fetch(env.py()));
    }
    if existing != value.as_ptr() {
        let py = env.py();
        let old = unsafe { Bound::from_borrowed_ptr(py, existing) };
        let joined = format!(
            "{}{}{}",
            old.str()?,
            if cookie { "; " } else { ", " },
            value.to_str()?
        );
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

/// SERVER_NAME / SERVER_PORT without a Host header: the socket's own address.
fn server_name_port(py: Python<'_>, env: &Bound<'_, PyDict>, conn: &ConnInfo) -> PyResult<()> {
    let (name, port) = match conn.local {
        Some(a) => (a.ip().to_string(), a.port().to_string()),
        None => ("localhost".to_string(), "80".to_string()),
    };
    env.set_item(intern!(py, "SERVER_NAME"), PyString::new(py, &name))?;
    env.set_item(intern!(py, "SERVER_PORT"), PyString::new(py, &port))?;
    Ok(())
}

impl EnvBuilder {
    /// HTTP_HOST, SERVER_NAME and SERVER_PORT from a Host header (name and optional port; an IPv6
    /// literal keeps its brackets; no port: 80, or 443 under https).
    fn host(&self, py: Python<'_>, env: &Bound<'_, PyDict>, h: &[u8]) -> PyResult<()> {
        let mut cache = self.last_host.borrow_mut();
        if cache.as_ref().is_none_or(|c| c.raw != h) {
            let split = if h.first() == Some(&b'[') {
                h.iter()
                    .position(|&c| c == b']')
                    .map(|i| i + 1)
                    .filter(|&i| h.get(i) == Some(&b':'))
            } else {
                h.iter().rposition(|&c| c == b':')
            };
            let (name, port) = match split {
                Some(i) if i + 1 < h.len() => (latin1(py, &h[..i]), Some(latin1(py, &h[i + 1..]))),
                Some(i) => (latin1(py, &h[..i]), None),
                None => (latin1(py, h), None),
            };
            *cache = Some(HostStrings {
                raw: h.to_vec(),
                value: latin1(py, h).unbind(),
                name: name.unbind(),
                port: port.map(Bound::unbind),
            });
        }
        let c = cache.as_ref().expect("filled above");
        env.set_item(intern!(py, "HTTP_HOST"), c.value.bind(py))?;
        env.set_item(intern!(py, "SERVER_NAME"), c.name.bind(py))?;
        match &c.port {
            Some(p) => env.set_item(intern!(py, "SERVER_PORT"), p.bind(py)),
            None => {
                let https = env
                    .get_item(intern!(py, "wsgi.url_scheme"))?
                    .is_some_and(|s| s.extract::<&str>().is_ok_and(|s| s == "https"));
                env.set_item(
                    intern!(py, "SERVER_PORT"),
                    if https {
                        intern!(py, "443")
                    } else {
                        intern!(py, "80")
                    },
                )
            }
        }
    }

    fn remote(&self, py: Python<'_>, env: &Bound<'_, PyDict>, conn: &ConnInfo) -> PyResult<()> {
        let Some(peer) = conn.peer else { return Ok(()) };
        let mut cache = self.last_peer.borrow_mut();
        if cache.as_ref().is_none_or(|c| c.0 != peer) {
            *cache = Some((
                peer,
                PyString::new(py, &conn.peer_ip).unbind(),
                PyString::new(py, &conn.peer_port).unbind(),
            ));
        }
        let (_, ip, port) = cache.as_ref().expect("filled above");
        env.set_item(intern!(py, "REMOTE_ADDR"), ip.bind(py))?;
        env.set_item(intern!(py, "REMOTE_PORT"), port.bind(py))?;
        Ok(())
    }
}
