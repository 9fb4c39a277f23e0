# Shared helpers of the scenario scripts (sourced, POSIX sh; not a
# scenario itself: run-scenarios.sh only runs scenarios/*.sh).
#
#   build OUT SRC [CFLAGS...]   compile scenarios/src/SRC.c into $WORK/OUT
#                               against the staged library (exit 77 when
#                               cc or pkg-config is missing)
#   run_both LABEL BIN [ARGS]   run BIN twice, with glibc owning rseq
#                               registration and with it disabled
#                               (GLIBC_TUNABLES=glibc.pthread.rseq=0);
#                               its TAP is renumbered into this script's
#                               stream, plus one assertion per run for
#                               its exit status
#   finish                      print the plan, exit 1 on any failure
set -u
tap_n=0
tap_failed=0

skip_all() {
	echo "1..0 # SKIP $*"
	echo "SKIP: $*"
	exit 77
}

need() {
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || skip_all "$tool not found"
	done
}

build() {
	out=$1
	src=$2
	shift 2
	need cc pkg-config
	# shellcheck disable=SC2046
	if ! cc -std=gnu11 -O2 -g -Wall -Wextra -Werror -I"$CTESTS" \
		$(pkg-config --cflags librseq libcpu-op) "$@" \
		-o "$WORK/$out" "$CTESTS/scenarios/src/$src.c" \
		$(pkg-config --libs librseq) -lpthread -ldl -lrt >"$WORK/$out.cc.log" 2>&1; then
		sed 's/^/# /' "$WORK/$out.cc.log"
		tap_n=$((tap_n + 1))
		tap_failed=$((tap_failed + 1))
		echo "not ok $tap_n - build $out"
		return 1
	fi
	return 0
}

# Renumbers a TAP stream read on stdin, prefixing descriptions.
retap() {
	label=$1
	while IFS= read -r line; do
		case $line in
		"ok "*|"not ok "*)
			tap_n=$((tap_n + 1))
			case $line in
			"not ok "*) res="not ok"; rest=${line#not ok }; tap_failed=$((tap_failed + 1)) ;;
			*) res="ok"; rest=${line#ok } ;;
			esac
			rest=${rest#"${rest%%[!0-9]*}"}	# drop the number
			rest=${rest# }
			rest=${rest#- }
			case $rest in
			"#"*) echo "$res $tap_n - [$label] $rest" ;;
			*) echo "$res $tap_n - [$label] $rest" ;;
			esac
			;;
		1..*) ;;
		"#"*) echo "$line" ;;
		*) echo "# $line" ;;
		esac
	done
}

run_one() {
	label=$1
	shift
	if command -v timeout >/dev/null 2>&1; then
		set -- timeout -s KILL "${RSEQ_SCENARIO_PROG_TIMEOUT:-600}" "$@"
	fi
	"$@" >"$WORK/run.out" 2>&1
	status=$?
	retap "$label" <"$WORK/run.out"
	tap_n=$((tap_n + 1))
	if [ "$status" -eq 0 ]; then
		echo "ok $tap_n - [$label] exits 0"
	else
		tap_failed=$((tap_failed + 1))
		echo "not ok $tap_n - [$label] exits 0 (status $status)"
	fi
}

run_both() {
	label=$1
	shift
	run_one "$label" "$@"
	run_one "$label glibc-rseq-off" env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$@"
}

finish() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ] || { echo "# $tap_failed failed"; exit 1; }
	exit 0
}
