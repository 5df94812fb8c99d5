#!/usr/bin/env bash
# Builds probed's container image (deploy/Containerfile) with podman, offline: a `scratch`
# image holding the release binaries and exactly the shared libraries they need (see the
# Containerfile for why not one static binary).
#
#   deploy/build-image.sh [TAG]          # default TAG: localhost/probed:latest
#
# Binaries: `cargo build --release --locked` and target/release/{probed,probectl}, unless
# PROBED_BIN and PROBECTL_BIN name others (tests/container.rs passes the ones cargo built
# for the tests). PODMAN_BUILD_ARGS adds words to `podman build` (e.g. `--runtime runc`).
# Prints the image id last.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-localhost/probed:latest}
if [ -z "${PROBED_BIN:-}" ] || [ -z "${PROBECTL_BIN:-}" ]; then
  cargo build --release --locked --bin probed --bin probectl >&2
  PROBED_BIN=${PROBED_BIN:-target/release/probed}
  PROBECTL_BIN=${PROBECTL_BIN:-target/release/probectl}
fi
for bin in "$PROBED_BIN" "$PROBECTL_BIN"; do
  [ -x "$bin" ] || { echo "build-image.sh: $bin is not an executable" >&2; exit 1; }
done
command -v podman >/dev/null || { echo "build-image.sh: podman is not installed" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/probed/probes" "$root/tmp" "$ctx/data"
chmod 1777 "$root/tmp"
install -m 755 "$PROBED_BIN" "$root/usr/local/bin/probed"
install -m 755 "$PROBECTL_BIN" "$root/usr/local/bin/probectl"

# Exactly the libraries the dynamic linker loads for the two binaries, at the paths ldd
# names (the loader at the path written in the binaries, /lib64/ld-linux-x86-64.so.2),
# symlinks resolved to the files themselves.
libs=$(ldd "$PROBED_BIN" "$PROBECTL_BIN" | awk '
  /:$/ { next }   # the name of each binary, before its libraries
  /=> not found/ { print "MISSING " $1; next }
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }' | sort -u)
if grep -q '^MISSING' <<<"$libs"; then
  echo "build-image.sh: libraries not found: $(grep '^MISSING' <<<"$libs" | cut -d' ' -f2 | xargs)" >&2
  exit 1
fi
# glibc's NSS modules for host names and users (files: /etc/hosts, /etc/passwd; dns:
# /etc/resolv.conf), from the directory libc itself came from. Since glibc 2.34 both are
# built into libc.so.6 and these are stubs; older glibc loads them with dlopen.
libc=$(grep -m1 '/libc\.so\.6$' <<<"$libs" || true)
if [ -z "$libc" ]; then
  echo "build-image.sh: the binaries do not link glibc's libc.so.6 (see deploy/Containerfile)" >&2
  exit 1
fi
for nss in libnss_files.so.2 libnss_dns.so.2; do
  if [ -e "$(dirname "$libc")/$nss" ]; then libs+=$'\n'"$(dirname "$libc")/$nss"; fi
done
while read -r lib; do
  cp -L --parents "$lib" "$root"
done <<<"$libs"

cat >"$root/etc/nsswitch.conf" <<'NSS'
passwd: files
group:  files
hosts:  files dns
NSS
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
probed:x:65532:65532:probed:/data:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
probed:x:65532:
GROUP

# The default config: the demo, for a container.
install -m 644 deploy/container/probed.yaml "$root/etc/probed/probed.yaml"
install -m 644 probes/demo.yaml "$root/etc/probed/probes/demo.yaml"

# shellcheck disable=SC2086 # PODMAN_BUILD_ARGS is words on purpose
podman build --format docker ${PODMAN_BUILD_ARGS:-} -f deploy/Containerfile -t "$tag" \
  --label "org.opencontainers.image.version=$("$PROBED_BIN" --version | awk '{print $2}')" \
  "$ctx" >&2
podman image inspect --format '{{.Id}}' "$tag"
