//! Table-driven tests for the uwsgi packet parser and encoder.

use velocior_protocol::uwsgi::{encode, parse, UwsgiHead, UwsgiVar};
use velocior_protocol::{ErrorKind, Limits, Status};

fn packet(vars: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(vars, 0, 0, &mut out).unwrap();
    out
}

type Parsed = Result<Option<(UwsgiHead, Vec<UwsgiVar>)>, (ErrorKind, usize)>;

fn parse_default(buf: &[u8]) -> Parsed {
    let mut vars = Vec::new();
    match parse(buf, &Limits::default(), &mut vars) {
        Ok(Status::Complete(h)) => Ok(Some((h, vars))),
        Ok(Status::Partial) => Ok(None),
        Err(e) => Err((e.kind, e.offset)),
    }
}

#[test]
fn nginx_shaped_packet() {
    let vars: &[(&[u8], &[u8])] = &[
        (b"QUERY_STRING", b"a=1"),
        (b"REQUEST_METHOD", b"POST"),
        (b"CONTENT_TYPE", b"text/plain"),
        (b"CONTENT_LENGTH", b"5"),
        (b"REQUEST_URI", b"/x?a=1"),
        (b"PATH_INFO", b"/x"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"HTTP_HOST", b"example.com"),
        (b"HTTP_TRANSFER_ENCODING", b"chunked"),
        (b"EMPTY", b""),
    ];
    let mut buf = packet(vars);
    let head_len = buf.len();
    buf.extend_from_slice(b"hello");
    let (h, got) = parse_default(&buf).unwrap().unwrap();
    assert_eq!(
        h,
        UwsgiHead {
            modifier1: 0,
            modifier2: 0,
            head_len,
            content_length: 5
        }
    );
    let got: Vec<(&[u8], &[u8])> = got
        .iter()
        .map(|v| (v.key.get(&buf), v.value.get(&buf)))
        .collect();
    assert_eq!(got, vars);
    // every prefix shorter than the head is Partial
    for k in 0..head_len {
        assert_eq!(parse_default(&buf[..k]), Ok(None), "prefix {k}");
    }
}

#[test]
fn content_length_rules() {
    let cases: &[(&[u8], Result<u64, ErrorKind>)] = &[
        (b"", Ok(0)),
        (b"0", Ok(0)),
        (b"123", Ok(123)),
        (b"18446744073709551615", Ok(u64::MAX)),
        (
            b"18446744073709551616",
            Err(ErrorKind::UwsgiBadContentLength),
        ),
        (b"-1", Err(ErrorKind::UwsgiBadContentLength)),
        (b" 1", Err(ErrorKind::UwsgiBadContentLength)),
        (b"1 ", Err(ErrorKind::UwsgiBadContentLength)),
        (b"0x10", Err(ErrorKind::UwsgiBadContentLength)),
        (b"1,1", Err(ErrorKind::UwsgiBadContentLength)),
    ];
    for &(value, want) in cases {
        let buf = packet(&[(b"CONTENT_LENGTH", value), (b"CONTENT_TYPE", b"")]);
        let got = parse_default(&buf)
            .map(|r| r.unwrap().0.content_length)
            .map_err(|e| e.0);
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(value));
    }
    // absent
    let buf = packet(&[(b"PATH_INFO", b"/")]);
    assert_eq!(parse_default(&buf).unwrap().unwrap().0.content_length, 0);
    // given twice: equal is fine, different is refused
    let buf = packet(&[(b"CONTENT_LENGTH", b"3"), (b"CONTENT_LENGTH", b"3")]);
    assert_eq!(parse_default(&buf).unwrap().unwrap().0.content_length, 3);
    let buf = packet(&[(b"CONTENT_LENGTH", b"3"), (b"CONTENT_LENGTH", b"4")]);
    assert_eq!(
        parse_default(&buf).map_err(|e| e.0),
        Err(ErrorKind::UwsgiBadContentLength)
    );
    assert_eq!(ErrorKind::UwsgiBadContentLength.status(), 400);
}

