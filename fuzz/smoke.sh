#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target for a bounded time (FUZZ_SECONDS, default 30 s each),
# seeded from the shared conformance corpora. Called by `scripts/dev fuzz`.
#
# The stable toolchain runs cargo-fuzz with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags for its
# sanitizer build). Exits non-zero if any target finds a crash (the input is kept under
# fuzz/artifacts/<target>/), and prints one summary line per target.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-30}"
targets=(http_head uwsgi_packet chunked_body)
if [ $# -gt 0 ]; then targets=("$@"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
python3 seed_corpus.py
cargo fuzz build -O

status=0
summary=()
mkdir -p logs
for t in "${targets[@]}"; do
    log="logs/$t.log"
    set +e
    cargo fuzz run -O "$t" -- -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=1024 >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    if [ "$rc" -eq 0 ]; then
        summary+=("$t: ${execs:-?} executions in ${seconds}s, coverage ${cov:-?} edges, no crash")
    else
        status=1
        summary+=("$t: FAILED (exit $rc) after ${execs:-?} executions; see fuzz/$log and fuzz/artifacts/$t/")
        tail -40 "$log" >&2
    fi
done
printf '%s\n' "${summary[@]}"
exit "$status"
