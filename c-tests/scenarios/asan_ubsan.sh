#!/bin/sh
# speed: fast
# Every C test (c-tests/*_test.c, inline and -DRSEQ_NO_INLINE) built with
# -fsanitize=address,undefined -fno-omit-frame-pointer by gcc and by
# clang, linked with the real library (dlopen_test loads it), run with
# glibc's registration on and off (param_test at 25% scale,
# mempool_stress_test at 10000 iterations per thread). Options:
# ASAN_OPTIONS=detect_leaks=1 (LeakSanitizer on, no suppressions),
# UBSAN_OPTIONS=print_stacktrace=1. Nothing is excluded: ASan runs the
# ptrace single-stepping and seccomp parts of cpu_op_progress_test too.
# Per run: the test passes. Per test and build: no sanitizer report
# attributable to the library (a frame in librseq or a library header),
# and none in the test's own code.
. "$CTESTS/scenarios/src/common.sh"

SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
ASAN_OPTIONS=detect_leaks=1
UBSAN_OPTIONS=print_stacktrace=1
export ASAN_OPTIONS UBSAN_OPTIONS
CFLAGS_CT=$(pkg-config --cflags librseq libcpu-op)
LIBS_CT=$(pkg-config --libs librseq)
echo 'int main(void) { return 0; }' >"$WORK/t.c"
found=0
for compiler in cc clang; do
	if ! command -v $compiler >/dev/null || ! $compiler $SAN -o "$WORK/t" "$WORK/t.c" 2>/dev/null || ! "$WORK/t"; then
		skip_one "$compiler cannot build and run -fsanitize=address,undefined programs here"
		continue
	fi
	found=1
	for src in "$CTESTS"/*_test.c; do
		t=$(basename "$src" .c)
		libs=$LIBS_CT
		[ "$t" = dlopen_test ] && libs=
		args=
		[ "$t" = param_test ] && args="-r 25"
		[ "$t" = mempool_stress_test ] && args=10000
		for v in inline noinline; do
			d=
			[ $v = noinline ] && d=-DRSEQ_NO_INLINE
			exe=$WORK/$t-$compiler-$v
			# shellcheck disable=SC2086
			$compiler -std=gnu11 -O1 -g -Wall -Wextra -Werror $SAN $d $CFLAGS_CT -o "$exe" "$src" $libs -lpthread -ldl
			if ! ok $? "$t ($compiler, $v) builds with ASan+UBSan"; then
				continue
			fi
			: >"$WORK/reports"
			for mode in on off; do
				if [ $mode = on ]; then set -- env; else set -- env GLIBC_TUNABLES=glibc.pthread.rseq=0; fi
				runner=run_tap
				[ "$t" = registration_test ] && runner=run_retry
				# shellcheck disable=SC2086
				$runner "$t ($compiler, $v, ASan+UBSan), glibc registration $mode" "$@" "$exe" $args
				awk -f "$SCEN_SRC/san-reports.awk" "$WORK/last.out" >>"$WORK/reports"
				grep -A3 'Suppressions used' "$WORK/last.out" | sed 's/^/# (suppressed) /'
			done
			lib=$(grep -c '^LIB' "$WORK/reports")
			tst=$(grep -c '^TEST' "$WORK/reports")
			oth=$(grep -c '^OTHER' "$WORK/reports")
			[ "$lib" -eq 0 ] && [ "$oth" -eq 0 ]
			ok $? "$t ($compiler, $v): no sanitizer report attributable to the library ($lib, $oth unattributed)"
			[ "$tst" -eq 0 ]
			ok $? "$t ($compiler, $v): no sanitizer report in the test's own code ($tst)"
			sort "$WORK/reports" | uniq -c | sed 's/^/#   /'
		done
	done
done
[ $found = 1 ] || skip_all "no compiler with working ASan+UBSan"
finish
