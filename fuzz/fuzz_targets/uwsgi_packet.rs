//! uwsgi packet parser. Invariants: no panic; every prefix answers Partial or exactly what the
//! whole answers; an accepted packet re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use velocior_protocol::uwsgi::{encode, parse};
use velocior_protocol::{Limits, Status};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let limits = if sel & 1 == 0 {
        Limits::default()
    } else {
        Limits { max_uwsgi_vars_bytes: 300, max_uwsgi_vars: 6, ..Limits::default() }
    };
    let mut vars = Vec::new();
    let whole = parse(input, &limits, &mut vars);
    if let Ok(Status::Complete(h)) = &whole {
        assert!(h.head_len <= input.len());
        assert_eq!(h.modifier1, 0);
        let pairs: Vec<(&[u8], &[u8])> =
            vars.iter().map(|v| (v.key.get(input), v.value.get(input))).collect();
        let mut again = Vec::new();
        encode(&pairs, h.modifier1, h.modifier2, &mut again).expect("re-encode");
        assert_eq!(&again[..], &input[..h.head_len], "re-encoding differs");
    }
    let mut scratch = Vec::new();
    let step = (usize::from(sel) % 7) + 1;
    for k in (0..input.len()).step_by(step) {
        match parse(&input[..k], &limits, &mut scratch) {
            Ok(Status::Partial) => {}
            other => assert_eq!(other, whole, "prefix {k}"),
        }
    }
});
