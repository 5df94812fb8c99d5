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

# Feeds: feedparser (PyPI), the real feed parser tests/feeds.rs reads /feed.atom and
# /feed.rss with (tests/peers/parse_feed.py).
if ! python3 -c 'import feedparser' 2>/dev/null; then
  log "installing feedparser"
  python3 -m pip install --quiet feedparser \
    || python3 -m pip install --quiet --break-system-packages feedparser
fi

# JSON Schema: python-jsonschema (PyPI), the real validator tests/schema.rs judges
# `probectl schema` with (tests/peers/validate_schema.py; PyYAML reads the files).
if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
  log "installing jsonschema"
  python3 -m pip install --quiet jsonschema pyyaml \
    || python3 -m pip install --quiet --break-system-packages jsonschema pyyaml
fi

# Statuspage clients: PyPI statuspage-prometheus-exporter, one of the two real clients
# tests/statuspage_clients.rs reads probed's /api/v2/*.json with (the other is npm's
# statuspage.io, below).
if ! python3 -c 'import statuspage_prometheus_exporter.gauges' 2>/dev/null; then
  log "installing statuspage-prometheus-exporter"
  python3 -m pip install --quiet statuspage-prometheus-exporter \
    || python3 -m pip install --quiet --break-system-packages statuspage-prometheus-exporter
fi

# Socket.IO: a real Socket.IO v4 server (npm socket.io, with Debian's nodejs). The websocket
# probe's tests run tests/peers/websocket_socketio_server.js themselves; the package goes
# into tests/peers/node_modules (git-ignored), nowhere else.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "installing nodejs"
  apt_install nodejs npm
fi
# playwright-core (npm) drives Debian's chromium for tests/status_page_browser.rs, which
# injects axe-core (npm) into the page for its accessibility audit. statuspage.io (npm) is the
# Statuspage API client tests/statuspage_clients.rs points at probed; pinned to 3.3.8, as
# 3.4.6 (the latest) was published without its dist/. yaml-language-server (npm, the engine of
# VS Code's YAML extension and of Neovim's and Helix's YAML support) is the editor
# tests/schema.rs shows `probectl schema` to, for its diagnostics and completions. One npm
# command for all:
# `npm install --no-save` of one package removes the other unsaved ones.
if [ ! -f tests/peers/node_modules/socket.io/package.json ] \
  || [ ! -f tests/peers/node_modules/playwright-core/package.json ] \
  || [ ! -f tests/peers/node_modules/axe-core/package.json ] \
  || [ ! -f tests/peers/node_modules/yaml-language-server/package.json ] \
  || ! grep -q '"version": "3.3.8"' tests/peers/node_modules/statuspage.io/package.json 2>/dev/null; then
  log "installing socket.io, playwright-core, axe-core, statuspage.io and yaml-language-server (into tests/peers/node_modules)"
  npm install --no-save --no-audit --no-fund --prefix tests/peers socket.io@4 playwright-core@1 axe-core@4 \
    statuspage.io@3.3.8 yaml-language-server@1 vscode-languageserver-textdocument@1
fi
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium"
  apt_install chromium
fi

# Alertmanager: Debian's prometheus-alertmanager. The alertmanager notifier's tests start
# their own instances on 127.0.0.1 with gossip off; tests/alertmanager_ha.rs starts a pair
# gossiping with each other.
if ! command -v prometheus-alertmanager >/dev/null; then
  log "installing prometheus-alertmanager"
  apt_install prometheus-alertmanager
fi

# Prometheus and promtool: Debian's prometheus. tests/prometheus.rs runs promtool on
# deploy/prometheus/ and on /metrics, and starts its own Prometheus per test on a free
# loopback port. The package enables its service (every interface, port 9090) for the next
# boot; policy-rc.d kept it from starting now, and it is disabled here so it never does.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  log "installing prometheus"
  apt_install prometheus
  as_root deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
  as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
fi

