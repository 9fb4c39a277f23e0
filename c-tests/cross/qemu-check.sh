#!/bin/sh
# aarch64 smoke test under qemu-user (which has no rseq: every fallback
# path runs). Builds the aarch64 library (release), compiles
# c-tests/cross/qemu_smoke.c against it with aarch64-linux-gnu-gcc, with the
# inline sections and with -DRSEQ_NO_INLINE, and runs each build with
# glibc's rseq registration on and off (GLIBC_TUNABLES=glibc.pthread.rseq=0)
# under `qemu-aarch64 -L /usr/aarch64-linux-gnu`.
#
# Prints TAP (one test point per run, the program's own TAP indented
# above it) and exits non-zero when a run fails. Exits 0 with a SKIP
# message when the cross compiler, the sysroot, the Rust target or qemu is
# missing.
#
#   c-tests/cross/qemu-check.sh [aarch64|riscv64]   (default aarch64;
#                                honours CARGO_TARGET_DIR, else target/)
set -u

# A relative CARGO_TARGET_DIR is relative to the caller's directory, as
# for cargo itself.
target_dir=${CARGO_TARGET_DIR:-}
case $target_dir in
"" | /*) ;;
*) target_dir=$PWD/$target_dir ;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
target_dir=${target_dir:-$root/target}

arch=${1:-aarch64}
case $arch in
aarch64)
	triple=aarch64-unknown-linux-gnu
	cc=${AARCH64_CC:-aarch64-linux-gnu-gcc}
	qemu=${QEMU_AARCH64:-qemu-aarch64}
	sysroot=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
	;;
riscv64)
	triple=riscv64gc-unknown-linux-gnu
	cc=${RISCV64_CC:-riscv64-linux-gnu-gcc}
	qemu=${QEMU_RISCV64:-qemu-riscv64}
	sysroot=${RISCV64_SYSROOT:-/usr/riscv64-linux-gnu}
	;;
*)
	echo "Bail out! unknown architecture $arch"
	exit 1
	;;
esac
cargo=${CARGO:-cargo}

skip() {
	echo "1..0 # SKIP $1"
	exit 0
}

command -v "$cc" >/dev/null 2>&1 || skip "no $cc (apt-get install gcc-aarch64-linux-gnu)"
command -v "$qemu" >/dev/null 2>&1 || skip "no $qemu (apt-get install qemu-user)"
[ -d "$sysroot/lib" ] || skip "no aarch64 sysroot at $sysroot (apt-get install libc6-dev-arm64-cross)"
command -v "$cargo" >/dev/null 2>&1 || skip "no cargo"
rust_sysroot=$(rustc --print sysroot 2>/dev/null) || skip "no rustc"
[ -d "$rust_sysroot/lib/rustlib/$triple" ] || skip "no Rust $triple target (rustup target add $triple)"

release=$target_dir/$triple/release
out=$target_dir/$triple/qemu-check

rm -rf "$out"
mkdir -p "$out/lib" || exit 1
echo "# building the $triple library (release) into $release"
upper=$(printf '%s' "$triple" | tr 'a-z-' 'A-Z_')
lower=$(printf '%s' "$triple" | tr '-' '_')
env "CARGO_TARGET_${upper}_LINKER=$cc" "CC_${lower}=$cc" CARGO_TARGET_DIR="$target_dir" \
	"$cargo" rustc --release --lib --target "$triple" --features interpose --crate-type cdylib >"$out/build.log" 2>&1 || {
	sed 's/^/# /' "$out/build.log"
	echo "Bail out! cargo build --target $triple failed"
	exit 1
}

# The library's SONAME is librseq.so.0: give the loader that name.
cp "$release/librseq.so" "$out/lib/librseq.so.0" || exit 1

cflags="-std=gnu11 -O2 -g -Wall -Wextra -Werror -I include -I c-tests -I c-tests/cross"
libs="-L $release -lrseq -lpthread"
for variant in inline noinline; do
	extra=
	[ $variant = noinline ] && extra=-DRSEQ_NO_INLINE
	# shellcheck disable=SC2086 # word splitting of the flags is wanted
	$cc $cflags $extra -o "$out/qemu_smoke-$variant" c-tests/cross/qemu_smoke.c $libs >"$out/cc.log" 2>&1 || {
		sed 's/^/# /' "$out/cc.log"
		echo "Bail out! $cc failed on c-tests/cross/qemu_smoke.c ($variant)"
		exit 1
	}
done

n=0 failed=0
echo "1..4"
for variant in inline noinline; do
	for glibc in on off; do
		n=$((n + 1))
		tunables=
		[ $glibc = off ] && tunables="-E GLIBC_TUNABLES=glibc.pthread.rseq=0"
		# shellcheck disable=SC2086
		output=$(timeout 120 "$qemu" -L "$sysroot" -E LD_LIBRARY_PATH="$out/lib" $tunables \
			"$out/qemu_smoke-$variant" 2>&1)
		status=$?
		printf '%s\n' "$output" | sed 's/^/    /'
		if [ $status -eq 0 ] && ! printf '%s\n' "$output" | grep -q '^not ok'; then
			echo "ok $n - qemu_smoke $variant, glibc rseq $glibc"
		else
			echo "not ok $n - qemu_smoke $variant, glibc rseq $glibc (exit $status)"
			failed=$((failed + 1))
		fi
	done
done
[ $failed -eq 0 ] || echo "# $failed of $n runs failed"
exit $((failed != 0))
