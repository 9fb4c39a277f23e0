# speed: fast
# fork() (from the main thread and from another thread) while other
# threads are inside cpu-ops holding CPUs' ownership: every child uses
# every API (rseq ops, cpu-ops and percpu_* on every CPU, registration, a
# new thread) without deadlock (alarm), one in four after exec. The
# parent's totals stay exact.
. "$CTESTS/scenarios/src/lib.sh"
build fork_cpuop fork_cpuop && run_both fork_cpuop "$WORK/fork_cpuop" -n "${FORK_COUNT:-150}"
build fork_cpuop-noinline fork_cpuop -DRSEQ_NO_INLINE &&
	run_both fork_cpuop-noinline "$WORK/fork_cpuop-noinline" -n "${FORK_COUNT:-60}"
finish
