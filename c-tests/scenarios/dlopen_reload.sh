#!/bin/sh
# speed: fast
# dlopen after threads exist, dlclose, dlopen again, three cycles
# (scenarios/src/dlopen_reload.c, not linked with the library): every
# reopen succeeds and finds the same state (addresses, rseq_offset,
# rseq_size, ownership table, cpu-op counters, the main thread's
# registration and its explicit registration count), threads created
# before the first dlopen and while the library is closed operate with
# exact totals; glibc's registration on and off.
. "$CTESTS/scenarios/src/common.sh"

cc $CSTD_FLAGS -I"$CTESTS" -o "$WORK/dlopen_reload" "$SCEN_SRC/dlopen_reload.c" -ldl -lpthread
ok $? "dlopen_reload.c builds without linking the library"
run_tap "dlopen/dlclose/dlopen x3, glibc registration on" "$WORK/dlopen_reload"
run_tap "dlopen/dlclose/dlopen x3, GLIBC_TUNABLES=glibc.pthread.rseq=0" env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$WORK/dlopen_reload"
finish
