//! The WSGI environ: a per-worker template dict copied for each request, then the per-request keys
//! set with interned names. Header and uwsgi var names are turned into Python strings once and
//! cached (a bounded cache: a client sending random names cannot grow it without limit).
//!
//! The templates already hold every key a request of their kind always gets (HTTP: method, path,
//! query, protocol, server name and port, peer; uwsgi: the defaults used when nginx leaves a var
//! out), so most per-request work replaces values in place rather than adding keys. Each template
//! comes in two table sizes, and a request copies the one its header count fits without a resize.

use std::cell::RefCell;
use std::collections::HashMap;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use smallvec::SmallVec;
use velocior_protocol::http1::Version;
use velocior_protocol::util::percent_decode_into;
use velocior_protocol::uwsgi::UwsgiVar;

use super::input::Input;
use crate::server::{Body, ConnInfo, Request, RequestKind};

const KEY_CACHE_MAX: usize = 512;
/// Header / var positions remembered (more than nginx's stock uwsgi_params plus common headers).
const POS_CACHE_MAX: usize = 64;

/// How many keys CPython's smallest table holding a template (32 slots) takes before it grows:
/// two thirds of its slots. A guess only costs speed if wrong (a resize on a copy).
const SMALL_TABLE_KEYS: usize = 21;
/// Entries a template must reach (in insertion order) for its table to grow to 64 slots.
const MEDIUM_TABLE_ENTRIES: usize = SMALL_TABLE_KEYS + 1;

/// One template at two table sizes: copying keeps the size, so the copy a request starts from has
/// room for its keys (a compact table is cheaper to copy and to free).
struct Template {
    len: usize,
    small: Py<PyDict>,
    medium: Py<PyDict>,
}

impl Template {
    fn new(py: Python<'_>, items: &[(&Bound<'_, PyString>, &Bound<'_, PyAny>)]) -> PyResult<Self> {
        let grown = |entries: usize| -> PyResult<Py<PyDict>> {
            // String keys only: CPython then keeps the compact unicode table.
            let d = PyDict::new(py);
            for (k, v) in items {
                d.set_item(k, v)?;
            }
            let mut pads = Vec::new();
            while d.len() < entries {
                let k = PyString::new(py, &format!("\0pad{}", pads.len()));
                d.set_item(&k, py.None())?;
                pads.push(k);
            }
            // Deleting leaves the table at the size it grew to.
            for k in pads {
                d.del_item(k)?;
            }
            Ok(d.unbind())
        };
        Ok(Template {
            len: items.len(),
            small: grown(0)?,
            medium: grown(MEDIUM_TABLE_ENTRIES)?,
        })
    }

    /// A fresh copy with room for `extra` more keys.
    fn copy<'py>(&self, py: Python<'py>, extra: usize) -> PyResult<Bound<'py, PyDict>> {
        if self.len + extra <= SMALL_TABLE_KEYS {
            self.small.bind(py).copy()
        } else {
            self.medium.bind(py).copy()
        }
    }
}

/// Set `key` to `value` in a fresh environ (no conversions, no reference-count traffic).
#[inline]
fn put<T>(
    env: &Bound<'_, PyDict>,
    key: &Bound<'_, PyString>,
    value: &Bound<'_, T>,
) -> PyResult<()> {
    // SAFETY: valid dict, key and value pointers; PyDict_SetItem takes its own references.
    if unsafe { ffi::PyDict_SetItem(env.as_ptr(), key.as_ptr(), value.as_ptr()) } < 0 {
        return Err(PyErr::fetch(env.py()));
    }
    Ok(())
}

pub struct EnvBuilder {
    /// HTTP over TCP (with REMOTE_ADDR / REMOTE_PORT), HTTP over a unix socket, uwsgi.
    http_tcp: Template,
    http_unix: Template,
    uwsgi: Template,
    /// The configured url scheme is https (SERVER_PORT 443 when Host has no port).
    https: bool,
    keys: RefCell<HashMap<Vec<u8>, Py<PyString>>>,
    http_pos: RefCell<Vec<Option<NamedKey>>>,
    uwsgi_pos: RefCell<Vec<Option<NamedKey>>>,
    /// The last value seen at each header / var position, and its str: most values (User-Agent,
    /// Accept, nginx's SERVER_PROTOCOL, DOCUMENT_ROOT, ...) repeat request after request, and a
    /// repeat shares the str instead of decoding and later freeing a new one.
    http_vals: RefCell<Vec<ValueSlot>>,
    uwsgi_vals: RefCell<Vec<ValueSlot>>,
    learned: RefCell<Learned>,
    scratch: RefCell<Vec<u8>>,
    /// The last peer's REMOTE_ADDR / REMOTE_PORT strings: requests on one connection (keep-alive,
    /// pipelining) reuse them instead of making new ones.
    last_peer: RefCell<Option<PeerStrings>>,
    /// The last Host header and the HTTP_HOST / SERVER_NAME / SERVER_PORT strings made from it.
    last_host: RefCell<Option<HostStrings>>,
}

