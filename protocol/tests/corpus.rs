//! Replays the shared conformance corpora (`../shared/conformance/*-requests.json`, derived from
//! gunicorn's and llhttp's test suites) through the public API, the way the server uses it.
//!
//! Every case is fed whole, byte by byte, and split in two at every offset (cases over 4 KiB:
//! every offset in the first and last 512 bytes and a stride of len/1024 in between, to keep
//! `cargo test` fast); all feedings must give the same outcome. Then the outcome is compared with
//! the case's expectation:
//!
//! * accept: exactly the expected requests (method, target, path, query, version, headers in
//!   order, decoded body), and no error after them;
//! * reject: the expected requests (none, in this corpus), then an error, or the input ending
//!   inside the message (a server closes on EOF without answering: the corpus runner counts that
//!   as rejected too; those cases are counted apart, and the llhttp ones, which llhttp rejects
//!   before the head ends, must be rejected once their last line is completed with CRLF).
//!
//! The server view applies the Host rule (`check_host`) to each request. A case Velocior handles
//! differently on purpose must be listed in `tests/divergences.txt` with its reason, and only
//! cases carrying the tags `policy-accept`, `policy-reject`, `gunicorn-default-limit` or
//! `http11-no-host` may be listed; the test checks that each listed divergence really behaves as
//! stated (so the list cannot go stale). Cases tagged with one of the corpus runner's default-skip
//! tags (`gunicorn-config`, `non-http-protocol`, `http09`, `source-defect`) that do not agree are
//! printed as not applicable, with the tag; nothing is dropped silently.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use common::{drive_bytewise, drive_split, drive_whole, End, Outcome, Req};
use serde_json::Value;
use velocior_protocol::{ErrorKind, Limits};

const ALLOWED_DIVERGENCE_TAGS: &[&str] = &[
    "policy-accept",
    "policy-reject",
    "gunicorn-default-limit",
    "http11-no-host",
];
const RUNNER_DEFAULT_SKIP: &[&str] = &[
    "gunicorn-config",
    "non-http-protocol",
    "http09",
    "source-defect",
];

fn corpus_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VELOCIOR_CONFORMANCE_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

fn latin1(v: &Value) -> Vec<u8> {
    v.as_str()
        .expect("string")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("corpus strings are latin-1"))
        .collect()
}

struct Case {
    id: String,
    raw: Vec<u8>,
    accept: bool,
    expected: Vec<Req>,
    tags: BTreeSet<String>,
    gunicorn: bool,
}

fn load() -> Vec<Case> {
    let dir = corpus_dir();
    let mut cases = Vec::new();
    for file in ["gunicorn-requests.json", "llhttp-requests.json"] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the conformance corpus {} ({e}); set VELOCIOR_CONFORMANCE_DIR",
                path.display()
            )
        });
        let json: Value = serde_json::from_str(&text).expect("corpus JSON");
        for c in json.as_array().expect("array") {
            let expected = c["requests"]
                .as_array()
                .expect("requests")
                .iter()
                .map(|r| Req {
                    method: latin1(&r["method"]),
                    target: latin1(&r["target"]),
                    path: if r["path"].is_null() {
                        Vec::new()
                    } else {
                        latin1(&r["path"])
                    },
                    query: latin1(&r["query"]),
                    version: match r["version"].as_str() {
                        Some("HTTP/1.0") => "HTTP/1.0",
                        Some("HTTP/1.1") => "HTTP/1.1",
                        _ => "other",
                    },
                    headers: r["headers"]
                        .as_array()
                        .expect("headers")
                        .iter()
                        .map(|h| (latin1(&h[0]), latin1(&h[1])))
                        .collect(),
                    body: latin1(&r["body"]),
                    host_error: None,
                })
                .collect();
            cases.push(Case {
                id: c["id"].as_str().expect("id").to_string(),
                raw: latin1(&c["raw"]),
                accept: c["expect"] == "accept",
                expected,
                tags: c["tags"]
                    .as_array()
                    .map(|t| t.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default(),
                gunicorn: file.starts_with("gunicorn"),
            });
        }
    }
    cases
}

