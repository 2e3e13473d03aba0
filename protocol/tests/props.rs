//! Property tests (stable Rust, proptest): whole vs split invariance, encoder/parser round trips,
//! no panics on any input.

mod common;

use common::{drive_bytewise, drive_split, drive_whole};
use proptest::collection::vec;
use proptest::prelude::*;
use velocior_protocol::http1::{parse_request_head, Chunk, ChunkedDecoder};
use velocior_protocol::response::{
    encode_response_head, ConnectionHeader, ResponseFraming, ResponseOptions,
};
use velocior_protocol::uwsgi;
use velocior_protocol::{Limits, Status};

fn small_limits() -> Limits {
    // small enough that random inputs reach every limit
    Limits {
        max_head_bytes: 256,
        max_headers: 6,
        max_target_bytes: 40,
        max_uwsgi_vars_bytes: 300,
        max_uwsgi_vars: 8,
        max_chunk_ext_bytes: 12,
        max_trailer_bytes: 40,
    }
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop::sample::select(b"abcXYZ09-_!#$%&'*+.^`|~".to_vec()),
        1..8,
    )
}

fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => vec(prop::sample::select(b" \tabc:;,=\"/\x80\xff".to_vec()), 0..12),
        1 => vec(prop::sample::select(b" a\x7f\x00\r\n\x01".to_vec()), 0..4),
    ]
}

/// Mostly one of `good`, sometimes one of `bad`.
fn pick(good: &[&'static [u8]], bad: &[&'static [u8]]) -> BoxedStrategy<&'static [u8]> {
    prop_oneof![
        8 => prop::sample::select(good.to_vec()),
        1 => prop::sample::select(bad.to_vec()),
    ]
    .boxed()
}

/// Requests that are mostly valid, so the properties reach the deep states; then a mutation.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = pick(
        &[b"GET", b"POST", b"PUT", b"OPTIONS"],
        &[b"CONNECT", b"get", b"BREW", b""],
    );
    let target = pick(
        &[
            b"/",
            b"/a?b=c#d",
            b"/x/y/z?q=1&r=2",
            b"http://h:1/p?q",
            b"http://h",
        ],
        &[b"*", b"h:443", b"/\xff", b"/a b", b""],
    );
    let version = pick(
        &[b"HTTP/1.1", b"HTTP/1.0"],
        &[b"HTTP/2.0", b"HTTP/1.1 ", b"HTTP/1"],
    );
    let eol = || pick(&[b"\r\n"], &[b"\n", b"\r"]);
    let header = (
        token(),
        pick(&[b": ", b":"], &[b" : ", b" :"]),
        value_bytes(),
        eol(),
    );
    let framing = pick(
        &[
            b"",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Connection: close\r\n",
            b"Connection: keep-alive\r\n",
            b"Host: h\r\n",
        ],
        &[
            b"Content-Length: 3\r\nContent-Length: 3\r\n",
            b"Transfer-Encoding: gzip, chunked\r\n",
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            b"Host: h\r\nHost: h\r\n",
        ],
    );
    let body = pick(
        &[
            b"",
            b"abc",
            b"3\r\nabc\r\n0\r\n\r\n",
            b"3;x=\"y\"\r\nabc\r\n0\r\nT: v\r\n\r\n",
        ],
        &[b"3 \r\nabc", b"3\r\nabcd"],
    );
    (
        method,
        target,
        version,
        eol(),
        vec(header, 0..5),
        framing,
        body,
        1usize..4,
    )
        .prop_map(|(m, t, v, e, hs, fr, body, copies)| {
            let mut one = Vec::new();
            one.extend_from_slice(m);
            one.push(b' ');
            one.extend_from_slice(t);
            one.push(b' ');
            one.extend_from_slice(v);
            one.extend_from_slice(e);
            for (n, sep, val, eol) in hs {
                one.extend_from_slice(&n);
                one.extend_from_slice(sep);
                one.extend_from_slice(&val);
                one.extend_from_slice(eol);
            }
            one.extend_from_slice(fr);
            one.extend_from_slice(b"\r\n");
            one.extend_from_slice(body);
            one.repeat(copies)
        })
}

fn mutated(base: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (base, prop_oneof![2 => Just(Vec::new()), 1 => vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..3)]).prop_map(|(mut v, muts)| {
        for (at, byte, op) in muts {
            if v.is_empty() {
                v.push(byte);
                continue;
            }
            let i = at.index(v.len());
            match op {
                0 => v[i] = byte,
                1 => v.insert(i, byte),
                _ => {
                    v.remove(i);
                }
            }
        }
        v
    })
}

fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    vec(0..=len, 0..6).prop_map(|mut c| {
        c.sort_unstable();
        c
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Same outcome whole, byte by byte and at random split points, for (mutated) requests,
    /// with default and with small limits.
    #[test]
    fn http_same_result_whole_and_split(input in mutated(request()), seed in any::<u64>()) {
        for limits in [Limits::default(), small_limits()] {
            let whole = drive_whole(&input, &limits);
            prop_assert_eq!(&drive_bytewise(&input, &limits), &whole);
            let len = input.len();
            let mut cut: Vec<usize> = (0..4).map(|i| (seed.rotate_left(i * 16) as usize) % (len + 1)).collect();
            cut.sort_unstable();
            prop_assert_eq!(&drive_split(&input, &cut, &limits), &whole);
        }
    }

    /// Arbitrary bytes: no panic, spans inside the head, and a prefix never disagrees.
    #[test]
    fn http_head_any_bytes(input in vec(any::<u8>(), 0..200), k in any::<prop::sample::Index>()) {
        let mut hs = Vec::new();
        let whole = parse_request_head(&input, &small_limits(), &mut hs);
        if let Ok(Status::Complete(h)) = &whole {
            for s in [h.method, h.target, h.path, h.query] {
                prop_assert!(s.end as usize <= h.head_len && s.start <= s.end);
            }
            for x in &hs {
                prop_assert!(x.name.end <= x.value.start && (x.value.end as usize) < h.head_len);
            }
        }
        let cut = k.index(input.len() + 1);
        let prefix = parse_request_head(&input[..cut], &small_limits(), &mut hs);
        match prefix {
            Ok(Status::Partial) => {}
            other => prop_assert_eq!(other, whole),
        }
    }

    /// Any vars the encoder takes parse back to the same vars, the same modifiers and the
    /// same bytes; every strict prefix is Partial.
    #[test]
    fn uwsgi_round_trip(
        vars in vec((vec(any::<u8>(), 1..20), vec(any::<u8>(), 0..40)), 0..20),
        m2 in any::<u8>(),
        body in vec(any::<u8>(), 0..16),
    ) {
        let refs: Vec<(&[u8], &[u8])> = vars.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        let mut buf = Vec::new();
        uwsgi::encode(&refs, 0, m2, &mut buf).unwrap();
        let head_len = buf.len();
        buf.extend_from_slice(&body);
        let mut parsed = Vec::new();
        match uwsgi::parse(&buf, &Limits::default(), &mut parsed) {
            Ok(Status::Complete(h)) => {
                prop_assert_eq!(h.head_len, head_len);
                prop_assert_eq!(h.modifier2, m2);
                let back: Vec<(&[u8], &[u8])> = parsed.iter().map(|v| (v.key.get(&buf), v.value.get(&buf))).collect();
                prop_assert_eq!(&back, &refs);
                let mut again = Vec::new();
                uwsgi::encode(&back, h.modifier1, h.modifier2, &mut again).unwrap();
                prop_assert_eq!(&again[..], &buf[..head_len]);
            }
            // random keys may spell CONTENT_LENGTH with a bad value; nothing else may fail
            Err(e) => prop_assert_eq!(e.kind, velocior_protocol::ErrorKind::UwsgiBadContentLength),
            Ok(Status::Partial) => prop_assert!(false, "complete packet reported partial"),
        }
        for k in 0..head_len {
            prop_assert!(uwsgi::parse(&buf[..k], &Limits::default(), &mut parsed).unwrap().is_partial());
        }
    }

    /// Arbitrary packets: no panic; the first answer for a prefix is the answer for the whole.
    #[test]
    fn uwsgi_any_bytes(input in vec(any::<u8>(), 0..120), k in any::<prop::sample::Index>()) {
        let mut input = input;
        if input.len() >= 4 && input[0] % 4 != 0 {
            input[0] = 0; // reach past the modifier1 check most of the time
        }
        let mut vars = Vec::new();
        let whole = uwsgi::parse(&input, &small_limits(), &mut vars);
        let cut = k.index(input.len() + 1);
        match uwsgi::parse(&input[..cut], &small_limits(), &mut vars) {
            Ok(Status::Partial) => {}
            other => prop_assert_eq!(other, whole),
        }
    }

    /// Chunked bodies built from random pieces decode to the same bytes under any split.
    #[test]
    fn chunked_round_trip(
        pieces in vec((vec(any::<u8>(), 1..50), prop::option::of(token())), 0..6),
        trailer in prop::option::of((token(), vec(prop::sample::select(b"abc xyz".to_vec()), 0..10))),
        cut in cuts(400),
    ) {
        let mut enc = Vec::new();
        let mut want = Vec::new();
        for (data, ext) in &pieces {
            enc.extend_from_slice(format!("{:X}", data.len()).as_bytes());
            if let Some(e) = ext {
                enc.push(b';');
                enc.extend_from_slice(e);
            }
            enc.extend_from_slice(b"\r\n");
            enc.extend_from_slice(data);
            enc.extend_from_slice(b"\r\n");
            want.extend_from_slice(data);
        }
        enc.extend_from_slice(b"0\r\n");
        if let Some((n, v)) = &trailer {
            enc.extend_from_slice(n);
            enc.extend_from_slice(b": ");
            enc.extend_from_slice(v);
            enc.extend_from_slice(b"\r\n");
        }
        enc.extend_from_slice(b"\r\nNEXT");
        let cut: Vec<usize> = cut.into_iter().filter(|&c| c <= enc.len()).collect();
        let (body, end) = decode_pieces(&enc, &cut).unwrap();
        prop_assert_eq!(body, want);
        prop_assert_eq!(end, Some(enc.len() - 4));
    }

    /// Arbitrary chunked input: no panic, same result whole and split.
    #[test]
    fn chunked_any_bytes(input in mutated(Just(b"5;a=\"b\"\r\nhello\r\n1\r\nx\r\n0\r\nT: v\r\n\r\n".to_vec())), cut in cuts(60)) {
        let cut: Vec<usize> = cut.into_iter().filter(|&c| c <= input.len()).collect();
        prop_assert_eq!(decode_pieces(&input, &cut), decode_pieces(&input, &[]));
    }

    /// The response encoder either refuses (leaving `out` as it was) or writes a head that a
    /// different parser (httparse) reads back with the app's headers, in order. (Values here
    /// hold no control bytes other than CR, LF, NUL and HTAB: the encoder passes other controls
    /// through, which httparse refuses but cannot split a response.)
    #[test]
    fn response_heads_cannot_be_split(
        headers in vec((vec(prop::sample::select(b"aZ-_:( \r\n\x00\xff".to_vec()), 0..6), vec(prop::sample::select(b"aZ :\t\r\n\x00\xff".to_vec()), 0..8)), 0..5),
        len in any::<u64>(),
    ) {
        let refs: Vec<(&[u8], &[u8])> = headers.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        let mut out = b"X".to_vec();
        let opts = ResponseOptions { framing: ResponseFraming::Length(len), connection: ConnectionHeader::Close, date: None, server: None };
        match encode_response_head(&mut out, b"200 OK", refs.iter().copied(), &opts) {
            Err(_) => prop_assert_eq!(&out, b"X"),
            Ok(()) => {
                let mut hb = [httparse::EMPTY_HEADER; 16];
                let mut resp = httparse::Response::new(&mut hb);
                let parsed = resp.parse(&out[1..]);
                prop_assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == out.len() - 1), "{:?}", parsed);
                let names: Vec<&[u8]> = resp.headers.iter().map(|h| h.name.as_bytes()).collect();
                let app: Vec<&[u8]> = refs.iter().map(|(k, _)| *k).collect();
                prop_assert_eq!(&names[..app.len()], &app[..]);
                prop_assert_eq!(names.len(), app.len() + 2);
            }
        }
    }
}

fn decode_pieces(
    input: &[u8],
    cuts: &[usize],
) -> Result<(Vec<u8>, Option<usize>), velocior_protocol::Error> {
    let mut d = ChunkedDecoder::new(&small_limits());
    let mut body = Vec::new();
    let mut total = 0;
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut piece = &input[prev..c];
        prev = c;
        loop {
            let (used, ev) = d.decode(piece)?;
            total += used;
            match ev {
                Chunk::Data(r) => {
                    body.extend_from_slice(&piece[r]);
                    piece = &piece[used..];
                }
                Chunk::NeedMore => break,
                Chunk::End => return Ok((body, Some(total))),
            }
        }
    }
    Ok((body, None))
}