/// The uwsgi vars learned from nginx's packets (see `EnvBuilder::uwsgi_environ`).
enum Learned {
    Nothing,
    /// The names of the last packet.
    Names(Vec<Box<[u8]>>),
    /// Two packets in a row had these names: the second one's (name, value) pairs and environ.
    Ready {
        vars: Vec<NameValue>,
        env: Py<PyDict>,
    },
}

/// A var's name and value as received.
type NameValue = (Box<[u8]>, Box<[u8]>);

/// Vars whose value decides more than their own key (the url scheme, SERVER_NAME/PORT, absent
/// empty CONTENT_*): a packet that differs from the learned one in these is built in full.
fn decides_more(name: &[u8]) -> bool {
    matches!(
        name,
        b"HTTPS" | b"REQUEST_SCHEME" | b"SERVER_NAME" | b"CONTENT_LENGTH" | b"CONTENT_TYPE"
    )
}

/// What the adapter keeps per connection (in `ConnInfo::service_state`).
enum ConnEnv {
    FirstRequest,
    /// The HTTP template with REMOTE_ADDR / REMOTE_PORT and the keys made from `host` set.
    Template {
        host: Vec<u8>,
        dict: Py<PyDict>,
    },
}

/// Values longer than this are not remembered (a long cookie or token rarely repeats).
const VALUE_CACHE_MAX_LEN: usize = 96;

/// A value as received (the buffer is reused: a miss allocates nothing) and its str.
#[derive(Default)]
struct ValueSlot {
    raw: Vec<u8>,
    value: Option<Py<PyString>>,
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
    /// `base`: the keys every environ has (wsgi.*, SCRIPT_NAME, SERVER_SOFTWARE).
    pub fn new(
        py: Python<'_>,
        base: &[(&str, Bound<'_, PyAny>)],
        empty_input: Py<Input>,
        https: bool,
    ) -> PyResult<Self> {
        let keys: Vec<_> = base.iter().map(|(k, _)| PyString::intern(py, k)).collect();
        let mut items: Vec<(&Bound<'_, PyString>, &Bound<'_, PyAny>)> =
            keys.iter().zip(base.iter().map(|(_, v)| v)).collect();
        let s = |v: &'static str| PyString::intern(py, v).into_any();
        let (get, empty, http11) = (s("GET"), s(""), s("HTTP/1.1"));
        let input = empty_input.bind(py).clone().into_any();
        // Placeholders, always replaced (HTTP), or defaults for vars nginx did not send (uwsgi).
        let uwsgi_keys = [
            (intern!(py, "REQUEST_METHOD"), &get),
            (intern!(py, "PATH_INFO"), &empty),
            (intern!(py, "QUERY_STRING"), &empty),
            (intern!(py, "SERVER_PROTOCOL"), &http11),
            (intern!(py, "wsgi.input"), &input),
        ];
        let http_keys = [
            (intern!(py, "RAW_URI"), &empty),
            (intern!(py, "SERVER_NAME"), &empty),
            (intern!(py, "SERVER_PORT"), &empty),
        ];
        let peer_keys = [
            (intern!(py, "REMOTE_ADDR"), &empty),
            (intern!(py, "REMOTE_PORT"), &empty),
        ];
        items.extend(uwsgi_keys);
        let uwsgi = Template::new(py, &items)?;
        items.extend(http_keys);
        let http_unix = Template::new(py, &items)?;
        items.extend(peer_keys);
        let http_tcp = Template::new(py, &items)?;
        Ok(EnvBuilder {
            http_tcp,
            http_unix,
            uwsgi,
            https,
            keys: RefCell::new(HashMap::new()),
            http_pos: RefCell::new(Vec::new()),
            uwsgi_pos: RefCell::new(Vec::new()),
            http_vals: RefCell::new(Vec::new()),
            uwsgi_vals: RefCell::new(Vec::new()),
            learned: RefCell::new(Learned::Nothing),
            scratch: RefCell::new(Vec::new()),
            last_peer: RefCell::new(None),
            last_host: RefCell::new(None),
        })
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

    /// The environ value for the `pos`-th header / var value: the str made for the same bytes
    /// at the same position last time, or a new one (then remembered).
    fn value<'py>(
        &self,
        py: Python<'py>,
        pos: usize,
        raw: &[u8],
        http: bool,
    ) -> Bound<'py, PyString> {
        if raw.len() > VALUE_CACHE_MAX_LEN || pos >= POS_CACHE_MAX {
            return latin1(py, raw);
        }
        let mut slots = if http {
            self.http_vals.borrow_mut()
        } else {
            self.uwsgi_vals.borrow_mut()
        };
        if slots.len() <= pos {
            slots.resize_with(pos + 1, ValueSlot::default);
        }
        let slot = &mut slots[pos];
        if let Some(v) = &slot.value {
            if slot.raw == raw {
                return v.bind(py).clone();
            }
        }
        let v = latin1(py, raw);
        slot.raw.clear();
        slot.raw.extend_from_slice(raw);
        if let Some(old) = slot.value.replace(v.clone().unbind()) {
            old.drop_ref(py);
        }
        v
    }

    /// The HTTP template for a connection: with REMOTE_ADDR / REMOTE_PORT over TCP.
    fn http_template(&self, conn: &ConnInfo) -> &Template {
        if conn.peer.is_some() {
            &self.http_tcp
        } else {
            &self.http_unix
        }
    }

    /// A fresh environ from this connection's own template (peer and Host keys already set), or
    /// None on its first request (only noted: most connections never send a second) or when
    /// the template cannot be used.
    fn conn_template<'py>(
        &self,
        py: Python<'py>,
        conn: &ConnInfo,
        host: &[u8],
        headers: usize,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let mut state = conn.service_state.borrow_mut();
        let Some(mine) = state.as_mut().and_then(|s| s.downcast_mut::<ConnEnv>()) else {
            *state = Some(Box::new(ConnEnv::FirstRequest));
            return Ok(None);
        };
        if let ConnEnv::Template { host: h, dict } = mine {
            if h.as_slice() == host {
                return dict.bind(py).copy().map(Some);
            }
        }
        // Sized for this request's headers; the per-request copies keep that size.
        let dict = self.http_template(conn).copy(py, headers)?;
        self.host(py, &dict, host)?;
        self.remote(py, &dict, conn)?;
        let env = dict.copy()?;
        *mine = ConnEnv::Template {
            host: host.to_vec(),
            dict: dict.unbind(),
        };
        Ok(Some(env))
    }

