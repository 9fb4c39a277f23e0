#!/bin/sh
# speed: fast
# A program built only against the exported ABI, as librseq's inline
# headers use it (scenarios/src/abi_only.c): no header of this library
# (checked with cc -H), its own declarations of rseq_offset, rseq_size and
# rseq_register_current_thread, its own x86_64 critical section (asm goto,
# __rseq_cs descriptor, signature 0x53053053). Linked with
# `pkg-config --libs librseq` only, run with the staged library on its
# path, 4 threads per CPU signalled every 200 us: exact totals with
# glibc's registration and with the library's. Control: the same
# instructions without the rseq descriptor lose updates.
. "$CTESTS/scenarios/src/common.sh"

[ "$(uname -m)" = x86_64 ] || skip_all "the hand-written critical section is x86_64"
# shellcheck disable=SC2046
cc $CSTD_FLAGS -H -o "$WORK/abi_only" "$SCEN_SRC/abi_only.c" $(pkg-config --libs librseq) -lpthread 2>"$WORK/headers"
ok $? "abi_only.c builds with \`pkg-config --libs librseq\` and no include path of the library"
! grep -q 'rseq' "$WORK/headers"
ok $? "no header of the library (or any rseq header) was included"
readelf -d "$WORK/abi_only" | grep -q 'NEEDED.*librseq\.so\.0'
ok $? "the program needs librseq.so.0"

iters=300000
for mode in glibc library; do
	if [ $mode = glibc ]; then set -- env; else set -- env GLIBC_TUNABLES=glibc.pthread.rseq=0; fi
	run_tap "registration by $mode: 4 threads/CPU x $iters increments, exact total" "$@" "$WORK/abi_only" 0 $iters
	lib=$(sed -n 's/^# lib //p' "$WORK/last.out")
	[ "$lib" = "$STAGE/lib/librseq.so.0" ]
	ok $? "registration by $mode: the library on the path was used ($lib)"
done
size=$(sed -n 's/.*rseq_size \([0-9]*\),.*/\1/p' "$WORK/last.out")
diag "rseq_size with the library's registration: $size"

"$WORK/abi_only" 0 $iters unprotected >"$WORK/control.out" 2>&1
rc=$?
grep -q '^not ok .*exact total' "$WORK/control.out"
ok $? "control: without the rseq descriptor the same loop loses updates (exit $rc: $(grep 'exact total' "$WORK/control.out" | sed 's/.*exact total //'))"
finish
