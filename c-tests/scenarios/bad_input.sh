# speed: fast
# Bad input: every invalid argument of the C API (rseq ops, percpu_*,
# cpu_op_* helpers, cpu_opv vectors, counters) returns the documented
# error and changes nothing (sentinels around every buffer). Built with
# the inline fast paths and with -DRSEQ_NO_INLINE, each run with glibc
# owning registration and with the library owning it.
. "$CTESTS/scenarios/src/lib.sh"
build bad_input bad_input && run_both bad_input "$WORK/bad_input"
build bad_input-noinline bad_input -DRSEQ_NO_INLINE && run_both bad_input-noinline "$WORK/bad_input-noinline"
finish