#[test]
fn rejected_packets() {
    use ErrorKind::*;
    // modifier1 other than 0: 501, as soon as the 4-byte header is there
    assert_eq!(parse_default(&[5, 0, 0, 0]), Err((UwsgiModifier, 0)));
    assert_eq!(UwsgiModifier.status(), 501);
    // a key length running past the block
    let mut buf = vec![0, 6, 0, 0, 10, 0, b'a', b'b', b'c', b'd'];
    assert_eq!(parse_default(&buf), Err((UwsgiTruncatedVar, 4)));
    // a value length running past the block (the body must not be read as vars)
    buf = vec![
        0, 7, 0, 0, 1, 0, b'K', 5, 0, b'v', b'v', b'b', b'o', b'd', b'y',
    ];
    assert_eq!(parse_default(&buf), Err((UwsgiTruncatedVar, 7)));
    // a lone byte where a length should be
    buf = vec![0, 1, 0, 0, 7];
    assert_eq!(parse_default(&buf), Err((UwsgiTruncatedVar, 4)));
    // an empty key
    buf = vec![0, 5, 0, 0, 0, 0, 1, 0, b'v'];
    assert_eq!(parse_default(&buf), Err((UwsgiEmptyKey, 4)));
    assert_eq!(UwsgiTruncatedVar.status(), 400);
    assert_eq!(UwsgiEmptyKey.status(), 400);
}

#[test]
fn limits() {
    let vars: Vec<(Vec<u8>, Vec<u8>)> = (0..10)
        .map(|i| (format!("K{i}").into_bytes(), b"v".to_vec()))
        .collect();
    let refs: Vec<(&[u8], &[u8])> = vars
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let buf = packet(&refs);
    let mut out = Vec::new();
    let l = Limits {
        max_uwsgi_vars: 10,
        ..Limits::default()
    };
    assert!(parse(&buf, &l, &mut out).unwrap().is_complete());
    let l = Limits {
        max_uwsgi_vars: 9,
        ..Limits::default()
    };
    let e = parse(&buf, &l, &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UwsgiTooManyVars);
    assert_eq!(e.kind.status(), 431);
    // vars block size: checked from the 4-byte header alone, before the block arrives
    let l = Limits {
        max_uwsgi_vars_bytes: 100,
        ..Limits::default()
    };
    let e = parse(&[0, 101, 0, 0], &l, &mut out).unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::UwsgiVarsTooLarge, 1));
    assert_eq!(e.kind.status(), 431);
    assert!(parse(&[0, 100, 0, 0], &l, &mut out).unwrap().is_partial());
    // a configured limit above 65535 acts as 65535 (the wire cannot say more)
    let l = Limits {
        max_uwsgi_vars_bytes: 1 << 20,
        ..Limits::default()
    };
    assert!(parse(&[0, 0xff, 0xff, 0], &l, &mut out)
        .unwrap()
        .is_partial());
}

#[test]
fn encoder_limits_and_modifiers() {
    let mut out = b"keep".to_vec();
    let big = vec![b'x'; 65536];
    let e = encode(&[(b"K", &big)], 0, 0, &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UwsgiEncodeTooLarge);
    assert_eq!(e.kind.status(), 500);
    assert_eq!(out, b"keep");
    let half = vec![b'x'; 40000];
    assert!(encode(&[(b"A", &half), (b"B", &half)], 0, 0, &mut out).is_err());
    assert_eq!(out, b"keep");
    out.clear();
    encode(&[(b"A", b"b")], 0, 7, &mut out).unwrap();
    assert_eq!(out, [0, 6, 0, 7, 1, 0, b'A', 1, 0, b'b']);
    let mut vars = Vec::new();
    let Status::Complete(h) = parse(&out, &Limits::default(), &mut vars).unwrap() else {
        panic!()
    };
    assert_eq!(h.modifier2, 7);
    // an empty packet (no vars) is valid
    assert!(parse(&[0, 0, 0, 0], &Limits::default(), &mut vars)
        .unwrap()
        .is_complete());
    assert!(vars.is_empty());
}
