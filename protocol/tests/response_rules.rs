//! Response head encoder, status parsing, canned responses, chunk framing.

use velocior_protocol::response::{
    canned_response, chunk_header, encode_response_head, name_eq, parse_status, ConnectionHeader,
    HeaderError, ResponseFraming, ResponseOptions, CHUNK_END,
};

fn opts(framing: ResponseFraming, connection: ConnectionHeader) -> ResponseOptions<'static> {
    ResponseOptions {
        framing,
        connection,
        date: Some(b"Tue, 01 Jan 2030 00:00:00 GMT"),
        server: Some(b"velocior"),
    }
}

fn enc(
    status: &[u8],
    headers: &[(&[u8], &[u8])],
    o: &ResponseOptions,
) -> Result<Vec<u8>, HeaderError> {
    let mut out = b"PREV".to_vec();
    let r = encode_response_head(&mut out, status, headers.iter().copied(), o);
    match r {
        Ok(()) => Ok(out[4..].to_vec()),
        Err(e) => {
            assert_eq!(out, b"PREV", "out must be truncated back on error");
            Err(e)
        }
    }
}

#[test]
fn typical_head() {
    let got = enc(
        b"200 OK",
        &[
            (b"Content-Type", b"text/html"),
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
        ],
        &opts(ResponseFraming::Length(1234), ConnectionHeader::None),
    )
    .unwrap();
    assert_eq!(
        got,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
Date: Tue, 01 Jan 2030 00:00:00 GMT\r\nServer: velocior\r\nContent-Length: 1234\r\n\r\n"
    );
}

