#!/bin/sh
# speed: fast
# Issue 9: a cpu-op is as uninterruptible as the cpu_opv system call.
# Each numbered scenario of the issue, with glibc's registration on and
# off (scenarios/src/robust.c, fork_order.c, multi_copy.c; RELIABILITY.md
# lists them):
#   1 longjmp   handlers siglongjmp out of cpu-ops: no word left held, no
#               EDEADLK, no handler runs while its thread holds a word
#   2 rseqloop  handlers run raw rseq retry loops on their thread's CPU
#   3 exit      pthread_exit() from handlers, async and deferred cancel
#   4 nomalloc  migrating cpu-ops (membarrier refused) from handlers that
#               interrupted malloc: no malloc, no open; availability
#               truthful (scenario 9), affinity restored
#   5 unmap     cpu_opv on memory unmapped/protected concurrently
#   6 sandbox   probes refused by seccomp: EFAULT or the refusal's errno
#               (unmap and sandbox run again with RSEQ_CPU_OPV_KERNEL_COPY=1)
#   7 fork      program atfork handlers registered before the dlopen
#   8 copies    librseq.a in the executable + librseq.so dlopen'ed
#               (with and without -rdynamic)
#   9 fifo      a SCHED_FIFO rseq loop on the CPU of a preempted holder
#               (fifo_holder.c; skipped where SCHED_FIFO is refused)
# RSEQ_ROBUST_LIB=DIR runs everything against another build (to show the
# failures of an old one).
. "$CTESTS/scenarios/src/lib.sh"
LIBDIR=${RSEQ_ROBUST_LIB:-$STAGE/lib}
LD_LIBRARY_PATH=$LIBDIR
export LD_LIBRARY_PATH

if build robust robust; then
	for s in longjmp rseqloop exit nomalloc unmap sandbox; do
		run_both "$s" "$WORK/robust" "$s"
	done
	# The same vectors with every access through the kernel (the path
	# of ARMv8.0 without LSE, and of RSEQ_CPU_OPV_KERNEL_COPY=1).
	RSEQ_CPU_OPV_KERNEL_COPY=1
	export RSEQ_CPU_OPV_KERNEL_COPY
	for s in unmap sandbox; do
		run_both "$s kernel-copy" "$WORK/robust" "$s"
	done
	unset RSEQ_CPU_OPV_KERNEL_COPY
fi

if build fifo_holder fifo_holder; then
	run_both fifo "$WORK/fifo_holder"
fi

need cc
# shellcheck disable=SC2046
if cc -std=gnu11 -O2 -g -Wall -Wextra -Werror -I"$CTESTS" $(pkg-config --cflags libcpu-op) \
	-o "$WORK/fork_order" "$CTESTS/scenarios/src/fork_order.c" -ldl -lpthread >"$WORK/fo.log" 2>&1; then
	run_both fork "$WORK/fork_order" "$LIBDIR/librseq.so.0"
else
	sed 's/^/# /' "$WORK/fo.log"
	tap_n=$((tap_n + 1)); tap_failed=$((tap_failed + 1)); echo "not ok $tap_n - build fork_order"
fi

if [ -f "$LIBDIR/librseq.a" ]; then
	PRIV=$(for l in $(pkg-config --static --libs-only-l librseq); do [ "$l" = -lrseq ] || printf '%s ' "$l"; done)
	for v in plain rdynamic; do
		extra=
		[ $v = rdynamic ] && extra=-rdynamic
		# shellcheck disable=SC2046,SC2086
		if cc -std=gnu11 -O2 -g -Wall -Wextra -Werror -I"$CTESTS" $(pkg-config --cflags librseq libcpu-op) \
			$extra -o "$WORK/multi_copy-$v" "$CTESTS/scenarios/src/multi_copy.c" \
			-L"$LIBDIR" -Wl,-Bstatic -lrseq -Wl,-Bdynamic $PRIV -lpthread -ldl >"$WORK/mc.log" 2>&1; then
			run_both "copies $v" "$WORK/multi_copy-$v" "$LIBDIR/librseq.so.0"
		else
			sed 's/^/# /' "$WORK/mc.log"
			tap_n=$((tap_n + 1)); tap_failed=$((tap_failed + 1)); echo "not ok $tap_n - build multi_copy-$v"
		fi
	done
fi
finish
