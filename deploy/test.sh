#!/usr/bin/env bash
# The test command (README): installs and starts what the tests need, idempotently and on
# loopback only, then runs every check CI runs: rustfmt, clippy with warnings denied, and
# every test (unit, integration, end to end against the real binaries).
#
# Safe to run again and again; on a fresh machine of this project's kind it needs only the
# package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# --- peers the tests talk to ------------------------------------------------------------
# The spine's tests need no outside service: their peers (HTTP, TLS and DNS servers,
# hostile targets) are started by the tests themselves on 127.0.0.1:0. Later test suites
# (database, Redis, SMTP, Alertmanager, Chromium) add their install and start steps here.

# --- the checks -------------------------------------------------------------------------
log "rustfmt"
cargo fmt --all -- --check

log "clippy"
cargo clippy --all-targets --locked -- -D warnings

log "tests"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
cargo test --all-targets --locked 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$out"
exit "$rc"
