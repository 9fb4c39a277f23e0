/* SPDX-License-Identifier: MIT */
/*
 * rseq/cpu-op.h: the CPU op vector (libcpu-op API, v12 names and later
 * additions), implemented in user space by librseq.
 *
 * A cpu-op runs on behalf of a given CPU, atomically with respect to every
 * critical section of this library on that CPU and to every other cpu-op
 * for it, whichever CPU the caller runs on. It always completes: use it
 * where an rseq critical section cannot (a single-stepping debugger, rseq
 * refused by a sandbox, another CPU's data), or through the percpu_*
 * wrappers of <rseq/percpu-op.h>.
 *
 * Return values: 0 done; > 0 the 1-based index of the compare that failed
 * (nothing after it ran); -1 with errno, nothing ran: EINVAL (invalid
 * argument or CPU, or a CPU this kernel cannot fence: without
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ), Linux < 5.10, only
 * CPUs the caller can migrate onto), EFAULT or EAGAIN (an address of a
 * cpu_opv() vector cannot be accessed; or the errno of a sandbox that
 * refuses the kernel copies cpu_opv() uses). Like the kernel's cpu_opv
 * system call, a cpu-op cannot be interrupted: every signal of the calling
 * thread is blocked while it owns a CPU.
 */
#ifndef _RSEQ_CPU_OP_H
#define _RSEQ_CPU_OP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <rseq/rseq.h>
#include <rseq/compat/linux/cpu_opv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What left a fast path, per process (cpu_op_get_counters()). Fields are
 * only ever appended; pass sizeof(struct cpu_op_counters). */
struct cpu_op_counters {
	uint64_t vectors;		/* cpu-op vectors and helpers run */
	uint64_t fences_none;		/* no fence: no thread can have rseq */
	uint64_t fences_own_cpu;	/* the caller ran on the target */
	uint64_t fences_membarrier_cpu;	/* membarrier on the target CPU */
	uint64_t fences_membarrier_all;	/* membarrier on every CPU (mm_cid) */
	uint64_t fences_migrate;	/* the caller migrated onto the target */
	uint64_t waits;			/* sleeps while another cpu-op owned the target */
	uint64_t rseq_aborts;		/* critical sections that aborted */
	uint64_t fallbacks;		/* percpu_* operations that fell back to a cpu-op */
};

#ifdef __cplusplus
}
#endif

#include <rseq/generated/cpu-op-api.h>

#endif /* _RSEQ_CPU_OP_H */
