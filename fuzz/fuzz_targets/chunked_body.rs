//! Chunked body decoder. Invariants: no panic; the decoded bytes, the end position and any
//! error (kind and offset) are the same whole, byte by byte and split at points derived from the
//! input; `Data` ranges are non-empty and inside what was consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use velocior_protocol::http1::{Chunk, ChunkedDecoder};
use velocior_protocol::{Error, Limits};

type Outcome = Result<(Vec<u8>, Option<usize>), Error>;

fn decode(input: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
    let mut d = ChunkedDecoder::new(limits);
    let mut body = Vec::new();
    let mut total = 0;
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut piece = &input[prev..c];
        prev = c;
        loop {
            let (used, ev) = d.decode(piece)?;
            assert!(used <= piece.len());
            total += used;
            match ev {
                Chunk::Data(r) => {
                    assert!(!r.is_empty() && r.end <= used);
                    body.extend_from_slice(&piece[r]);
                    piece = &piece[used..];
                }
                Chunk::NeedMore => {
                    assert_eq!(used, piece.len());
                    break;
                }
                Chunk::End => return Ok((body, Some(total))),
            }
        }
    }
    Ok((body, None))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let limits = if sel & 1 == 0 {
        Limits::default()
    } else {
        Limits { max_chunk_ext_bytes: 10, max_trailer_bytes: 30, ..Limits::default() }
    };
    let whole = decode(input, &[], &limits);
    let len = input.len();
    let mut cuts: Vec<usize> = (1..4usize)
        .map(|i| (usize::from(sel).wrapping_mul(7919).wrapping_add(i * 104_729)) % (len + 1))
        .collect();
    cuts.sort_unstable();
    assert_eq!(decode(input, &cuts, &limits), whole, "split {cuts:?}");
    let every: Vec<usize> = (1..len).collect();
    assert_eq!(decode(input, &every, &limits), whole, "byte by byte");
});
