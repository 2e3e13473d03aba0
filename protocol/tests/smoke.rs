use velocior_protocol::http1::{self, BodyKind, Chunk, ChunkedDecoder};
use velocior_protocol::response::{self, ConnectionHeader, ResponseFraming, ResponseOptions};
use velocior_protocol::{uwsgi, Limits, Status};

#[test]
fn http_get_roundtrip() {
    let buf = b"GET /a/b?x=1#f HTTP/1.1\r\nHost: example.com\r\nX-A:  v \r\n\r\nrest";
    let mut hs = Vec::new();
    let Status::Complete(h) = http1::parse_request_head(buf, &Limits::default(), &mut hs).unwrap()
    else {
        panic!("partial")
    };
    assert_eq!(h.method.get(buf), b"GET");
    assert_eq!(h.path.get(buf), b"/a/b");
    assert_eq!(h.query.get(buf), b"x=1");
    assert_eq!(h.head_len, buf.len() - 4);
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[1].value.get(buf), b"v");
    http1::check_host(&h, buf, &hs).unwrap();
    let f = http1::request_framing(&h, buf, &hs).unwrap();
    assert_eq!(f.body, BodyKind::None);
    assert!(f.keep_alive);
}

#[test]
fn chunked_and_uwsgi_and_response() {
    let mut d = ChunkedDecoder::new(&Limits::default());
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    let (n, ev) = d.decode(body).unwrap();
    assert_eq!(ev, Chunk::Data(3..8));
    let (m, ev) = d.decode(&body[n..]).unwrap();
    assert_eq!(ev, Chunk::End);
    assert_eq!(n + m, body.len());

    let mut pkt = Vec::new();
    uwsgi::encode(
        &[(b"CONTENT_LENGTH", b"12"), (b"PATH_INFO", b"/")],
        0,
        0,
        &mut pkt,
    )
    .unwrap();
    let mut vars = Vec::new();
    let Status::Complete(h) = uwsgi::parse(&pkt, &Limits::default(), &mut vars).unwrap() else {
        panic!()
    };
    assert_eq!(h.content_length, 12);
    assert_eq!(vars.len(), 2);

    let mut out = Vec::new();
    let opts = ResponseOptions {
        framing: ResponseFraming::Length(5),
        connection: ConnectionHeader::None,
        date: Some(b"d"),
        server: None,
    };
    response::encode_response_head(&mut out, b"200 OK", [(&b"X"[..], &b"y"[..])], &opts).unwrap();
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nX: y\r\nDate: d\r\nContent-Length: 5\r\n\r\n"
    );
}