/// What Velocior does instead of what the corpus expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Divergence {
    /// The corpus accepts; Velocior rejects.
    Reject,
    /// The corpus rejects; Velocior accepts.
    Accept,
    /// The parser agrees; the Host rule answers 400.
    Host400,
}

fn load_divergences() -> BTreeMap<String, (Divergence, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/divergences.txt");
    let text = std::fs::read_to_string(&path).expect("tests/divergences.txt");
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, char::is_whitespace);
        let id = parts.next().unwrap().to_string();
        let what = match parts.next().map(str::trim) {
            Some("reject") => Divergence::Reject,
            Some("accept") => Divergence::Accept,
            Some("host-400") => Divergence::Host400,
            other => panic!("divergences.txt:{}: bad verdict {other:?}", n + 1),
        };
        let reason = parts.next().unwrap_or("").trim().to_string();
        assert!(
            !reason.is_empty(),
            "divergences.txt:{}: no reason given",
            n + 1
        );
        assert!(
            out.insert(id.clone(), (what, reason)).is_none(),
            "{id} listed twice"
        );
    }
    out
}

/// The parser's outcome with the server's Host rule applied: the first request that fails it is
/// answered 400 and ends the connection.
fn server_view(o: &Outcome) -> Outcome {
    match o.requests.iter().position(|r| r.host_error.is_some()) {
        None => o.clone(),
        Some(i) => Outcome {
            requests: o.requests[..i].to_vec(),
            end: End::Error(o.requests[i].host_error.unwrap(), 0),
        },
    }
}

fn same_request(case: &Case, got: &Req, want: &Req) -> bool {
    let mut headers = got.headers.clone();
    if case.gunicorn {
        // gunicorn's expectations leave out the header names it drops ('_' in the name): that
        // is an environ concern of the server, not of the parser.
        headers.retain(|(n, _)| !n.contains(&b'_'));
    }
    let path_ok = got.path == want.path || (want.path.is_empty() && got.path == b"/");
    got.method == want.method
        && got.target == want.target
        && path_ok
        && got.query == want.query
        && got.version == want.version
        && headers == want.headers
        && got.body == want.body
}

fn requests_match(case: &Case, o: &Outcome) -> bool {
    o.requests.len() == case.expected.len()
        && o.requests
            .iter()
            .zip(&case.expected)
            .all(|(g, w)| same_request(case, g, w))
}

fn agrees(case: &Case, o: &Outcome) -> bool {
    requests_match(case, o)
        && if case.accept {
            !matches!(o.end, End::Error(..))
        } else {
            matches!(o.end, End::Error(..) | End::Incomplete)
        }
}

fn split_offsets(len: usize) -> Vec<usize> {
    if len <= 4096 {
        return (1..len).collect();
    }
    let stride = len / 1024;
    (1..len)
        .filter(|&k| k < 512 || k >= len - 512 || k % stride == 0)
        .collect()
}