# libfaketime: Debian's faketime. tests/clock.rs steps the daemon's wall clock with it
# (LD_PRELOAD), as NTP stepping a wrong clock would.
if [ ! -f /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
  log "installing faketime"
  apt_install faketime
fi

# Containers: Debian's podman, with runc. tests/container.rs builds deploy/Containerfile with
# deploy/build-image.sh and runs the image (with `--runtime runc`: podman's default crun
# cannot run in some sandboxes; the test passes its flags itself, no config is changed here).
# Publishing the API's port (-p) needs netavark and iptables, which podman only recommends.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null \
  || [ ! -x /usr/lib/podman/netavark ] || ! command -v iptables >/dev/null; then
  log "installing podman, runc, netavark and iptables"
  apt_install podman runc netavark iptables
fi

# Kubernetes manifests: kubernetes-validate (PyPI, its schemas bundled: offline).
# tests/kubernetes.rs runs it with --strict on every file of deploy/kubernetes/.
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  log "installing kubernetes-validate"
  python3 -m pip install --quiet kubernetes-validate \
    || python3 -m pip install --quiet --break-system-packages kubernetes-validate
fi

# Network namespaces: tests/netns.rs runs three daemons in namespaces of its own (iproute2,
# as root; CI runs as root). Namespaces a killed run left behind go first.
if ! command -v ip >/dev/null; then
  log "installing iproute2"
  apt_install iproute2
fi
if [ "$(id -u)" -eq 0 ]; then
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^p14[cl][0-9a-f]{4}' || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
fi

# PostgreSQL, MariaDB, Redis: the machine's own servers on loopback, used by the db_write
# probe's tests (PostgreSQL 127.0.0.1:5432, trust auth, database `test`; MariaDB
# 127.0.0.1:3306, root without a password, database `test`) and beside the redis probe's
# tests, which start a redis-server of their own per test and never touch the one on 6379.
# Usually all running already; installed from Debian only when missing, started with the
# commands of the machine's notes only when down, set up only where they differ.
wait_for() { # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds, at most SECONDS
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$what did not answer within ${secs}s" >&2
  return 1
}
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
pg_sql() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -w -qtA "$@"; }
maria_up() { mariadb-admin -h 127.0.0.1 -P 3306 -uroot --connect-timeout=2 ping >/dev/null 2>&1; }
maria_sql() { mariadb -h 127.0.0.1 -P 3306 -uroot --connect-timeout=2 "$@"; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || ! command -v pg_isready >/dev/null; then
  log "installing postgresql"
  apt_install postgresql
fi
if ! pg_up; then
  log "starting postgresql"
  # shellcheck disable=SC2046
  as_root pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start || true
  wait_for 30 postgresql pg_up
fi
if ! pg_sql -c 'SELECT 1' >/dev/null 2>&1; then
  log "postgresql: trust auth on loopback"
  hba=$(as_root runuser -u postgres -- psql -qtA -c 'SHOW hba_file')
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  as_root runuser -u postgres -- psql -qtA -c 'SELECT pg_reload_conf()' >/dev/null
  wait_for 10 "postgresql (trust auth)" pg_sql -c 'SELECT 1'
fi
if [ "$(pg_sql -c "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
  pg_sql -c 'CREATE DATABASE test'
fi

if [ ! -x /usr/sbin/mariadbd ] || ! command -v mariadb-admin >/dev/null; then
  log "installing mariadb-server"
  apt_install mariadb-server
fi
if ! maria_up; then
  log "starting mariadb"
  [ -d /run/mysqld ] || as_root install -d -o mysql -g mysql /run/mysqld
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for 30 mariadb maria_up
fi
if ! maria_sql -e 'SELECT 1' >/dev/null 2>&1; then
  log "mariadb: root over tcp without a password"
  # Over the Unix socket, as the system's root (a fresh install's root@localhost).
  as_root mariadb -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
FLUSH PRIVILEGES;
SQL
fi
maria_sql -e 'CREATE DATABASE IF NOT EXISTS test'

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  log "installing redis-server"
  apt_install redis-server
fi
if ! redis_up; then
  log "starting redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for 30 redis redis_up
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
