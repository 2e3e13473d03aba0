//! Parser micro-benchmarks: Velocior's strict parser against httparse on the same inputs.
//!
//! `cargo bench -p velocior-protocol` (or `--bench parse -- <filter>`). Each input is parsed
//! from a warm, reused header Vec (the way the server calls it). "velocior/head" is
//! `parse_request_head` alone, the same work httparse does; "velocior/full" adds `check_host` and
//! `request_framing`, everything the server needs before calling the app.

mod common;

use std::hint::black_box;

use common::{ours_full, ours_head, ours_uwsgi, theirs, uwsgi_packet, BROWSER, WRK};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use velocior_protocol::http1::Header;
use velocior_protocol::Limits;

fn http(c: &mut Criterion) {
    let limits = Limits::default();
    let mut hs: Vec<Header> = Vec::with_capacity(32);
    let pipelined = common::pipelined();
    for (name, input) in [("wrk", WRK), ("browser-12-headers", BROWSER)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        g.bench_function("velocior/head", |b| {
            b.iter(|| ours_head(black_box(input), &limits, &mut hs))
        });
        g.bench_function("velocior/full", |b| {
            b.iter(|| ours_full(black_box(input), &limits, &mut hs))
        });
        g.bench_function("httparse", |b| b.iter(|| theirs(black_box(input))));
        g.finish();
    }
    let mut g = c.benchmark_group("pipelined-16");
    g.throughput(Throughput::Elements(16));
    g.bench_function("velocior/head", |b| {
        b.iter(|| {
            let buf = black_box(&pipelined[..]);
            let mut at = 0;
            while at < buf.len() {
                at += ours_head(&buf[at..], &limits, &mut hs);
            }
            at
        })
    });
    g.bench_function("velocior/full", |b| {
        b.iter(|| {
            let buf = black_box(&pipelined[..]);
            let mut at = 0;
            while at < buf.len() {
                at += ours_full(&buf[at..], &limits, &mut hs);
            }
            at
        })
    });
    g.bench_function("httparse", |b| {
        b.iter(|| {
            let buf = black_box(&pipelined[..]);
            let mut at = 0;
            while at < buf.len() {
                at += theirs(&buf[at..]);
            }
            at
        })
    });
    g.finish();
}

fn uwsgi_bench(c: &mut Criterion) {
    let limits = Limits::default();
    let packet = uwsgi_packet();
    let mut vars = Vec::with_capacity(64);
    let mut g = c.benchmark_group("uwsgi-nginx-16-vars");
    g.throughput(Throughput::Elements(1));
    g.bench_function("velocior", |b| {
        b.iter(|| ours_uwsgi(black_box(&packet), &limits, &mut vars))
    });
    g.finish();
}

criterion_group!(benches, http, uwsgi_bench);
criterion_main!(benches);