    /// The environ of a uwsgi request. nginx sends the same vars in the same order packet after
    /// packet, most with the same values: once two packets in a row had the same names, the
    /// environ they give is kept, and a packet with those names starts from a copy of it and
    /// sets only the vars whose values differ.
    fn uwsgi_environ<'py>(
        &self,
        py: Python<'py>,
        buf: &[u8],
        vars: &[UwsgiVar],
        conn: &ConnInfo,
    ) -> PyResult<Bound<'py, PyDict>> {
        if let Some(env) = self.uwsgi_from_learned(py, buf, vars)? {
            return Ok(env);
        }
        // The vars, plus SERVER_NAME and SERVER_PORT when nginx leaves them out.
        let env = self.uwsgi.copy(py, vars.len() + 2)?;
        let mut https = false;
        let (mut seen_name, mut seen_port) = (false, false);
        // A packet whose environ can be learned: no repeated var, no var ignored.
        let mut learnable = true;
        // Bit i: the i-th key the template holds a value for was already set from a var.
        let mut replaced = 0u8;
        for (pos, v) in vars.iter().enumerate() {
            let k = v.key.get(buf);
            let val = v.value.get(buf);
            if val.is_empty() && (k == b"CONTENT_LENGTH" || k == b"CONTENT_TYPE") {
                continue; // nginx sends them empty on bodyless requests: absent.
            }
            // The keys the template already holds (its defaults, SCRIPT_NAME and
            // SERVER_SOFTWARE): the first var of one of these names replaces the value, a repeat
            // joins as for any other var. wsgi.* keys are the server's own.
            let default = match k {
                b"REQUEST_METHOD" => Some(0),
                b"PATH_INFO" => Some(1),
                b"QUERY_STRING" => Some(2),
                b"SERVER_PROTOCOL" => Some(3),
                b"SCRIPT_NAME" => Some(4),
                b"SERVER_SOFTWARE" => Some(5),
                b"HTTPS" => {
                    https |= val.eq_ignore_ascii_case(b"on") || val == b"1";
                    None
                }
                b"REQUEST_SCHEME" => {
                    https |= val.eq_ignore_ascii_case(b"https");
                    None
                }
                b"SERVER_NAME" => {
                    seen_name = true;
                    None
                }
                b"SERVER_PORT" => {
                    seen_port = true;
                    None
                }
                _ if k.starts_with(b"wsgi.") => {
                    learnable = false;
                    continue;
                }
                _ => None,
            };
            let key = self.key(py, pos, k, false);
            let val = self.value(py, pos, val, false);
            match default {
                Some(bit) if replaced & (1 << bit) == 0 => {
                    replaced |= 1 << bit;
                    put(&env, &key, &val)?;
                }
                _ => {
                    if set_or_join(&env, &key, val, k == b"HTTP_COOKIE")? {
                        learnable = false;
                    }
                }
            }
        }
        if https {
            put(&env, intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
        }
        if !seen_name {
            // Only what nginx left out: a SERVER_PORT var it sent stays.
            let (name, port) = server_name_port_strings(conn);
            put(&env, intern!(py, "SERVER_NAME"), &PyString::new(py, &name))?;
            if !seen_port {
                put(&env, intern!(py, "SERVER_PORT"), &PyString::new(py, &port))?;
            }
        }
        self.learn(buf, vars, &env, learnable)?;
        Ok(env)
    }

    /// A copy of the learned environ with this packet's differing values set, when the packet
    /// has the learned names and the same values for the vars that decide more than their own key.
    fn uwsgi_from_learned<'py>(
        &self,
        py: Python<'py>,
        buf: &[u8],
        vars: &[UwsgiVar],
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let learned = self.learned.borrow();
        let Learned::Ready { vars: known, env } = &*learned else {
            return Ok(None);
        };
        if known.len() != vars.len() {
            return Ok(None);
        }
        let mut differ: SmallVec<[usize; 8]> = SmallVec::new();
        for (pos, (v, (name, value))) in vars.iter().zip(known).enumerate() {
            let k = v.key.get(buf);
            if k != &name[..] {
                return Ok(None);
            }
            if v.value.get(buf) != &value[..] {
                if decides_more(k) {
                    return Ok(None);
                }
                differ.push(pos);
            }
        }
        let out = env.bind(py).copy()?;
        drop(learned);
        for pos in differ {
            let v = &vars[pos];
            let key = self.key(py, pos, v.key.get(buf), false);
            put(&out, &key, &self.value(py, pos, v.value.get(buf), false))?;
        }
        Ok(Some(out))
    }

    /// Note this packet's names; the second packet in a row with the same names (and nothing
    /// repeated or ignored) has its environ kept.
    fn learn(
        &self,
        buf: &[u8],
        vars: &[UwsgiVar],
        env: &Bound<'_, PyDict>,
        learnable: bool,
    ) -> PyResult<()> {
        let mut learned = self.learned.borrow_mut();
        if !learnable || vars.len() > POS_CACHE_MAX {
            *learned = Learned::Nothing;
            return Ok(());
        }
        let same_names = match &*learned {
            Learned::Names(names) => {
                names.len() == vars.len()
                    && names
                        .iter()
                        .zip(vars)
                        .all(|(n, v)| &n[..] == v.key.get(buf))
            }
            _ => false,
        };
        *learned = if same_names {
            Learned::Ready {
                vars: vars
                    .iter()
                    .map(|v| (v.key.get(buf).into(), v.value.get(buf).into()))
                    .collect(),
                env: env.copy()?.unbind(),
            }
        } else {
            Learned::Names(vars.iter().map(|v| v.key.get(buf).into()).collect())
        };
        Ok(())
    }

    pub fn build<'py>(
        &self,
        py: Python<'py>,
        req: &Request<'_>,
        body: Option<Body>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env;
        match &req.kind {
            RequestKind::Http { head, headers } => {
                let buf = req.buf;
                let host = headers
                    .iter()
                    .find(|h| h.name.get(buf).eq_ignore_ascii_case(b"host"))
                    .map(|h| h.value.get(buf));
                // From the second request of a connection on, with the same Host: a template
                // that already holds the peer and Host keys.
                let from_conn = match host {
                    Some(host) => self.conn_template(py, req.conn, host, headers.len())?,
                    None => None,
                };
                let conn_keys_set = from_conn.is_some();
                env = match from_conn {
                    Some(e) => e,
                    None => self.http_template(req.conn).copy(py, headers.len())?,
                };
                put(
                    &env,
                    intern!(py, "REQUEST_METHOD"),
                    &method(py, head.method.get(buf)),
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
                if target == raw_path && !raw_path.contains(&b'%') {
                    put(&env, intern!(py, "RAW_URI"), &path)?;
                } else {
                    put(&env, intern!(py, "RAW_URI"), &latin1(py, target))?;
                }
                put(&env, intern!(py, "PATH_INFO"), &path)?;
                let query = head.query.get(buf);
                if !query.is_empty() {
                    put(&env, intern!(py, "QUERY_STRING"), &latin1(py, query))?;
                }
                if head.version == Version::Http10 {
                    put(
                        &env,
                        intern!(py, "SERVER_PROTOCOL"),
                        intern!(py, "HTTP/1.0"),
                    )?;
                }
                let mut host_seen = false;
                for (pos, h) in headers.iter().enumerate() {
                    let name = h.name.get(buf);
                    let value = h.value.get(buf);
                    if !host_seen && name.eq_ignore_ascii_case(b"host") {
                        host_seen = true;
                        if !conn_keys_set {
                            self.host(py, &env, value)?;
                        }
                        continue;
                    }
                    if name.eq_ignore_ascii_case(b"content-type") {
                        put(
                            &env,
                            intern!(py, "CONTENT_TYPE"),
                            &self.value(py, pos, value, true),
                        )?;
                        continue;
                    }
                    if name.eq_ignore_ascii_case(b"content-length") {
                        put(&env, intern!(py, "CONTENT_LENGTH"), &latin1(py, value))?;
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
                        self.value(py, pos, value, true),
                        name.eq_ignore_ascii_case(b"cookie"),
                    )?;
                }
                if !host_seen {
                    server_name_port(py, &env, req.conn)?;
                }
                if !conn_keys_set {
                    self.remote(py, &env, req.conn)?;
                }
            }
            RequestKind::Uwsgi { vars } => {
                env = self.uwsgi_environ(py, req.buf, vars, req.conn)?;
            }
        }
        // Without a body, the template's shared empty input stays.
        if let Some(b) = body {
            put(
                &env,
                intern!(py, "wsgi.input"),
                &Bound::new(py, Input::new(Some(b)))?,
            )?;
        }
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
) -> PyResult<bool> {
    // Whether the key was new is told by the size, not by comparing the objects: equal short
    // values can be one shared str (CPython's one-character strings, our value cache).
    let before = env.len();
    // SAFETY: valid dict, key and value; PyDict_SetDefault returns a borrowed reference.
    let existing = unsafe { PyDict_SetDefault(env.as_ptr(), key.as_ptr(), value.as_ptr()) };
    if existing.is_null() {
        return Err(PyErr::fetch(env.py()));
    }
    if env.len() == before {
        let py = env.py();
        let old = unsafe { Bound::from_borrowed_ptr(py, existing) };
        let joined = format!(
            "{}{}{}",
            old.str()?,
            if cookie { "; " } else { ", " },
            value.to_str()?
        );
        put(env, key, &PyString::new(py, &joined))?;
        return Ok(true);
    }
    Ok(false)
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
fn server_name_port_strings(conn: &ConnInfo) -> (String, String) {
    match conn.local {
        Some(a) => (a.ip().to_string(), a.port().to_string()),
        None => ("localhost".to_string(), "80".to_string()),
    }
}

fn server_name_port(py: Python<'_>, env: &Bound<'_, PyDict>, conn: &ConnInfo) -> PyResult<()> {
    let (name, port) = server_name_port_strings(conn);
    put(env, intern!(py, "SERVER_NAME"), &PyString::new(py, &name))?;
    put(env, intern!(py, "SERVER_PORT"), &PyString::new(py, &port))?;
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
        put(env, intern!(py, "HTTP_HOST"), c.value.bind(py))?;
        put(env, intern!(py, "SERVER_NAME"), c.name.bind(py))?;
        match &c.port {
            Some(p) => put(env, intern!(py, "SERVER_PORT"), p.bind(py)),
            None if self.https => put(env, intern!(py, "SERVER_PORT"), intern!(py, "443")),
            None => put(env, intern!(py, "SERVER_PORT"), intern!(py, "80")),
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
        put(env, intern!(py, "REMOTE_ADDR"), ip.bind(py))?;
        put(env, intern!(py, "REMOTE_PORT"), port.bind(py))?;
        Ok(())
    }
}
