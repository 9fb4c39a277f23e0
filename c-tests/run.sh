#!/bin/sh
# Runs the C tests against the staged library and summarises their TAP.
#
# Every test binary (inline and -noinline builds) runs twice: with glibc
# owning rseq registration, and with it disabled
# (GLIBC_TUNABLES=glibc.pthread.rseq=0) so that the library registers
# threads itself. A test fails if it exits non-zero, prints "not ok", or
# does not finish within its time limit.
#
#   run.sh BINDIR LIBDIR
set -u
bindir=$1
libdir=$2
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
limit=${RSEQ_TEST_TIMEOUT:-600}

files=0 passed=0 failed=0 broken=""

run() {
	label=$1
	shift
	files=$((files + 1))
	out=$(timeout "$limit" "$@" 2>&1)
	status=$?
	p=$(printf '%s\n' "$out" | grep -c '^ok ')
	f=$(printf '%s\n' "$out" | grep -c '^not ok ')
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$status" -ne 0 ] || [ "$f" -ne 0 ]; then
		broken="$broken $label"
		printf '%s\n' "$out" | sed "s|^|[$label] |"
		echo "FAIL $label (exit $status, $f failed assertions)"
	else
		echo "PASS $label ($p assertions)"
	fi
}

for bin in "$bindir"/*_test "$bindir"/*_test-noinline; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	run "$name" "$bin"
	run "$name[glibc-rseq-off]" env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$bin"
done

echo "C tests: $files runs, $passed assertions passed, $failed failed"
if [ -n "$broken" ]; then
	echo "FAILED:$broken"
	exit 1
fi
