#!/usr/bin/env bash
# Runs berth's whole test suite: installs what the tests need (redis-server
# and redis-cli, cargo-nextest) if missing, then runs every test with
# nextest, then the doc tests (nextest does not run those).
#
# Usage: scripts/test.sh [extra cargo-nextest run arguments...]
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

log "all tests passed"
