#!/bin/sh
# speed: fast
# The C tests under valgrind memcheck. Valgrind does not implement rseq
# (the system call fails with ENOSYS, for glibc and for the library), so
# this is also the no-rseq environment: everything runs through the
# cpu-op paths.
#   must pass: seccomp_api ENOSYS (inline and noinline: the API with rseq
#     refused), cpu_op_test (inline and noinline), mempool_test (inline,
#     noinline and C++; its robust-mode fork checks skip themselves) and
#     mempool_stress_test (percpu_* path only), plain_mt with the
#     library preloaded (same output and exit status as natively);
#   memcheck only (they need working rseq and stop early, or fail their
#     rseq assertions): ops_test, cpu_test, fork_exec_test, param_test;
#   not run: registration_test, dlopen_test, cpu_op_concurrency_test
#     (they retry rseq operations until they commit: without rseq they
#     run into their time limits), cpu_op_progress_test (ptrace single-
#     stepping of valgrind's JIT; its re-exec of /proc/self/exe would run
#     the valgrind tool binary).
# For every program: no memcheck error (definite leaks included) with a
# librseq frame, and no other error. The library's installed suppression
# file (share/librseq/valgrind/librseq.supp) is used, as users would: it
# covers the cpu-op access probes, which ask the kernel about addresses
# the tests deliberately make invalid (EFAULT/EAGAIN conformance);
# RSEQ_VALGRIND_SUPP=FILE replaces it.
. "$CTESTS/scenarios/src/common.sh"

command -v valgrind >/dev/null || skip_all "valgrind not installed"
VG="valgrind -q --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite --xml=yes"
RSEQ_VALGRIND_SUPP=${RSEQ_VALGRIND_SUPP-$STAGE/share/librseq/valgrind/librseq.supp}
if [ -n "${RSEQ_VALGRIND_SUPP:-}" ]; then
	VG="$VG --suppressions=$RSEQ_VALGRIND_SUPP"
	diag "with suppressions from $RSEQ_VALGRIND_SUPP"
fi
build "$WORK/seccomp_api" "$SCEN_SRC/seccomp_api.c" || skip_all "cannot build seccomp_api"
build "$WORK/seccomp_api-noinline" "$SCEN_SRC/seccomp_api.c" -DRSEQ_NO_INLINE || skip_all "cannot build seccomp_api"
cc $CSTD_FLAGS -o "$WORK/plain_mt" "$SCEN_SRC/plain_mt.c" -lpthread || skip_all "cannot build plain_mt"
i=0

# memcheck NAME MUST_PASS CMD...: runs CMD under memcheck; MUST_PASS=tap
# requires a passing TAP run, =exit3 exit status 3, =any only no crash.
memcheck() {
	_name=$1
	_must=$2
	shift 2
	i=$((i + 1))
	_x=$WORK/vg$i.xml
	_s=$(date +%s)
	# shellcheck disable=SC2086
	timeout "$TEST_TIMEOUT" $VG --xml-file="$_x" --log-file="$WORK/vg$i.log" "$@" >"$WORK/vg$i.out" 2>&1
	_rc=$?
	_t=$(($(date +%s) - _s))
	_p=$(grep -c '^ok ' "$WORK/vg$i.out")
	_f=$(grep -c '^not ok ' "$WORK/vg$i.out")
	case $_must in
	tap) [ $_rc -eq 0 ] && [ "$_f" -eq 0 ] && [ "$_p" -gt 0 ] ;;
	exit3) [ $_rc -eq 3 ] ;;
	any) [ $_rc -ne 124 ] && [ $_rc -lt 128 ] ;;
	esac
	ok $? "$_name under memcheck: $([ $_must = tap ] && echo "passes, ")exit $_rc, $_p ok / $_f not ok, ${_t}s"
	[ $_rc -ne 124 ] || diag "timed out after ${TEST_TIMEOUT}s"
	awk -f "$SCEN_SRC/vg-errors.awk" "$_x" >"$WORK/vg$i.errors"
	_lib=$(grep -c '^LIB' "$WORK/vg$i.errors")
	_other=$(grep -c '^OTHER' "$WORK/vg$i.errors")
	[ "$_lib" -eq 0 ]
	ok $? "$_name: no memcheck error attributable to librseq ($_lib)"
	[ "$_other" -eq 0 ]
	ok $? "$_name: no other memcheck error ($_other)"
	sort "$WORK/vg$i.errors" | uniq -c | sort -rn | head -n 8 | sed 's/^/#   /'
}

memcheck "seccomp_api (rseq -> ENOSYS under valgrind)" tap "$WORK/seccomp_api" ENOSYS
memcheck "seccomp_api-noinline" tap "$WORK/seccomp_api-noinline" ENOSYS
for t in cpu_op_test cpu_op_test-noinline mempool_test mempool_test-noinline mempool_cxx_test; do
	memcheck "$t" tap "$BIN/$t"
done
memcheck "mempool_stress_test 5000" tap "$BIN/mempool_stress_test" 5000
"$WORK/plain_mt" >"$WORK/plain.native" 2>&1
memcheck "plain_mt + LD_PRELOAD, glibc registration off" exit3 \
	env LD_PRELOAD="$STAGE/lib/librseq.so.0" GLIBC_TUNABLES=glibc.pthread.rseq=0 "$WORK/plain_mt"
cmp -s "$WORK/plain.native" "$WORK/vg$i.out"
ok $? "plain_mt + LD_PRELOAD under memcheck: same output as natively"
for t in ops_test cpu_test fork_exec_test; do
	memcheck "$t (needs rseq: memcheck only)" any "$BIN/$t"
done
memcheck "param_test -r 1 (needs rseq: memcheck only)" any "$BIN/param_test" -r 1
finish
