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
# Most peers (HTTP, TLS and DNS servers, hostile targets, webhook and pager receivers) are
# started by the tests themselves on 127.0.0.1:0. What they need installed is below: a real
# SMTP server (aiosmtpd) and a real Alertmanager, each started per test on a free port.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: `apt-get update` at most once per run, and only when something is missing.
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  # Installed packages must not start their services: the tests run their own instances.
  printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
  as_root chmod 755 /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@"
}

# SMTP: aiosmtpd (PyPI). The email notifier's tests run tests/peers/smtpd.py themselves.
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  log "installing aiosmtpd"
  # A Debian system python refuses pip installs (PEP 668) unless told otherwise.
  python3 -m pip install --quiet aiosmtpd \
    || python3 -m pip install --quiet --break-system-packages aiosmtpd
fi

# Socket.IO: a real Socket.IO v4 server (npm socket.io, with Debian's nodejs). The websocket
# probe's tests run tests/peers/websocket_socketio_server.js themselves; the package goes
# into tests/peers/node_modules (git-ignored), nowhere else.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "installing nodejs"
  apt_install nodejs npm
fi
if [ ! -f tests/peers/node_modules/socket.io/package.json ]; then
  log "installing socket.io (into tests/peers/node_modules)"
  npm install --no-save --no-audit --no-fund --prefix tests/peers socket.io@4
fi

# Alertmanager: Debian's prometheus-alertmanager. The alertmanager notifier's tests start
# their own instances on 127.0.0.1 with gossip off.
if ! command -v prometheus-alertmanager >/dev/null; then
  log "installing prometheus-alertmanager"
  apt_install prometheus-alertmanager
fi

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
