#!/bin/sh
# speed: fast
# rseq refused by a seccomp filter (ENOSYS, then EPERM) installed before
# exec, so that glibc's own registration fails too. scenarios/src/
# seccomp_api.c (inline and -DRSEQ_NO_INLINE builds, glibc registration
# on and off) checks, in the main thread and in threads from the
# library's and glibc's pthread_create: registration fails with the errno,
# every critical-section family returns -1 and commits nothing, every
# percpu_* family and the cpu_op_* helpers complete with exact results,
# and threads get exact totals (MM_CID adds, a per-CPU spinlock, a memcpy
# stack). cpu_op_test also passes under both filters. A control run
# without the filter must fail (the checks can see rseq).
. "$CTESTS/scenarios/src/common.sh"

cc $CSTD_FLAGS -o "$WORK/seccomp_exec" "$SCEN_SRC/seccomp_exec.c" || skip_all "cannot build seccomp_exec"
"$WORK/seccomp_exec" ENOSYS /bin/true
case $? in
0) ;;
120 | 121) skip_all "seccomp filters unavailable here" ;;
*) skip_all "seccomp_exec cannot run /bin/true" ;;
esac
build "$WORK/seccomp_api" "$SCEN_SRC/seccomp_api.c"
ok $? "seccomp_api.c builds (inline)"
build "$WORK/seccomp_api-noinline" "$SCEN_SRC/seccomp_api.c" -DRSEQ_NO_INLINE
ok $? "seccomp_api.c builds (RSEQ_NO_INLINE)"

for b in seccomp_api seccomp_api-noinline; do
	for err in ENOSYS EPERM; do
		run_tap "$b, rseq -> $err, glibc registration on" \
			"$WORK/seccomp_exec" "$err" "$WORK/$b" "$err"
		run_tap "$b, rseq -> $err, GLIBC_TUNABLES=glibc.pthread.rseq=0" \
			env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$WORK/seccomp_exec" "$err" "$WORK/$b" "$err"
	done
done

for b in cpu_op_test cpu_op_test-noinline; do
	if [ -x "$BIN/$b" ]; then
		for err in ENOSYS EPERM; do
			run_tap "$b passes with rseq -> $err" "$WORK/seccomp_exec" "$err" "$BIN/$b"
		done
	else
		skip_one "$BIN/$b not built (make all)"
	fi
done

# Control: without the filter the same checks must fail.
timeout "$TEST_TIMEOUT" "$WORK/seccomp_api" ENOSYS >"$WORK/control.out" 2>&1
rc=$?
f=$(grep -c '^not ok ' "$WORK/control.out")
[ "$rc" -ne 0 ] && [ "$f" -gt 0 ]
ok $? "control: without the filter seccomp_api reports rseq as working ($f assertions fail, exit $rc)"
finish
