#!/bin/sh
# Summarises the TAP of one VM's console (the blocks init.c writes).
#
#   summarise.sh LABEL CONSOLE_LOG EXPECTED_RUNS
#
# Prints PASS/FAIL per run (the whole output of a failed run, prefixed),
# each distinct SKIP reason with its count, and exits non-zero when a run failed, timed out, was
# missing (the machine died before "@@@ done"), or the count is wrong.
set -u
label=$1
log=$2
expected=$3
[ -f "$log" ] || { echo "not ok - $label: no console log"; exit 1; }
# Console lines end in \r\n.
tr -d '\r' <"$log" | awk -v label="$label" -v expected="$expected" '
/^@@@ kernel / { sub(/^@@@ /, ""); print "# " label ": " $0; next }
/^@@@ begin / { run = $3; inrun = 1; out = ""; p = 0; f = 0; s = 0; next }
/^@@@ end / {
	inrun = 0; runs++
	st = $4; sub(/^status=/, "", st); tm = $5; sub(/^time=/, "", tm)
	if (st != "0" || f > 0 || p == 0) {
		bad++
		printf "%s", out
		printf "FAIL %s %s (status %s, %d failed, %d passed, %s)\n", label, run, st, f, p, tm
	} else {
		printf "PASS %s %s (%d assertions%s, %s)\n", label, run, p, s ? ", " s " skipped" : "", tm
	}
	passed += p; failed += f
	next
}
/^@@@ done / { done = $3; next }
inrun {
	out = out "[" run "] " $0 "\n"
	if ($0 ~ /^ok /) { p++; if ($0 ~ /# SKIP/) { s++; why = $0; sub(/.*# SKIP */, "", why); skips[why]++ } }
	else if ($0 ~ /^not ok /) f++
	else if ($0 ~ /^1\.\.0 # SKIP/) { s++; why = $0; sub(/.*# SKIP */, "", why); skips[run ": " why]++ }
	next
}
END {
	for (why in skips) printf "# %s: skipped %d times: %s\n", label, skips[why], why
	if (inrun) { bad++; printf "%s", out; printf "FAIL %s %s (the machine stopped during the run)\n", label, run }
	if (done == "") { print "# " label ": no \"@@@ done\" line: the machine died or timed out"; bad++ }
	if (runs != expected) { printf "# %s: %d runs of %d\n", label, runs, expected; bad++ }
	printf "%s: %d runs, %d assertions passed, %d failed%s\n", label, runs, passed, failed, bad ? ", FAILED" : ""
	exit bad ? 1 : 0
}'
