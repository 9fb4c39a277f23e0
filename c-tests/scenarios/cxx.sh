#!/bin/sh
# speed: fast
# A C++11 program (scenarios/src/cxx_threads.cpp): <rseq/rseq.h> inline
# critical sections and <rseq/percpu-op.h> from std::thread workers, with
# exceptions thrown and caught in the workers and a thread_local
# destructor doing a percpu_addv at thread exit; exact totals. Built with
# g++ and clang++ (-std=c++11 -Wall -Wextra -Werror), inline and
# -DRSEQ_NO_INLINE, run with glibc's registration on and off.
. "$CTESTS/scenarios/src/common.sh"

found=0
for cxx in g++ clang++; do
	if ! command -v $cxx >/dev/null; then
		skip_one "$cxx not installed"
		continue
	fi
	found=1
	for v in inline noinline; do
		d=
		[ $v = noinline ] && d=-DRSEQ_NO_INLINE
		exe=$WORK/cxx-$cxx-$v
		# shellcheck disable=SC2086
		$cxx -std=c++11 -O2 -g -Wall -Wextra -Werror -pthread $d -o "$exe" "$SCEN_SRC/cxx_threads.cpp" $RSEQ_FLAGS
		ok $? "cxx_threads.cpp builds with $cxx -std=c++11 ($v)"
		run_tap "$cxx ($v), glibc registration on" "$exe"
		run_tap "$cxx ($v), GLIBC_TUNABLES=glibc.pthread.rseq=0" env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$exe"
	done
done
[ $found = 1 ] || skip_all "no C++ compiler (g++, clang++)"
finish
