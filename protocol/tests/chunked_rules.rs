//! Table-driven tests for the chunked decoder: accepted bodies (decoded the same whatever the
//! split points) and every rejection with its kind.

use velocior_protocol::http1::{Chunk, ChunkedDecoder};
use velocior_protocol::{ErrorKind, Limits};

/// Decodes `input` fed in pieces cut at `cuts`; returns (body, bytes consumed) or the error.
fn decode_split(
    input: &[u8],
    cuts: &[usize],
    limits: &Limits,
) -> Result<(Vec<u8>, Option<usize>), (ErrorKind, usize)> {
    let mut d = ChunkedDecoder::new(limits);
    let mut body = Vec::new();
    let mut total = 0;
    let mut bounds: Vec<usize> = cuts.to_vec();
    bounds.push(input.len());
    let mut prev = 0;
    for &c in &bounds {
        let mut piece = &input[prev..c];
        prev = c;
        loop {
            let (used, ev) = d.decode(piece).map_err(|e| (e.kind, e.offset))?;
            total += used;
            match ev {
                Chunk::Data(r) => {
                    assert!(r.end <= used && !r.is_empty());
                    body.extend_from_slice(&piece[r]);
                    piece = &piece[used..];
                }
                Chunk::NeedMore => {
                    assert_eq!(used, piece.len());
                    break;
                }
                Chunk::End => {
                    assert!(d.is_done());
                    return Ok((body, Some(total)));
                }
            }
        }
    }
    Ok((body, None))
}

fn decode(input: &[u8]) -> Result<(Vec<u8>, Option<usize>), (ErrorKind, usize)> {
    decode_split(input, &[], &Limits::default())
}

#[test]
fn accepted_bodies_decode_the_same_under_every_split() {
    let table: &[(&[u8], &[u8])] = &[
        (b"0\r\n\r\n", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", b"0123456789abcdefghij"),
        (b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
        (b"5;a\r\nhello\r\n0;b=c\r\n\r\n", b"hello"),
        (b"5;a=b;c=\"d;e\\\"f\"\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5;ilovew3=\"I \\\"love\\\"; \\\\extensions\\\\\";somuchlove=\"x\"\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n0\r\nVary: *\r\nX-Sum: 1\r\n\r\n", b"hello"),
        (b"3\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r"),
    ];
    for &(input, want) in table {
        let whole =
            decode(input).unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(input)));
        assert_eq!(
            whole,
            (want.to_vec(), Some(input.len())),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        for k in 1..input.len() {
            assert_eq!(
                decode_split(input, &[k], &Limits::default()),
                Ok(whole.clone()),
                "split {k}"
            );
        }
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            decode_split(input, &every, &Limits::default()),
            Ok(whole.clone())
        );
    }
}

#[test]
fn end_leaves_the_next_request_alone() {
    let input = b"2\r\nab\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    assert_eq!(decode(input), Ok((b"ab".to_vec(), Some(input.len() - 16))));
}

