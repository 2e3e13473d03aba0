//! Table-driven tests for every request-head, Host and framing rule, accept and reject, with the
//! status each error answers.

mod common;

use velocior_protocol::http1::{
    check_host, parse_request_head, request_framing, BodyKind, Framing, Header, RequestHead,
    Version,
};
use velocior_protocol::{ErrorKind, Limits, Status};

type Parsed = Result<Option<(RequestHead, Vec<Header>)>, (ErrorKind, usize)>;

/// (input, method, target, path, query, version, number of headers)
type Accepted = (
    &'static [u8],
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Version,
    usize,
);

fn parse_with(input: &[u8], limits: &Limits) -> Parsed {
    let mut hs = Vec::new();
    match parse_request_head(input, limits, &mut hs) {
        Ok(Status::Complete(h)) => Ok(Some((h, hs))),
        Ok(Status::Partial) => Ok(None),
        Err(e) => Err((e.kind, e.offset)),
    }
}

fn parse(input: &[u8]) -> Parsed {
    parse_with(input, &Limits::default())
}

fn complete(input: &[u8]) -> (RequestHead, Vec<Header>) {
    match parse(input) {
        Ok(Some(x)) => x,
        other => panic!(
            "{:?}: expected a complete head, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn accepted_heads() {
    let table: &[Accepted] = &[
        (
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET",
            "/",
            "/",
            "",
            Version::Http11,
            1,
        ),
        (
            b"GET / HTTP/1.0\r\n\r\n",
            "GET",
            "/",
            "/",
            "",
            Version::Http10,
            0,
        ),
        (
            b"\r\n\r\nGET / HTTP/1.0\r\n\r\n",
            "GET",
            "/",
            "/",
            "",
            Version::Http10,
            0,
        ),
        (
            b"POST /a/b?c=d&e HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST",
            "/a/b?c=d&e",
            "/a/b",
            "c=d&e",
            Version::Http11,
            1,
        ),
        (
            b"GET /a?b#frag HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET",
            "/a?b#frag",
            "/a",
            "b",
            Version::Http11,
            1,
        ),
        (
            b"GET /a#f?x HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET",
            "/a#f?x",
            "/a",
            "",
            Version::Http11,
            1,
        ),
        (
            b"GET /? HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET",
            "/?",
            "/",
            "",
            Version::Http11,
            1,
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS",
            "*",
            "*",
            "",
            Version::Http11,
            1,
        ),
        (
            b"GET http://ex.com/p?q HTTP/1.1\r\nHost: ex.com\r\n\r\n",
            "GET",
            "http://ex.com/p?q",
            "/p",
            "q",
            Version::Http11,
            1,
        ),
        (
            b"GET http://ex.com HTTP/1.1\r\nHost: ex.com\r\n\r\n",
            "GET",
            "http://ex.com",
            "/",
            "",
            Version::Http11,
            1,
        ),
        (
            b"GET http://ex.com?q=1 HTTP/1.1\r\nHost: ex.com\r\n\r\n",
            "GET",
            "http://ex.com?q=1",
            "/",
            "q=1",
            Version::Http11,
            1,
        ),
        (
            b"GET https://u:p@[::1]:8443/x HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET",
            "https://u:p@[::1]:8443/x",
            "/x",
            "",
            Version::Http11,
            1,
        ),
        (
            b"CONNECT ex.com:443 HTTP/1.1\r\nHost: ex.com:443\r\n\r\n",
            "CONNECT",
            "ex.com:443",
            "",
            "",
            Version::Http11,
            1,
        ),
        (
            b"M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n",
            "M-SEARCH",
            "/x",
            "/x",
            "",
            Version::Http11,
            1,
        ),
        (
            b"QUERY /x HTTP/1.1\r\nHost: a\r\n\r\n",
            "QUERY",
            "/x",
            "/x",
            "",
            Version::Http11,
            1,
        ),
        (
            b"GET /%7e\"|\\^`{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET",
            "/%7e\"|\\^`{}",
            "/%7e\"|\\^`{}",
            "",
            Version::Http11,
            1,
        ),
    ];
    for &(input, method, target, path, query, version, n) in table {
        let (h, hs) = complete(input);
        let s =
            |span: velocior_protocol::Span| String::from_utf8_lossy(span.get(input)).into_owned();
        assert_eq!(s(h.method), method, "{input:?}");
        assert_eq!(s(h.target), target, "{input:?}");
        assert_eq!(s(h.path), path, "{input:?}");
        assert_eq!(s(h.query), query, "{input:?}");
        assert_eq!(h.version, version, "{input:?}");
        assert_eq!(hs.len(), n, "{input:?}");
        assert_eq!(h.head_len, input.len(), "{input:?}");
    }
}

#[test]
fn header_values_are_trimmed_and_kept_in_order() {
    let input = b"GET / HTTP/1.1\r\nA:x\r\nB: \t y z \t\r\nC:\r\nD:   \r\nA: \xff\x80obs\r\nE: a\tb\r\n\r\nBODY";
    let (h, hs) = complete(input);
    assert_eq!(h.head_len, input.len() - 4);
    let got: Vec<(&[u8], &[u8])> = hs
        .iter()
        .map(|x| (x.name.get(input), x.value.get(input)))
        .collect();
    let want: Vec<(&[u8], &[u8])> = vec![
        (b"A", b"x"),
        (b"B", b"y z"),
        (b"C", b""),
        (b"D", b""),
        (b"A", b"\xff\x80obs"),
        (b"E", b"a\tb"),
    ];
    assert_eq!(got, want);
}

#[test]
fn rejected_heads() {
    use ErrorKind::*;
    // (input, kind, status)
    let table: &[(&[u8], ErrorKind, u16)] = &[
        // request line
        (b" GET / HTTP/1.1\r\n\r\n", BadMethod, 400),
        (b"GE:T / HTTP/1.1\r\n\r\n", BadMethod, 400),
        (b"GET\x00 / HTTP/1.1\r\n\r\n", BadMethod, 400),
        (b"G\xc3\x9fT / HTTP/1.1\r\n\r\n", BadMethod, 400),
        (b"GET\r\n\r\n", BadRequestLine, 400),
        (b"get / HTTP/1.1\r\n\r\n", UnknownMethod, 501),
        (b"MKCOLA / HTTP/1.1\r\n\r\n", UnknownMethod, 501),
        (b"ANNOUNCE / HTTP/1.1\r\n\r\n", UnknownMethod, 501),
        (b"-X / HTTP/1.1\r\n\r\n", UnknownMethod, 501),
        (b"GET  / HTTP/1.1\r\n\r\n", BadRequestLine, 400),
        (b"GET /  HTTP/1.1\r\n\r\n", BadVersion, 400),
        (b"GET / HTTP/1.1 \r\n\r\n", BadVersion, 400),
        (b"GET /a b HTTP/1.1\r\n\r\n", BadVersion, 400),
        (b"GET /\x7f HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET /\x01 HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET /\t HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET * HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET foo/bar HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET ex.com:443 HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"CONNECT /x HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"CONNECT ex.com HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"CONNECT ex.com: HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"CONNECT * HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"PUT s://]ufd/: HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET http:/x HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET http:///x HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET 1http://a/ HTTP/1.1\r\n\r\n", BadTarget, 400),
        (b"GET http://a b/ HTTP/1.1\r\n\r\n", BadVersion, 400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", UnsupportedVersion, 505),
        (b"GET / HTTP/2.0\r\n\r\n", UnsupportedVersion, 505),
        (b"GET / HTTP/0.9\r\n\r\n", UnsupportedVersion, 505),
        (b"GET / HTTP/1.2\r\n\r\n", UnsupportedVersion, 505),
        (b"GET / HTTP/5.6\r\n\r\n", UnsupportedVersion, 505),
        (b"GET /\r\n\r\n", UnsupportedVersion, 505),
        (b"GET / HTTP/0.99\r\n\r\n", BadVersion, 400),
        (b"GET / HTTP/111\r\n\r\n", BadVersion, 400),
        (b"GET / http/1.1\r\n\r\n", BadVersion, 400),
        (b"GET / FTP/1.1\r\n\r\n", BadVersion, 400),
        (b"GET / RTSP/1.0\r\n\r\n", BadVersion, 400),
        (b"GET / HTTP/1.1\rX: y\r\n\r\n", BareCr, 400),
        (b"GET / HTTP/1.1\nX: y\r\n\r\n", BareLf, 400),
        (b"GET /\n\r\n", BareLf, 400),
        (b"\rGET / HTTP/1.1\r\n\r\n", BareCr, 400),
        // header lines
        (b"GET / HTTP/1.1\r\nX: y\n\r\n", BareLf, 400),
        (b"GET / HTTP/1.1\r\nX: y\rZ: w\r\n\r\n", BareCr, 400),
        (b"GET / HTTP/1.1\r\nX: y\r\n\n", BareLf, 400),
        (b"GET / HTTP/1.1\r\nX: y\r\n\rZ", BareCr, 400),
        (b"GET / HTTP/1.1\r\nX: y\r\n z\r\n\r\n", ObsFold, 400),
        (b"GET / HTTP/1.1\r\nX: y\r\n\tz\r\n\r\n", ObsFold, 400),
        (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", BadHeaderName, 400),
        (
            b"GET / HTTP/1.1\r\nX : y\r\n\r\n",
            WhitespaceBeforeColon,
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nX\t: y\r\n\r\n",
            WhitespaceBeforeColon,
            400,
        ),
        (b"GET / HTTP/1.1\r\n: y\r\n\r\n", BadHeaderName, 400),
        (b"GET / HTTP/1.1\r\nX\r\n\r\n", BadHeaderName, 400),
        (b"GET / HTTP/1.1\r\nFo@: y\r\n\r\n", BadHeaderName, 400),
        (b"GET / HTTP/1.1\r\nFo\x00o: y\r\n\r\n", BadHeaderName, 400),
        (
            b"GET / HTTP/1.1\r\nFo\xc3\x9f: y\r\n\r\n",
            BadHeaderName,
            400,
        ),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", BadHeaderValue, 400),
        (b"GET / HTTP/1.1\r\nX: a\x07b\r\n\r\n", BadHeaderValue, 400),
        (b"GET / HTTP/1.1\r\nX: a\x0cb\r\n\r\n", BadHeaderValue, 400),
        (b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", BadHeaderValue, 400),
        (
            b"GET / HTTP/1.1\r\nX: abcdefghijklmnop\x1bqrstuvwxyz\r\n\r\n",
            BadHeaderValue,
            400,
        ),
    ];
    for &(input, kind, status) in table {
        match parse(input) {
            Err((k, _)) => {
                assert_eq!(k, kind, "{:?}", String::from_utf8_lossy(input));
                assert_eq!(k.status(), status, "{kind:?}");
            }
            other => panic!(
                "{:?}: expected {kind:?}, got {other:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }
}

#[test]
fn error_offsets_point_at_the_bad_byte() {
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nX : y\r\n\r\n"),
        Err((ErrorKind::WhitespaceBeforeColon, 17))
    );
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nX: a\x00\r\n\r\n"),
        Err((ErrorKind::BadHeaderValue, 20))
    );
    assert_eq!(
        parse(b"GET /\x7f HTTP/1.1\r\n\r\n"),
        Err((ErrorKind::BadTarget, 5))
    );
    assert_eq!(parse(b"GET / HTTP/1.1\nX"), Err((ErrorKind::BareLf, 14)));
    let e = velocior_protocol::Error {
        kind: ErrorKind::BareLf,
        offset: 14,
    };
    assert_eq!(e.to_string(), "line ends with LF without CR at byte 14");
}

#[test]
fn partial_until_the_head_ends() {
    let full = b"GET /x?y HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
    for k in 0..full.len() {
        assert_eq!(parse(&full[..k]), Ok(None), "prefix {k}");
    }
    assert!(parse(full).unwrap().is_some());
}

#[test]
fn limits_apply_while_partial() {
    let limits = Limits {
        max_head_bytes: 64,
        max_headers: 2,
        max_target_bytes: 10,
        ..Limits::default()
    };
    // target: 10 bytes fine, 11 fail at once, even before the line ends
    assert!(parse_with(b"GET /123456789 HTTP/1.1\r\n\r\n", &limits)
        .unwrap()
        .is_some());
    assert_eq!(
        parse_with(b"GET /1234567890", &limits),
        Err((ErrorKind::TargetTooLong, 14))
    );
    assert_eq!(ErrorKind::TargetTooLong.status(), 414);
    // head: a long header line fails once it crosses the limit, without its end
    let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long.resize(64, b'a');
    assert_eq!(parse_with(&long, &limits), Ok(None));
    long.push(b'a');
    assert_eq!(
        parse_with(&long, &limits),
        Err((ErrorKind::HeadTooLarge, 64))
    );
    assert_eq!(ErrorKind::HeadTooLarge.status(), 431);
    // a head of exactly the limit is fine
    let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
    exact.resize(60, b'a');
    exact.extend_from_slice(b"\r\n\r\n");
    assert_eq!(exact.len(), 64);
    assert!(parse_with(&exact, &limits).unwrap().is_some());
    // header count: the third header line fails as soon as it starts
    assert!(
        parse_with(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &limits)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        parse_with(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC", &limits),
        Err((ErrorKind::TooManyHeaders, 28))
    );
    assert_eq!(ErrorKind::TooManyHeaders.status(), 431);
    // a megabyte of header line with default limits stops at 16384
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.resize(1 << 20, b'a');
    assert_eq!(parse(&huge), Err((ErrorKind::HeadTooLarge, 16384)));
}

fn host_check(input: &[u8]) -> Result<(), ErrorKind> {
    let (h, hs) = complete(input);
    check_host(&h, input, &hs).map_err(|e| e.kind)
}

#[test]
fn host_rule() {
    use ErrorKind::*;
    let ok: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"GET / HTTP/1.1\r\nhOsT: example.com:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 0.0.0.0=5000\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a%41b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    ];
    for input in ok {
        assert_eq!(
            host_check(input),
            Ok(()),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bad: &[(&[u8], ErrorKind)] = &[
        (b"GET / HTTP/1.1\r\n\r\n", MissingHost),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            DuplicateHost,
        ),
        (
            b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
            DuplicateHost,
        ),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BadHost),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", BadHost),
        (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", BadHost),
        (b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", BadHost),
        (b"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", BadHost),
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", BadHost),
        (b"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", BadHost),
        (b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", BadHost),
    ];
    for &(input, kind) in bad {
        assert_eq!(
            host_check(input),
            Err(kind),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(kind.status(), 400);
    }
}

fn framing(input: &[u8]) -> Result<Framing, ErrorKind> {
    let (h, hs) = complete(input);
    request_framing(&h, input, &hs).map_err(|e| e.kind)
}

fn f(body: BodyKind, keep_alive: bool, expect_continue: bool) -> Result<Framing, ErrorKind> {
    Ok(Framing {
        body,
        keep_alive,
        expect_continue,
    })
}

#[test]
fn framing_rules() {
    use BodyKind::*;
    use ErrorKind::*;
    let table: &[(&[u8], Result<Framing, ErrorKind>)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", f(None, true, false)),
        (b"GET / HTTP/1.0\r\n\r\n", f(None, false, false)),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            f(None, true, false),
        ),
        (
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n",
            f(None, false, false),
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            f(None, false, false),
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: x, CLOSE\r\n\r\n",
            f(None, false, false),
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: a\r\nConnection: close\r\n\r\n",
            f(None, false, false),
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n",
            f(None, true, false),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            f(Length(5), true, false),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            f(Length(0), true, false),
        ),
        (
            b"POST / HTTP/1.1\r\ncontent-length:  007 \r\n\r\n",
            f(Length(7), true, false),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
            f(Length(u64::MAX), true, false),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            f(Chunked, true, false),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
            f(Chunked, true, false),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: ,chunked,\r\n\r\n",
            f(Chunked, true, false),
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            f(Chunked, false, false),
        ),
        (
            b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
            f(Chunked, false, false),
        ),
        (
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            f(Length(3), true, true),
        ),
        (
            b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
            f(Chunked, true, true),
        ),
        (
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            f(Length(0), true, false),
        ),
        (
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            f(Length(3), false, false),
        ),
        (
            b"POST / HTTP/1.1\r\nExpect: something\r\nContent-Length: 3\r\n\r\n",
            f(Length(3), true, false),
        ),
        (
            b"CONNECT a:1 HTTP/1.1\r\nContent-Length: 10\r\n\r\n",
            f(None, false, false),
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            f(None, false, false),
        ),
        (
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            f(None, true, false),
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            f(None, true, false),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            Err(DuplicateContentLength),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            Err(BadContentLength),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            Err(BadContentLength),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            Err(BadContentLength),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: -0\r\n\r\n",
            Err(BadContentLength),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            Err(BadContentLength),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 4 2\r\n\r\n",
            Err(BadContentLength),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
            Err(BadContentLength),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(ContentLengthWithTransferEncoding),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
            Err(ContentLengthWithTransferEncoding),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\nContent-Length: 1\r\n\r\n",
            Err(ContentLengthWithTransferEncoding),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
            Err(TransferEncodingNotChunked),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            Err(TransferEncodingNotChunked),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Err(TransferEncodingNotChunked),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            Err(TransferEncodingNotChunked),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            Err(TransferEncodingNotChunked),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunkedchunked\r\n\r\n",
            Err(TransferEncodingNotChunked),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
            Err(TransferEncodingNotChunked),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Err(UnsupportedTransferCoding),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(UnsupportedTransferCoding),
        ),
    ];
    for (input, want) in table {
        assert_eq!(
            &framing(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        if let Err(k) = want {
            let status = if *k == UnsupportedTransferCoding {
                501
            } else {
                400
            };
            assert_eq!(k.status(), status);
        }
    }
}

#[test]
fn every_error_kind_has_a_status_and_text() {
    use ErrorKind::*;
    for k in [
        BadMethod,
        UnknownMethod,
        BadRequestLine,
        BadTarget,
        TargetTooLong,
        BadVersion,
        UnsupportedVersion,
        BareLf,
        BareCr,
        ObsFold,
        BadHeaderName,
        WhitespaceBeforeColon,
        BadHeaderValue,
        HeadTooLarge,
        TooManyHeaders,
        MissingHost,
        DuplicateHost,
        BadHost,
        BadContentLength,
        DuplicateContentLength,
        ContentLengthWithTransferEncoding,
        TransferEncodingNotChunked,
        UnsupportedTransferCoding,
        BadChunkSize,
        ChunkSizeOverflow,
        BadChunkExtension,
        ChunkExtensionTooLong,
        MissingChunkCrlf,
        TrailerTooLarge,
        UwsgiModifier,
        UwsgiVarsTooLarge,
        UwsgiTooManyVars,
        UwsgiTruncatedVar,
        UwsgiEmptyKey,
        UwsgiBadContentLength,
        UwsgiEncodeTooLarge,
    ] {
        assert!(
            [400, 414, 431, 500, 501, 505].contains(&k.status()),
            "{k:?}"
        );
        assert!(!k.description().is_empty());
    }
}

#[test]
fn pipelined_requests_parse_one_after_another() {
    let one = b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n";
    let input: Vec<u8> = one.iter().copied().cycle().take(one.len() * 16).collect();
    let out = common::drive_whole(&input, &Limits::default());
    assert_eq!(out.requests.len(), 16);
    assert_eq!(out.end, common::End::Clean);
}
