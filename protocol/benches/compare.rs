//! Side-by-side timing that stays meaningful on a busy machine: the parsers run in interleaved
//! rounds on the same inputs, and the report gives, per parser, the fastest round (the least
//! disturbed one) and the median round, in ns per request.
//!
//! `cargo bench -p velocior-protocol --bench compare` (add `-- --rounds N` to change the count,
//! `-- --only NAME` to run one input).

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{ours_full, ours_head, ours_uwsgi, pipelined, theirs, uwsgi_packet, BROWSER, WRK};
use velocior_protocol::http1::Header;
use velocior_protocol::Limits;

type Run<'a> = Box<dyn FnMut() -> usize + 'a>;

/// Runs every candidate `iters` times per round, rounds interleaved; returns (min, median) ns
/// per request for each.
fn measure(cands: &mut [(&str, Run<'_>)], per_iter: usize, rounds: usize) -> Vec<(f64, f64)> {
    // calibrate so a round of the first candidate takes about 2 ms
    let t = Instant::now();
    let mut n = 0usize;
    while t.elapsed().as_micros() < 2000 {
        black_box((cands[0].1)());
        n += 1;
    }
    let iters = n.max(10);
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); cands.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in cands.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            samples[i].push(t.elapsed().as_nanos() as f64 / (iters * per_iter) as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(|a, b| a.partial_cmp(b).unwrap());
            (s[0], s[s.len() / 2])
        })
        .collect()
}

fn main() {
    let mut rounds = 60;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rounds") {
        rounds = args[i + 1].parse().expect("--rounds N");
    }
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1].clone());
    let limits = Limits::default();
    let pipe = pipelined();
    let packet = uwsgi_packet();

    println!(
        "{:<22} {:<16} {:>10} {:>12}",
        "input", "parser", "min ns/req", "median ns/req"
    );
    for (name, input, per) in [
        ("wrk", WRK, 1),
        ("browser-12-headers", BROWSER, 1),
        ("pipelined-16", &pipe[..], 16),
    ] {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let mut h1: Vec<Header> = Vec::with_capacity(32);
        let mut h2: Vec<Header> = Vec::with_capacity(32);
        let each = |f: &dyn Fn(&[u8]) -> usize| {
            let buf = black_box(input);
            let mut at = 0;
            while at < buf.len() {
                at += f(&buf[at..]);
            }
            at
        };
        let mut cands: Vec<(&str, Run<'_>)> = vec![
            ("httparse", Box::new(|| each(&|b| theirs(b)))),
            (
                "velocior/head",
                Box::new(|| each(&|b| ours_head(b, &limits, &mut Vec::new()))),
            ),
            (
                "velocior/full",
                Box::new(|| each(&|b| ours_full(b, &limits, &mut Vec::new()))),
            ),
        ];
        // the two velocior candidates reuse their header Vec, as the server does
        cands[1].1 = Box::new(|| {
            let buf = black_box(input);
            let mut at = 0;
            while at < buf.len() {
                at += ours_head(&buf[at..], &limits, &mut h1);
            }
            at
        });
        cands[2].1 = Box::new(|| {
            let buf = black_box(input);
            let mut at = 0;
            while at < buf.len() {
                at += ours_full(&buf[at..], &limits, &mut h2);
            }
            at
        });
        let res = measure(&mut cands, per, rounds);
        for ((p, _), (min, med)) in cands.iter().zip(res) {
            println!("{name:<22} {p:<16} {min:>10.1} {med:>12.1}");
        }
    }
    if only.as_deref().is_some_and(|o| !"uwsgi".contains(o)) {
        return;
    }
    let mut vars = Vec::with_capacity(64);
    let mut cands: Vec<(&str, Run<'_>)> = vec![(
        "velocior",
        Box::new(|| ours_uwsgi(black_box(&packet), &limits, &mut vars)),
    )];
    let res = measure(&mut cands, 1, rounds);
    println!(
        "{:<22} {:<16} {:>10.1} {:>12.1}",
        "uwsgi-nginx-16-vars", "velocior", res[0].0, res[0].1
    );
}