#[test]
fn conformance_corpora() {
    let limits = Limits::default();
    let cases = load();
    let divergences = load_divergences();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut failures: Vec<String> = Vec::new();
    let (mut agree, mut by_eof, mut diverge, mut host, mut na) = (0, 0, 0, 0, 0);
    let mut eof_ids = Vec::new();
    let mut na_lines = Vec::new();

    for case in &cases {
        let whole = drive_whole(&case.raw, &limits);
        let bytewise = drive_bytewise(&case.raw, &limits);
        if bytewise != whole {
            failures.push(format!(
                "{}: byte-by-byte {:?} != whole {:?}",
                case.id, bytewise, whole
            ));
            continue;
        }
        if let Some(k) = split_offsets(case.raw.len())
            .into_iter()
            .find(|&k| drive_split(&case.raw, &[k], &limits) != whole)
        {
            failures.push(format!("{}: split at {k} differs from whole", case.id));
            continue;
        }

        let server = server_view(&whole);
        if agrees(case, &server) {
            agree += 1;
            if !case.accept && server.end == End::Incomplete {
                by_eof += 1;
                eof_ids.push(case.id.clone());
                // llhttp rejects these before the head ends; completing the line must make
                // Velocior reject them too (gunicorn's are truncations by design).
                if case.id.starts_with("llhttp") {
                    let mut completed = case.raw.clone();
                    completed.extend_from_slice(b"\r\n");
                    let o = server_view(&drive_whole(&completed, &limits));
                    if !matches!(o.end, End::Error(..)) {
                        failures.push(format!("{}: completed with CRLF: {:?}", case.id, o));
                    }
                }
            }
            continue;
        }
        if let Some((what, _)) = divergences.get(&case.id) {
            used.insert(case.id.clone());
            if !case
                .tags
                .iter()
                .any(|t| ALLOWED_DIVERGENCE_TAGS.contains(&t.as_str()))
            {
                failures.push(format!(
                    "{}: listed in divergences.txt without an allowed tag",
                    case.id
                ));
                continue;
            }
            let holds = match what {
                Divergence::Reject => case.accept && matches!(server.end, End::Error(..)),
                Divergence::Accept => {
                    !case.accept
                        && server.requests.len() > case.expected.len()
                        && !matches!(server.end, End::Error(..))
                }
                Divergence::Host400 => agrees(case, &whole) && matches!(server.end, End::Error(..)),
            };
            if holds {
                diverge += 1;
            } else {
                failures.push(format!(
                    "{}: listed as {what:?} in divergences.txt but got {server:?}",
                    case.id
                ));
            }
            continue;
        }
        if case.tags.contains("http11-no-host")
            && divergences.contains_key("tag:http11-no-host")
            && agrees(case, &whole)
        {
            used.insert("tag:http11-no-host".into());
            // The parser alone agrees with the corpus; the server rule must refuse the request
            // for its missing Host and nothing else.
            if server.end == End::Error(ErrorKind::MissingHost, 0) {
                host += 1;
            } else {
                failures.push(format!(
                    "{}: http11-no-host: server view {:?}",
                    case.id, server
                ));
            }
            continue;
        }
        if let Some(tag) = case
            .tags
            .iter()
            .find(|t| RUNNER_DEFAULT_SKIP.contains(&t.as_str()))
        {
            na += 1;
            na_lines.push(format!("  n/a {} [{}]: {}", case.id, tag, short(&server)));
            continue;
        }
        failures.push(format!(
            "{} (expect {}, tags {:?}): got {:?}",
            case.id,
            if case.accept { "accept" } else { "reject" },
            case.tags,
            server
        ));
    }

    for id in divergences.keys() {
        if !used.contains(id) {
            failures.push(format!(
                "divergences.txt lists {id}, which no longer diverges"
            ));
        }
    }

    // Written to stderr directly, not with println!, so that it shows in a plain `cargo test`
    // run (the test harness captures only the print macros).
    let _ = writeln!(
        std::io::stderr(),
        "corpus: {} cases: {} agree ({} of the rejects by end of input mid-message: {}), \
         {} deliberate divergences (tests/divergences.txt), {} refused by the Host rule only \
         (http11-no-host, parser agrees), {} not applicable (corpus runner's default-skip tags), \
         {} failed",
        cases.len(),
        agree,
        by_eof,
        eof_ids.join(" "),
        diverge,
        host,
        na,
        failures.len()
    );
    for l in &na_lines {
        println!("{l}");
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
    assert_eq!(agree + diverge + host + na, cases.len());
}

fn short(o: &Outcome) -> String {
    format!("{} request(s), end {:?}", o.requests.len(), o.end)
}
