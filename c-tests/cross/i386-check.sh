#!/bin/sh
# i386 (32-bit x86) on this x86_64 machine's kernel, which gives 32-bit
# programs real rseq: builds the i686 library (release) and stages an
# install of it, builds every C test against it with i686-linux-gnu-gcc
# (inline and -DRSEQ_NO_INLINE), runs them with glibc's registration on
# and off (c-tests/run.sh), checks the library's ELF properties and
# exported symbols (c-tests/elf-check.sh) and the machine code of the
# sections in the library and in an inline test program
# (i386-elf-check.py).
#
# The programs run under the cross libc's own loader (linked with
# --dynamic-linker=$SYSROOT/lib/ld-linux.so.2, libraries from
# LD_LIBRARY_PATH), so no i386 runtime needs to be installed. Exits 0
# with a SKIP line when the cross compiler, the i386 sysroot or the Rust
# target is missing.
#
#   c-tests/cross/i386-check.sh     (honours CARGO_TARGET_DIR)
set -u
target_dir=${CARGO_TARGET_DIR:-}
case $target_dir in "" | /*) ;; *) target_dir=$PWD/$target_dir ;; esac
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
target_dir=${target_dir:-$root/target}
triple=i686-unknown-linux-gnu
cc=${I686_CC:-i686-linux-gnu-gcc}
cxx=${I686_CXX:-i686-linux-gnu-g++}
sysroot=${I686_SYSROOT:-/usr/i686-linux-gnu}

skip() { echo "i386 check: SKIPPED ($1)"; exit 0; }
command -v "$cc" >/dev/null 2>&1 || skip "no $cc: apt-get install gcc-i686-linux-gnu"
command -v "$cxx" >/dev/null 2>&1 || skip "no $cxx: apt-get install g++-i686-linux-gnu"
[ -x "$sysroot/lib/ld-linux.so.2" ] || skip "no i386 sysroot at $sysroot: apt-get install libc6-dev-i386-cross"
[ -d "$(rustc --print sysroot)/lib/rustlib/$triple" ] || skip "no Rust $triple target: rustup target add $triple"

stage=$target_dir/$triple/stage
rm -rf "$stage" && mkdir -p "$target_dir/$triple" || exit 1
echo "# building and staging the $triple library into $stage"
CARGO_TARGET_I686_UNKNOWN_LINUX_GNU_LINKER=$cc CC_i686_unknown_linux_gnu=$cc \
CARGO_TARGET_DIR=$target_dir \
	make --no-print-directory -s install TARGET=$triple PREFIX="$stage" >"$target_dir/$triple/install.log" 2>&1 || {
	sed 's/^/# /' "$target_dir/$triple/install.log"; echo "FAIL i386: build or install"; exit 1; }

bin=bin-i386
make --no-print-directory -s -C c-tests all STAGE="$stage" BIN=$bin CC="$cc" CXX="$cxx" \
	TEST_LDFLAGS="-Wl,--dynamic-linker=$sysroot/lib/ld-linux.so.2" || {
	echo "FAIL i386: building the C tests"; exit 1; }

status=0
LD_LIBRARY_PATH=$sysroot/lib c-tests/run.sh "c-tests/$bin" "$stage/lib" || status=1
echo "# elf-check.sh (SONAME, sections, USDT probes, exported symbols)"
out=$(c-tests/elf-check.sh "$stage/lib/librseq.so.0" c-tests/exported-symbols.txt) || status=1
printf '%s\n' "$out" | grep -v '^ok'
for f in "$stage/lib/librseq.so.0" "c-tests/$bin/ops_test"; do
	echo "# i386-elf-check.py $f"
	out=$(python3 c-tests/cross/i386-elf-check.py "$f") || status=1
	printf '%s\n' "$out" | grep -v '^ok'
done
exit $status
