//! HTTP/1.1 request stream: head parser + Host rule + framing + body (Content-Length or chunked),
//! driven the way the server drives it. Invariant: the outcome (requests, end, error kind and
//! offset) is the same whole, byte by byte, and split at points derived from the input; nothing
//! panics.
#![no_main]

#[path = "../../protocol/tests/common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use velocior_protocol::Limits;

fn limits(sel: u8) -> Limits {
    if sel & 1 == 0 {
        Limits::default()
    } else {
        // small limits so the fuzzer reaches every limit check
        Limits {
            max_head_bytes: 200,
            max_headers: 5,
            max_target_bytes: 32,
            max_chunk_ext_bytes: 10,
            max_trailer_bytes: 30,
            ..Limits::default()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let limits = limits(sel);
    let whole = common::drive_whole(input, &limits);
    let len = input.len();
    if len > 0 {
        let mut cuts: Vec<usize> = (1..4usize)
            .map(|i| (usize::from(sel).wrapping_mul(7919).wrapping_add(i * 104_729)) % (len + 1))
            .collect();
        cuts.sort_unstable();
        assert_eq!(common::drive_split(input, &cuts, &limits), whole, "split {cuts:?}");
    }
    if len <= 2048 {
        assert_eq!(common::drive_bytewise(input, &limits), whole, "byte by byte");
    }
});
