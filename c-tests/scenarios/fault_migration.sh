# speed: fast
# Affinity changes and migration storms (a thread calling
# sched_setaffinity(tid, ...) on the workers continuously, half of the
# workers moving themselves too) while every operation kind runs, in
# CPU_ID and MM_CID mode. Exact totals. MIGRATION_SECONDS (3 s).
. "$CTESTS/scenarios/src/lib.sh"
build migration migration && run_both migration "$WORK/migration" -d "${MIGRATION_SECONDS:-3}"
build migration-noinline migration -DRSEQ_NO_INLINE &&
	run_both migration-noinline "$WORK/migration-noinline" -d "${MIGRATION_SECONDS:-2}"
finish
