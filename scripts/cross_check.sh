#!/usr/bin/env bash
# The linux/arm64 image's binary without Docker: builds the production aarch64-unknown-linux-musl
# binary (--no-default-features, what the Dockerfile's build stage builds for TARGETARCH=arm64)
# with Debian's cross gcc (gcc-aarch64-linux-gnu compiles ring's C and assembly and links, with
# libc6-dev-arm64-cross's headers; the Rust musl target brings its own libc and start files),
# and checks with `file` that it is a static aarch64 executable. With qemu-aarch64(-static)
# installed, it also runs `--version`.
# Needs: rustup, apt-get (as root or through passwordless sudo) for what is missing.
# The build is bounded: CROSS_CHECK_TIMEOUT seconds (default 1200; measured at 325 s on 2 shared
# cores with another build beside it).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-musl
GNU=aarch64-linux-gnu
BIN="target/$TARGET/release/stsvend"
TIMEOUT=${CROSS_CHECK_TIMEOUT:-1200}

say() { printf '%s\n' "$*"; }
fail() { printf 'cross check FAILED: %s\n' "$*" >&2; exit 1; }

need_apt=()
command -v "$GNU-gcc" >/dev/null 2>&1 || need_apt+=("gcc-$GNU")
# ring's C includes <stdint.h>, whose glibc half the cross gcc only recommends (and
# --no-install-recommends below leaves out): the arm64 libc headers.
[ -e "/usr/$GNU/include/bits/libc-header-start.h" ] || need_apt+=("libc6-dev-arm64-cross")
command -v file >/dev/null 2>&1 || need_apt+=(file)
if [ "${#need_apt[@]}" -gt 0 ]; then
  say "== installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then apt_get=(apt-get); else apt_get=(sudo -n apt-get); fi
  timeout 600 "${apt_get[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 "${apt_get[@]}" install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  say "== rustup target add $TARGET"
  timeout 600 rustup target add "$TARGET"
fi

say "== cargo build --release --locked --no-default-features --target $TARGET (at most $TIMEOUT s)"
started=$SECONDS
CC_aarch64_unknown_linux_musl="$GNU-gcc" \
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER="$GNU-gcc" \
  timeout "$TIMEOUT" cargo build --release --locked --no-default-features --target "$TARGET" --bin stsvend \
  || fail "the build failed or took over $TIMEOUT s"
say "built in $((SECONDS - started)) s"
[ -x "$BIN" ] || fail "$BIN was not built"

file_out=$(file -b "$BIN")
say "file: $file_out"
case "$file_out" in
  *"ARM aarch64"*) ;;
  *) fail "file does not call $BIN an aarch64 executable" ;;
esac
case "$file_out" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) fail "file does not call $BIN statically linked" ;;
esac
if command -v readelf >/dev/null 2>&1 && readelf -d "$BIN" 2>/dev/null | grep -q NEEDED; then
  fail "$BIN has NEEDED shared libraries: $(readelf -d "$BIN" | grep NEEDED)"
fi
say "size: $(stat -c %s "$BIN") bytes"

qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if [ -n "$qemu" ]; then
  version=$("$qemu" "$BIN" --version) || fail "$BIN --version failed under $qemu"
  say "ok: $version (under $qemu)"
  rc=0; "$qemu" "$BIN" dev >/dev/null 2>&1 || rc=$?
  [ "$rc" = 2 ] || fail "stsvend dev exited $rc in the production binary, not 2"
  say "ok: stsvend dev exits 2 (not built in)"
else
  say "note: no qemu-aarch64; the binary was not run"
fi
say "== cross check passed: static $TARGET binary"
