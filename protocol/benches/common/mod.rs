//! Inputs and parser calls shared by the two benchmarks.
#![allow(dead_code)]

use std::hint::black_box;

use velocior_protocol::http1::{check_host, parse_request_head, request_framing, Header};
use velocior_protocol::{uwsgi, Limits, Status};

pub const WRK: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n";

pub const BROWSER: &[u8] = b"GET /articles/2024/velocior-release?ref=home&utm_source=feed HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Sec-Fetch-Site: same-origin\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-GB,en;q=0.9,fr;q=0.8\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n\r\n";

pub fn uwsgi_packet() -> Vec<u8> {
    let vars: &[(&[u8], &[u8])] = &[
        (b"QUERY_STRING", b"page=2&sort=desc"),
        (b"REQUEST_METHOD", b"GET"),
        (b"CONTENT_TYPE", b""),
        (b"CONTENT_LENGTH", b""),
        (b"REQUEST_URI", b"/articles/?page=2&sort=desc"),
        (b"PATH_INFO", b"/articles/"),
        (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REMOTE_ADDR", b"192.168.1.20"),
        (b"REMOTE_PORT", b"51234"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_NAME", b"example.com"),
        (b"HTTP_HOST", b"example.com"),
        (
            b"HTTP_USER_AGENT",
            b"Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0",
        ),
        (b"HTTP_ACCEPT", b"text/html,application/xhtml+xml,*/*;q=0.8"),
    ];
    let mut out = Vec::new();
    uwsgi::encode(vars, 0, 0, &mut out).unwrap();
    out
}

pub fn ours_head(buf: &[u8], limits: &Limits, hs: &mut Vec<Header>) -> usize {
    match parse_request_head(buf, limits, hs) {
        Ok(Status::Complete(h)) => h.head_len,
        _ => panic!("bench input must parse"),
    }
}

pub fn ours_full(buf: &[u8], limits: &Limits, hs: &mut Vec<Header>) -> usize {
    match parse_request_head(buf, limits, hs) {
        Ok(Status::Complete(h)) => {
            check_host(&h, buf, hs).unwrap();
            let f = request_framing(&h, buf, hs).unwrap();
            black_box(f);
            h.head_len
        }
        _ => panic!("bench input must parse"),
    }
}

pub fn theirs(buf: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            black_box(&req);
            n
        }
        _ => panic!("bench input must parse"),
    }
}

pub fn pipelined() -> Vec<u8> {
    WRK.repeat(16)
}

pub fn ours_uwsgi(buf: &[u8], limits: &Limits, vars: &mut Vec<uwsgi::UwsgiVar>) -> usize {
    match uwsgi::parse(buf, limits, vars) {
        Ok(Status::Complete(h)) => h.head_len,
        _ => panic!("bench input must parse"),
    }
}