#[test]
fn incomplete_bodies_need_more() {
    for input in [
        &b""[..],
        b"5",
        b"5\r",
        b"5\r\nhel",
        b"5\r\nhello",
        b"5\r\nhello\r\n0\r\n",
        b"0\r\nX: y\r\n",
    ] {
        assert_eq!(
            decode(input).map(|x| x.1),
            Ok(None),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn rejected_bodies() {
    use ErrorKind::*;
    let table: &[(&[u8], ErrorKind)] = &[
        (b"\r\nhello\r\n0\r\n\r\n", BadChunkSize),
        (b" 5\r\nhello\r\n0\r\n\r\n", BadChunkSize),
        (b"5 \r\nhello\r\n0\r\n\r\n", BadChunkSize),
        (b"5\t\r\nhello\r\n0\r\n\r\n", BadChunkSize),
        (b"0 \r\n\r\n", BadChunkSize),
        (b"-5\r\nhello\r\n0\r\n\r\n", BadChunkSize),
        (b"+5\r\nhello\r\n0\r\n\r\n", BadChunkSize),
        (b"0x5\r\nhello\r\n0\r\n\r\n", BadChunkSize),
        (b"6_0\r\n", BadChunkSize),
        (b"g\r\n", BadChunkSize),
        (b"5\nhello\r\n", BareLf),
        (b"5\r\rhello\r\n", BareCr),
        (b"10000000000000000\r\n", ChunkSizeOverflow),
        (b"5;\r\nhello\r\n", BadChunkExtension),
        (b"5; a\r\nhello\r\n", BadChunkExtension),
        (b"5 ;a\r\nhello\r\n", BadChunkSize),
        (b"5;a =b\r\nhello\r\n", BadChunkExtension),
        (b"5;a= b\r\nhello\r\n", BadChunkExtension),
        (b"5;a=\r\nhello\r\n", BadChunkExtension),
        (b"5;a=b c\r\nhello\r\n", BadChunkExtension),
        (b"5;a=\"b\r\nhello\r\n", BadChunkExtension),
        (b"5;a=\"b\"c\r\nhello\r\n", BadChunkExtension),
        (b"5;a=\"\x01\"\r\nhello\r\n", BadChunkExtension),
        (b"5;ext=val\rue\r\nhello\r\n", BareCr),
        (b"5;a@\r\nhello\r\n", BadChunkExtension),
        (b"5\r\nhelloX\r\n", MissingChunkCrlf),
        (b"5\r\nhello\rX", MissingChunkCrlf),
        (b"5\r\nhello\n0\r\n\r\n", MissingChunkCrlf),
        (b"3\r\nfoo\r\n\r\n", BadChunkSize),
        (b"0\r\n\n", BareLf),
        (b"0\r\n\rX", BareCr),
        (b"0\r\n X: y\r\n\r\n", ObsFold),
        (b"0\r\nX : y\r\n\r\n", WhitespaceBeforeColon),
        (b"0\r\nX: a\x01b\r\n\r\n", BadHeaderValue),
        (b"0\r\nX: y\n\r\n", BareLf),
        (b"0\r\nX: y\rZ\n", BareCr),
        (b"0\r\n: y\r\n\r\n", BadHeaderName),
    ];
    for &(input, kind) in table {
        let whole = decode(input);
        assert!(
            matches!(whole, Err((k, _)) if k == kind),
            "{:?}: want {kind:?}, got {whole:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(kind.status(), 400);
        for k in 1..input.len() {
            assert_eq!(
                decode_split(input, &[k], &Limits::default()),
                whole,
                "split {k}"
            );
        }
    }
}

#[test]
fn error_offsets_count_from_the_start_of_the_body() {
    // the bad byte is at offset 11 whatever the split
    let input = b"5\r\nhello\r\n5 \r\n";
    for k in 0..input.len() {
        let cuts: Vec<usize> = if k == 0 { vec![] } else { vec![k] };
        assert_eq!(
            decode_split(input, &cuts, &Limits::default()),
            Err((ErrorKind::BadChunkSize, 11))
        );
    }
}

#[test]
fn extension_and_trailer_limits() {
    let limits = Limits {
        max_chunk_ext_bytes: 8,
        max_trailer_bytes: 16,
        ..Limits::default()
    };
    // ";abcdefg" is 8 bytes: fine; one more fails
    assert!(decode_split(b"1;abcdefg\r\nx\r\n0\r\n\r\n", &[], &limits).is_ok());
    assert_eq!(
        decode_split(b"1;abcdefgh\r\nx\r\n0\r\n\r\n", &[], &limits),
        Err((ErrorKind::ChunkExtensionTooLong, 9))
    );
    // the limit is per chunk
    assert!(decode_split(
        b"1;abcdefg\r\nx\r\n1;abcdefg\r\ny\r\n0\r\n\r\n",
        &[],
        &limits
    )
    .is_ok());
    // trailers: 16 bytes including the final CRLF
    assert!(decode_split(b"0\r\nX: 123456789\r\n\r\n", &[], &limits).is_ok());
    assert_eq!(
        decode_split(b"0\r\nX: 1234567890\r\n\r\n", &[], &limits),
        Err((ErrorKind::TrailerTooLarge, 19))
    );
    assert_eq!(ErrorKind::TrailerTooLarge.status(), 431);
    // an endless trailer line stops at the limit
    let mut endless = b"0\r\nX: ".to_vec();
    endless.resize(5_000, b'a');
    assert!(matches!(decode(&endless), Ok((_, None))));
    assert!(matches!(
        decode_split(&endless, &[], &limits),
        Err((ErrorKind::TrailerTooLarge, _))
    ));
}

#[test]
fn huge_chunk_sizes_stream() {
    let mut d = ChunkedDecoder::new(&Limits::default());
    let (used, ev) = d.decode(b"FFFFFFFFFFFFFFFF\r\nabc").unwrap();
    assert_eq!((used, ev), (21, Chunk::Data(18..21)));
    let (used, ev) = d.decode(b"def").unwrap();
    assert_eq!((used, ev), (3, Chunk::Data(0..3)));
}
