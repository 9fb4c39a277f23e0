# speed: fast
# Signal storm: timers every 5 us (process-directed) and 7 us (one per
# worker thread), plus ITIMER_PROF, in 10 ms phases, during critical
# sections, explicit registration cycles, thread start/exit and cpu-ops;
# the handlers do rseq, percpu_* and cpu-op work, and no handler cpu-op
# is ever refused with EDEADLK (issue 9). Exact totals, no deadlock.
# STORM_SECONDS changes the duration (3 s inline, 2 s -noinline).
. "$CTESTS/scenarios/src/lib.sh"
build signal_storm signal_storm &&
	run_both signal_storm "$WORK/signal_storm" -d "${STORM_SECONDS:-3}"
build signal_storm-noinline signal_storm -DRSEQ_NO_INLINE &&
	run_both signal_storm-noinline "$WORK/signal_storm-noinline" -d "${STORM_SECONDS:-2}"
finish
