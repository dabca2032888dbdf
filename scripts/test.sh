#!/usr/bin/env bash
# Runs berth's whole test suite: installs what the tests need (redis-server
# and redis-cli, cargo-nextest) if missing, then runs every test with
# nextest, then the doc tests (nextest does not run those), then two short
# seeded chaos runs (berth-chaos, standalone Redis and Redis Cluster).
#
# Usage: scripts/test.sh [extra cargo-nextest run arguments...]
# (BERTH_SKIP_CHAOS=1 skips the chaos runs, e.g. when running a few tests.)
# Example: scripts/test.sh -E 'package(berth-localredis)'   (only that crate's tests)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*" >&2; }

# Runs a command as root: directly if we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $* (and sudo is not installed); install redis-server and redis-tools by hand"
        return 1
    fi
}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    log "redis-server or redis-cli missing: installing the Debian packages redis-server and redis-tools"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools
fi
for prog in redis-server redis-cli; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        log "$prog is still not on PATH (PATH=$PATH); install redis-server and redis-tools and retry"
        exit 1
    fi
done
redis_version=$(redis-server --version)
log "using $(command -v redis-server): $redis_version"

if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest missing: installing it with cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked
fi

log "running: cargo nextest run --workspace --no-fail-fast $*"
cargo nextest run --workspace --no-fail-fast "$@"

log "running: cargo test --workspace --doc"
cargo test --workspace --doc

# A short seeded chaos run on standalone Redis and on a Redis Cluster: real server and
# worker processes under load while replicas, workers and Redis primaries are killed,
# workers frozen past their heartbeat timeout and Redis clients paused; it fails on any
# invariant violation, lost or duplicated container, or leaked capacity. The two binaries
# are built in one cargo invocation (one feature resolution) and run directly: `cargo run
# -p berth-chaos` would build the dependencies again for berth-chaos alone.
if [ "${BERTH_SKIP_CHAOS:-0}" = "1" ]; then
    log "BERTH_SKIP_CHAOS=1: skipping the chaos runs"
else
    log "building berth and berth-chaos (release) for the chaos runs"
    cargo build --release -p berth -p berth-chaos
    target_dir="${CARGO_TARGET_DIR:-target}"
    chaos=("$target_dir/release/berth-chaos" --berth "$target_dir/release/berth" --seconds 60 --seed 7)
    log "running: berth-chaos --seconds 60 --seed 7 (standalone Redis)"
    "${chaos[@]}"
    log "running: berth-chaos --seconds 60 --seed 7 --cluster"
    "${chaos[@]}" --cluster
fi

log "all tests passed"
