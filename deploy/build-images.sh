#!/usr/bin/env bash
# Builds the three service images, localhost/shopeezy-{account,host,notifier}:TAG,
# from binaries already built for x86_64-unknown-linux-musl (static), with the
# targets of deploy/Containerfile. `cargo xtask image` builds the binaries and
# runs this; the container test (testkit/tests/containers.rs) runs it on the
# binaries its own build made.
#
#   deploy/build-images.sh BIN_DIR [TAG]        (TAG defaults to `latest`)
#
# ENGINE=docker builds with docker instead of podman. CA_BUNDLE names the CA
# certificates to include (default /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BIN_DIR [TAG]" >&2
  exit 2
fi
bin_dir=$1
tag=${2:-latest}
engine=${ENGINE:-podman}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
here=$(cd "$(dirname "$0")" && pwd)
services=(account host notifier)

context=$(mktemp -d "${TMPDIR:-/tmp}/shopeezy-images-XXXXXX")
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin" "$context/data"

for service in "${services[@]}"; do
  binary="$bin_dir/shopeezy-$service"
  if [ ! -x "$binary" ]; then
    echo "$binary is missing: build the binaries for x86_64-unknown-linux-musl first (cargo xtask image does)" >&2
    exit 1
  fi
  # A FROM scratch image has no dynamic loader: the binary must be static.
  if LC_ALL=C readelf -l "$binary" | grep -q 'program interpreter'; then
    echo "$binary is dynamically linked: build it with --target x86_64-unknown-linux-musl" >&2
    exit 1
  fi
  strip --strip-all -o "$context/bin/shopeezy-$service" "$binary"
  printf '%-22s %6s MiB, stripped %5s MiB\n' "shopeezy-$service" \
    "$(( $(stat -c %s "$binary") / 1048576 ))" "$(( $(stat -c %s "$context/bin/shopeezy-$service") / 1048576 ))"
done

if [ ! -f "$ca_bundle" ]; then
  echo "no CA certificates at $ca_bundle (Debian: apt-get install ca-certificates; or set CA_BUNDLE)" >&2
  exit 1
fi
cp "$ca_bundle" "$context/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nshopeezy:x:65532:65532:shopeezy:/data:/sbin/nologin\n' >"$context/passwd"
printf 'root:x:0:\nshopeezy:x:65532:\n' >"$context/group"

format=()
if [ "$(basename "$engine")" = podman ]; then
  # OCI images carry no HEALTHCHECK; the docker format keeps it.
  format=(--format docker)
fi
for service in "${services[@]}"; do
  "$engine" build "${format[@]}" --quiet --target "$service" \
    --tag "localhost/shopeezy-$service:$tag" -f "$here/Containerfile" "$context" >/dev/null
done
for service in "${services[@]}"; do
  "$engine" image inspect --format "localhost/shopeezy-$service:$tag {{.Size}}" \
    "localhost/shopeezy-$service:$tag" |
    awk '{ printf "%-40s %6.1f MB\n", $1, $2 / 1000000 }'
done
