# Helpers sourced by the scenario scripts (POSIX sh). Not a scenario
# itself: it lives in src/, out of run-scenarios.sh's reach.
#
#   ok STATUS DESCRIPTION     one TAP line: "ok" when STATUS is 0
#   run_tap DESC CMD...       runs a TAP-printing command: ok when it
#                             exits 0, prints no "not ok" and at least one
#                             "ok"; its diagnostics go out as "# " lines
#   skip_one REASON           one skipped TAP line
#   skip_all REASON           exit 77 (SKIP) with the reason last
#   finish                    prints the plan, exits 0 or 1
#   run_retry DESC CMD...     run_tap, but a run of registration_test
#                             whose only failure is its timing-dependent
#                             "after the destructor" check (an observer
#                             thread racing exit()) is rerun, 3 runs at most
#   build OUT SRC [FLAGS...]  compiles a C source against the staged
#                             library with -Wall -Wextra -Werror
set -u
tap_n=0
tap_failed=0
SCEN_SRC=$CTESTS/scenarios/src
CSTD_FLAGS="-std=gnu11 -O2 -g -Wall -Wextra -Werror"
RSEQ_FLAGS=$(pkg-config --cflags --libs librseq libcpu-op)
TEST_TIMEOUT=${TEST_TIMEOUT:-300}

ok() {
	_st=$1
	shift
	tap_n=$((tap_n + 1))
	if [ "$_st" -eq 0 ]; then
		echo "ok $tap_n - $*"
	else
		echo "not ok $tap_n - $*"
		tap_failed=$((tap_failed + 1))
	fi
}

diag() {
	printf '%s\n' "$*" | sed 's/^/# /'
}

skip_one() {
	tap_n=$((tap_n + 1))
	echo "ok $tap_n # SKIP $*"
}

skip_all() {
	echo "1..0 # SKIP $*"
	exit 77
}

finish() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ] || exit 1
	exit 0
}

# run_tap DESCRIPTION CMD...: the command's output is kept in $WORK/last.out.
run_tap() {
	_desc=$1
	shift
	timeout "$TEST_TIMEOUT" "$@" >"$WORK/last.out" 2>&1
	_rc=$?
	_p=$(grep -c '^ok ' "$WORK/last.out")
	_f=$(grep -c '^not ok ' "$WORK/last.out")
	if [ "$_rc" -eq 0 ] && [ "$_f" -eq 0 ] && [ "$_p" -gt 0 ]; then
		ok 0 "$_desc ($_p assertions)"
		grep '^# ' "$WORK/last.out" | tail -n 3
	else
		ok 1 "$_desc (exit $_rc, $_p ok, $_f not ok)"
		sed 's/^/# | /' "$WORK/last.out" | tail -n 60
	fi
}

run_retry() {
	_d=$1
	shift
	for _try in 1 2 3; do
		timeout "$TEST_TIMEOUT" "$@" >"$WORK/try.out" 2>&1
		_rc=$?
		_nf=$(grep -c '^not ok ' "$WORK/try.out")
		if [ $_rc -eq 0 ] && [ "$_nf" -eq 0 ]; then
			break
		fi
		if [ "$_nf" -ne 1 ] || ! grep -q '^not ok .*after the destructor' "$WORK/try.out"; then
			break
		fi
		diag "$_d: run $_try missed the exit race (registration_test #49), running again"
	done
	run_tap "$_d" sh -c 'cat "$1"; exit "$2"' sh "$WORK/try.out" "$_rc"
}

build() {
	_out=$1
	_src=$2
	shift 2
	# shellcheck disable=SC2086
	cc $CSTD_FLAGS -I"$CTESTS" "$@" -o "$_out" "$_src" $RSEQ_FLAGS -lpthread -ldl
}