#[test]
fn framing_and_connection_are_the_callers() {
    let app: &[(&[u8], &[u8])] = &[
        (b"content-length", b"99"),
        (b"Transfer-Encoding", b"gzip"),
        (b"Connection", b"upgrade"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X", b"y"),
    ];
    let got = enc(
        b"404 Not Found",
        app,
        &ResponseOptions {
            framing: ResponseFraming::Chunked,
            connection: ConnectionHeader::Close,
            date: None,
            server: None,
        },
    )
    .unwrap();
    assert_eq!(got, b"HTTP/1.1 404 Not Found\r\nX: y\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    let got = enc(
        b"200 OK",
        &[],
        &ResponseOptions {
            framing: ResponseFraming::CloseDelimited,
            connection: ConnectionHeader::KeepAlive,
            date: None,
            server: None,
        },
    )
    .unwrap();
    assert_eq!(got, b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n");
    let got = enc(
        b"304 Not Modified",
        &[],
        &ResponseOptions {
            framing: ResponseFraming::NoBody,
            connection: ConnectionHeader::None,
            date: None,
            server: None,
        },
    )
    .unwrap();
    assert_eq!(got, b"HTTP/1.1 304 Not Modified\r\n\r\n");
    let got = enc(
        b"200 OK",
        &[],
        &ResponseOptions {
            framing: ResponseFraming::Length(0),
            connection: ConnectionHeader::None,
            date: None,
            server: None,
        },
    )
    .unwrap();
    assert_eq!(got, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let got = enc(
        b"200 OK",
        &[],
        &ResponseOptions {
            framing: ResponseFraming::Length(u64::MAX),
            connection: ConnectionHeader::None,
            date: None,
            server: None,
        },
    )
    .unwrap();
    assert_eq!(
        got,
        b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n"
    );
}

#[test]
fn app_date_and_server_win() {
    let got = enc(
        b"200 OK",
        &[(b"date", b"app date"), (b"SERVER", b"app")],
        &opts(ResponseFraming::NoBody, ConnectionHeader::None),
    )
    .unwrap();
    assert_eq!(
        got,
        b"HTTP/1.1 200 OK\r\ndate: app date\r\nSERVER: app\r\n\r\n"
    );
}

#[test]
fn injection_is_refused() {
    let o = opts(ResponseFraming::Length(0), ConnectionHeader::None);
    let bad_values: &[&[u8]] = &[b"a\r\nSet-Cookie: x", b"a\nb", b"a\rb", b"a\0b"];
    for v in bad_values {
        assert_eq!(
            enc(b"200 OK", &[(b"Ok", b"fine"), (b"X", v)], &o),
            Err(HeaderError::BadValue(1))
        );
    }
    let bad_names: &[&[u8]] = &[b"", b"X Y", b"X:", b"X\r\nY", b"\xc3\xa9", b"a\0", b"(x)"];
    for n in bad_names {
        assert_eq!(
            enc(b"200 OK", &[(n, b"v")], &o),
            Err(HeaderError::BadName(0))
        );
    }
    // a value may carry other bytes (tab, obs-text): only CR, LF and NUL can split a response
    assert!(enc(b"200 OK", &[(b"X", b"a\tb\xff")], &o).is_ok());
    assert_eq!(enc(b"200 OK\r\nX: y", &[], &o), Err(HeaderError::BadStatus));
    assert_eq!(
        HeaderError::BadValue(3).to_string(),
        "header #3 has CR, LF or NUL in its value"
    );
}

#[test]
fn status_strings() {
    assert_eq!(parse_status(b"200 OK"), Ok(200));
    assert_eq!(parse_status(b"404 Not Found"), Ok(404));
    assert_eq!(parse_status(b"599 "), Ok(599));
    assert_eq!(parse_status(b"999 Whatever"), Ok(999));
    assert_eq!(parse_status(b"100 Continue"), Ok(100));
    assert_eq!(parse_status(b"200"), Err(HeaderError::BadStatus));
    assert_eq!(parse_status(b"204 No\tContent \xff"), Ok(204));
    for bad in [
        &b""[..],
        b"20",
        b"200OK",
        b"099 Low",
        b"abc OK",
        b"2000 OK",
        b" 200 OK",
        b"200 O\nK",
        b"200 O\rK",
        b"200 \0",
    ] {
        assert_eq!(
            parse_status(bad),
            Err(HeaderError::BadStatus),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn canned_responses_are_complete_and_consistent() {
    for (status, reason) in [
        (400, "Bad Request"),
        (408, "Request Timeout"),
        (413, "Content Too Large"),
        (414, "URI Too Long"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (501, "Not Implemented"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (505, "HTTP Version Not Supported"),
    ] {
        let r = canned_response(status);
        let text = std::str::from_utf8(r).unwrap();
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")),
            "{text}"
        );
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains("\r\nContent-Type: text/plain"));
        let cl: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cl, body.len(), "{status}");
        assert_eq!(body, format!("{reason}\n"));
    }
    assert_eq!(canned_response(418), canned_response(500));
    assert_eq!(canned_response(200), canned_response(500));
}

#[test]
fn chunk_framing() {
    let mut out = Vec::new();
    for (len, want) in [
        (1usize, &b"1\r\n"[..]),
        (15, b"f\r\n"),
        (16, b"10\r\n"),
        (4096, b"1000\r\n"),
        (usize::MAX, b"ffffffffffffffff\r\n"),
    ] {
        out.clear();
        chunk_header(len, &mut out);
        assert_eq!(out, want);
    }
    assert_eq!(CHUNK_END, b"0\r\n\r\n");
}

#[test]
fn names_compare_without_case() {
    assert!(name_eq(b"Content-Length", b"content-length"));
    assert!(!name_eq(b"Content-Length", b"content-lengt"));
    assert!(!name_eq(b"a", b"b"));
}

#[test]
fn encoding_into_a_reserved_buffer_does_not_reallocate() {
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let before = out.as_ptr();
    let headers: [(&[u8], &[u8]); 3] = [
        (b"Content-Type", b"text/html; charset=utf-8"),
        (b"Cache-Control", b"no-store"),
        (b"X-Request-Id", b"abc123"),
    ];
    let o = opts(ResponseFraming::Length(13), ConnectionHeader::KeepAlive);
    encode_response_head(&mut out, b"200 OK", headers, &o).unwrap();
    assert_eq!(out.as_ptr(), before);
    assert_eq!(out.capacity(), 1024);
    assert!(out.ends_with(b"Content-Length: 13\r\nConnection: keep-alive\r\n\r\n"));
}
