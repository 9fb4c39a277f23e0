#!/bin/sh
# The fallback build of an architecture without critical sections
# (32-bit arm, armhf): cross-builds the library, compiles unsupported_smoke.c
# against it with the inline header path (which falls back to calls on
# such an architecture), and runs it under qemu-arm. Prints TAP;
# exits 0 with a SKIP line when the cross tools are missing.
#
#   c-tests/cross/unsupported-check.sh   (honours CARGO_TARGET_DIR)
set -u
target_dir=${CARGO_TARGET_DIR:-}
case $target_dir in "" | /*) ;; *) target_dir=$PWD/$target_dir ;; esac
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
target_dir=${target_dir:-$root/target}
triple=armv7-unknown-linux-gnueabihf
cc=${ARMHF_CC:-arm-linux-gnueabihf-gcc}
qemu=${QEMU_ARM:-qemu-arm}
sysroot=${ARMHF_SYSROOT:-/usr/arm-linux-gnueabihf}

skip() { echo "1..0 # SKIP $1"; exit 0; }
command -v "$cc" >/dev/null 2>&1 || skip "no $cc (apt-get install gcc-arm-linux-gnueabihf)"
command -v "$qemu" >/dev/null 2>&1 || skip "no $qemu (apt-get install qemu-user)"
[ -d "$sysroot/lib" ] || skip "no armhf sysroot at $sysroot (apt-get install libc6-dev-armhf-cross)"
[ -d "$(rustc --print sysroot)/lib/rustlib/$triple" ] || skip "no Rust $triple target (rustup target add $triple)"

out=$target_dir/$triple/unsupported-check
rm -rf "$out" && mkdir -p "$out/lib" || exit 1
CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=$cc CC_armv7_unknown_linux_gnueabihf=$cc CARGO_TARGET_DIR=$target_dir \
	cargo rustc --lib --target "$triple" --features interpose --crate-type cdylib >"$out/build.log" 2>&1 || {
	sed 's/^/# /' "$out/build.log"; echo "Bail out! cargo build --target $triple failed"; exit 1; }
cp "$target_dir/$triple/debug/librseq.so" "$out/lib/librseq.so.0" || exit 1
$cc -std=gnu11 -O2 -Wall -Wextra -Werror -I include -I c-tests -o "$out/unsupported_smoke" \
	c-tests/cross/unsupported_smoke.c -L "$target_dir/$triple/debug" -lrseq -lpthread >"$out/cc.log" 2>&1 || {
	sed 's/^/# /' "$out/cc.log"; echo "Bail out! $cc failed on unsupported_smoke.c"; exit 1; }
output=$(timeout 120 "$qemu" -L "$sysroot" -E LD_LIBRARY_PATH="$out/lib" "$out/unsupported_smoke" 2>&1)
status=$?
printf '%s\n' "$output"
[ $status -eq 0 ] && ! printf '%s\n' "$output" | grep -q '^not ok'
