#!/bin/sh
# speed: fast
# The README's example, extracted from README.md (the first ```c block
# after "## Example"), compiled with its own command line through
# pkg-config, must print the total its comment promises, with rseq (glibc
# registration on and off) and with rseq refused by a seccomp filter
# (ENOSYS, EPERM: where a loop on the plain critical sections would spin
# forever).
. "$CTESTS/scenarios/src/common.sh"

readme=$CTESTS/../README.md
awk '/^## Example/ { e = 1 } e && /^```c/ { c = 1; next } c && /^```/ { exit } c { print }' "$readme" >"$WORK/counter.c"
[ -s "$WORK/counter.c" ]
ok $? "README.md has a C example ($(wc -l <"$WORK/counter.c") lines)"
expect=$(sed -n 's|.*printf.*/\* *\([0-9][0-9]*\) *\*/.*|\1|p' "$WORK/counter.c")
[ -n "$expect" ]
ok $? "its comment promises a total (${expect:-none})"
# shellcheck disable=SC2046
cc -Wall -Wextra -Werror -o "$WORK/counter" "$WORK/counter.c" $(pkg-config --cflags --libs librseq) -lpthread >"$WORK/cc.out" 2>&1
ok $? "it compiles with its own command line"
sed 's/^/# /' "$WORK/cc.out" | head -n 10

run() {
	desc=$1
	shift
	out=$(timeout 120 "$@" 2>&1)
	rc=$?
	[ $rc -eq 0 ] && [ "$out" = "$expect" ]
	ok $? "$desc: prints $out (exit $rc)"
}
run "with rseq" "$WORK/counter"
run "GLIBC_TUNABLES=glibc.pthread.rseq=0" env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$WORK/counter"
if cc $CSTD_FLAGS -o "$WORK/seccomp_exec" "$SCEN_SRC/seccomp_exec.c" 2>/dev/null &&
	"$WORK/seccomp_exec" ENOSYS /bin/true; then
	run "rseq -> ENOSYS (seccomp)" "$WORK/seccomp_exec" ENOSYS "$WORK/counter"
	run "rseq -> EPERM (seccomp)" "$WORK/seccomp_exec" EPERM "$WORK/counter"
else
	skip_one "seccomp filters unavailable here"
fi
finish
