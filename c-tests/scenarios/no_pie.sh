#!/bin/sh
# speed: fast
# Non-PIE executables (-no-pie -fno-pie): the inline sections' references
# to the data symbols rseq_offset, rseq_size and rseq_cpu_op_owners are
# copy relocations (R_*_COPY) in the executable, so the library must read
# and write the executable's copies. ops_test, cpu_op_test,
# registration_test and param_test (25% scale) are built that way, inline
# and -DRSEQ_NO_INLINE, and run with glibc's registration on and off;
# scenarios/src/exit_values.c checks the copies deterministically while
# running and after the library's destructor (PTRACE_EVENT_EXIT).
# registration_test's "after the destructor" check races an observer
# thread against exit() and can miss under load: a registration_test run
# is retried (3 runs at most) when that is its only failure.
. "$CTESTS/scenarios/src/common.sh"

echo 'int main(void) { return 0; }' >"$WORK/t.c"
cc -no-pie -fno-pie -o "$WORK/t" "$WORK/t.c" 2>/dev/null || skip_all "the compiler cannot build -no-pie executables"
CFLAGS_CT="-I$CTESTS $(pkg-config --cflags librseq libcpu-op)"
LIBS_CT=$(pkg-config --libs librseq)

for t in ops_test cpu_op_test registration_test param_test exit_values; do
	src=$CTESTS/$t.c
	[ $t = exit_values ] && src=$SCEN_SRC/exit_values.c
	for v in inline noinline; do
		exe=$WORK/$t-$v
		d=
		[ $v = noinline ] && d=-DRSEQ_NO_INLINE
		# shellcheck disable=SC2086
		cc $CSTD_FLAGS -no-pie -fno-pie $d $CFLAGS_CT -o "$exe" "$src" $LIBS_CT -lpthread -ldl
		ok $? "$t ($v) builds with -no-pie -fno-pie"
		if [ $v = inline ]; then
			readelf -h "$exe" | grep -q 'Type:.*EXEC'
			ok $? "$t ($v) is an ET_EXEC executable"
			relocs=$(readelf -rW "$exe" | awk '/_COPY/ { print $5 }' | grep '^rseq' | sort | tr '\n' ' ')
			case $relocs in
			*rseq_cpu_op_owners*rseq_offset*rseq_size*) st=0 ;;
			*) st=1 ;;
			esac
			ok $st "$t ($v): copy relocations for the data symbols: ${relocs:-none}"
		fi
		args=
		[ $t = param_test ] && args="-r 25"
		runner=run_tap
		[ $t = registration_test ] && runner=run_retry
		# shellcheck disable=SC2086
		$runner "$t ($v, no-pie), glibc registration on" "$exe" $args
		# shellcheck disable=SC2086
		$runner "$t ($v, no-pie), GLIBC_TUNABLES=glibc.pthread.rseq=0" env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$exe" $args
	done
done
finish
