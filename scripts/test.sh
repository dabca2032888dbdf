#!/usr/bin/env bash
# Runs berth's whole test suite: installs what the tests need (redis-server
# and redis-cli, runc and a static busybox for containers, promtool, chromium and
# chromedriver for the console's browser tests, docker-registry and skopeo for image
# pulls, OpenSSL's headers for building, cargo-nextest) if
# missing, then runs every test with nextest, then a bounded API fuzz
# (scripts/fuzz-api.sh: schemathesis, pip-installed at a pinned version, against
# `berth server` on the embedded store and on Redis), then the doc tests (nextest
# does not run those), then two short seeded chaos runs (berth-chaos: standalone
# Redis with runc workers, and Redis Cluster with process workers).
#
# Usage: scripts/test.sh [extra cargo-nextest run arguments...]
# (BERTH_SKIP_CHAOS=1 skips the chaos runs and BERTH_SKIP_FUZZ=1 the API fuzz,
# e.g. when running a few tests.)
# Example: scripts/test.sh -E 'package(berth-localredis)'   (only that crate's tests)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*" >&2; }

# True if /bin/busybox is statically linked (the default root filesystem needs that).
busybox_static() {
    [ -x /bin/busybox ] && ! LC_ALL=C readelf -l /bin/busybox 2>/dev/null | grep -q 'Requesting program interpreter' \
        && /bin/busybox --list >/dev/null 2>&1
}

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

# Containers: runc runs them; busybox-static is berth's default root filesystem.
if ! command -v runc >/dev/null 2>&1 || ! [ -x /bin/busybox ] || ! busybox_static; then
    log "runc or a static busybox missing: installing the Debian packages runc and busybox-static"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y runc busybox-static
fi
if ! command -v runc >/dev/null 2>&1 || ! busybox_static; then
    log "runc or a static /bin/busybox is still missing; install runc and busybox-static and retry"
    exit 1
fi
log "using $(command -v runc): $(runc --version | head -n1)"
if [ "$(id -u)" -ne 0 ]; then
    log "the runc tests need root (runc creates cgroups and namespaces); run this as root"
    exit 1
fi

# Metrics: the exposition is checked with promtool (Debian's prometheus package).
if ! command -v promtool >/dev/null 2>&1; then
    log "promtool missing: installing the Debian package prometheus"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
fi
if ! command -v promtool >/dev/null 2>&1; then
    log "promtool is still not on PATH; install the Debian package prometheus and retry"
    exit 1
fi

# The console's browser tests (crates/berth/tests/console.rs): headless Chromium driven
# through chromedriver (Debian's chromium and chromium-driver).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    log "chromium or chromedriver missing: installing the Debian packages chromium and chromium-driver"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi
for prog in chromium chromedriver; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        log "$prog is still not on PATH; install the Debian packages chromium and chromium-driver and retry"
        exit 1
    fi
done
log "using $(command -v chromium): $(chromium --version 2>/dev/null | head -n1)"

# Building: registry pulls use TLS through the system's OpenSSL (native-tls).
if ! pkg-config --exists openssl 2>/dev/null; then
    log "OpenSSL's headers missing: installing the Debian packages libssl-dev and pkg-config"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl-dev pkg-config
fi
if ! pkg-config --exists openssl 2>/dev/null; then
    log "OpenSSL's headers are still missing; install libssl-dev and pkg-config and retry"
    exit 1
fi

# Images: pulls are tested against Debian's distribution registry on loopback, with
# images pushed by skopeo.
if ! command -v docker-registry >/dev/null 2>&1 || ! command -v skopeo >/dev/null 2>&1; then
    log "docker-registry or skopeo missing: installing the Debian packages docker-registry and skopeo"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry skopeo
fi
if ! command -v docker-registry >/dev/null 2>&1 || ! command -v skopeo >/dev/null 2>&1; then
    log "docker-registry or skopeo is still not on PATH; install both Debian packages and retry"
    exit 1
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest missing: installing it with cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked
fi

log "running: cargo nextest run --workspace --no-fail-fast $*"
cargo nextest run --workspace --no-fail-fast "$@"

# The API fuzz: fails on any 5xx, schema mismatch or server crash (about 1.5 minutes).
if [ "${BERTH_SKIP_FUZZ:-0}" = "1" ]; then
    log "BERTH_SKIP_FUZZ=1: skipping the API fuzz"
else
    log "running: scripts/fuzz-api.sh"
    scripts/fuzz-api.sh
fi

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
    log "running: berth-chaos --seconds 60 --seed 7 --runtime runc (standalone Redis, runc workers)"
    "${chaos[@]}" --runtime runc
    log "running: berth-chaos --seconds 60 --seed 7 --cluster"
    "${chaos[@]}" --cluster
fi

log "all tests passed"
