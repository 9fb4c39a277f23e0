#!/bin/sh
# Runs the scenario scripts of c-tests/scenarios/ against a staged install
# and summarises their TAP. Each scenario declares its cost in a line
# "# speed: fast" (part of `make check`) or "# speed: slow" (`make
# check-slow`, documented in RELIABILITY.md).
#
# A scenario is an executable script that prints TAP and exits 0 when it
# passes, 77 when it cannot run here (a missing tool: reported as SKIP).
# It gets STAGE (the install prefix), CTESTS (this directory), BIN (the
# built C tests), PKG_CONFIG_PATH and LD_LIBRARY_PATH for the staged
# library, and WORK, a fresh scratch directory.
#
#   run-scenarios.sh fast|slow|all STAGE [NAME...]
set -u
speed=$1
STAGE=$2
shift 2
CTESTS=$(cd "$(dirname "$0")" && pwd)
BIN=$CTESTS/bin
PKG_CONFIG_PATH=$STAGE/lib/pkgconfig
LD_LIBRARY_PATH="$STAGE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export STAGE CTESTS BIN PKG_CONFIG_PATH LD_LIBRARY_PATH
limit=${RSEQ_SCENARIO_TIMEOUT:-900}

runs=0 passed=0 failed=0 skipped=0 broken=""
for script in "$CTESTS"/scenarios/*.sh; do
	name=$(basename "$script" .sh)
	if [ $# -gt 0 ]; then
		case " $* " in *" $name "*) ;; *) continue ;; esac
	fi
	s=$(sed -n 's/^# speed: *//p' "$script" | head -n 1)
	[ "$speed" = all ] || [ "$s" = "$speed" ] || continue
	WORK=$(mktemp -d)
	export WORK
	runs=$((runs + 1))
	start=$(date +%s)
	out=$(cd "$WORK" && timeout "$limit" sh "$script" 2>&1)
	status=$?
	secs=$(($(date +%s) - start))
	rm -rf "$WORK"
	p=$(printf '%s\n' "$out" | grep -c '^ok ')
	f=$(printf '%s\n' "$out" | grep -c '^not ok ')
	if [ "$status" -eq 77 ]; then
		skipped=$((skipped + 1))
		echo "SKIP $name: $(printf '%s\n' "$out" | tail -n 1)"
		continue
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$status" -ne 0 ] || [ "$f" -ne 0 ]; then
		broken="$broken $name"
		printf '%s\n' "$out" | sed "s|^|[$name] |"
		echo "FAIL $name (exit $status, $f failed assertions, ${secs}s)"
	else
		echo "PASS $name ($p assertions, ${secs}s)"
	fi
done
echo "Scenarios ($speed): $runs run, $skipped skipped, $passed assertions passed, $failed failed"
[ -z "$broken" ] || { echo "FAILED:$broken"; exit 1; }
