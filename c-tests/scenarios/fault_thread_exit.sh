# speed: fast
# Threads exiting at any point: 5000 short-lived threads doing a few
# operations each and leaving by return or pthread_exit (right after a
# cpu-op, an rseq op, an explicit register, register x2, unregister),
# detached ones, ones created behind the library's back; then threads
# calling pthread_exit from inside loops and deferred cancellations.
# Exact totals. THREADS changes the number of short-lived threads.
. "$CTESTS/scenarios/src/lib.sh"
build thread_exit thread_exit &&
	run_both thread_exit "$WORK/thread_exit" -n "${THREADS:-5000}" -d 2
build thread_exit-noinline thread_exit -DRSEQ_NO_INLINE &&
	run_both thread_exit-noinline "$WORK/thread_exit-noinline" -n "${THREADS:-2000}" -d 1
finish
