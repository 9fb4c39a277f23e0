/* SPDX-License-Identifier: MIT */
/*
 * The clean fallback on an architecture without critical sections
 * (armhf here, run under qemu-user): the library loads, never registers
 * a thread, every critical section returns -1 without committing,
 * rseq_available() is false with errno ENOTSUP, the CPU-number accessors
 * fall back to getcpu(), and the cpu-op and percpu_* paths still work.
 *
 * Built and run by c-tests/cross/unsupported-check.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>

#include <rseq/percpu-op.h>

#include "tap.h"

static intptr_t counters[64];

static void *worker(void *arg)
{
	for (int i = 0; i < 1000; i++) {
		int cpu = percpu_current_cpu();

		while (percpu_addv(&counters[cpu], 1, cpu) < 0 && errno == EAGAIN)
			;
	}
	return arg;
}

int main(void)
{
	intptr_t v = 5, sum = 0;
	pthread_t t[4];
	int cpu;

	plan_no_plan();
	errno = 0;
	ok(!rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL) && errno == ENOTSUP,
	   "rseq_available(KERNEL) is false with errno ENOTSUP (errno %d)", errno);
	ok(rseq_current_cpu_raw() < 0, "the thread is not registered (cpu_id %d)", rseq_current_cpu_raw());
	cpu = (int)rseq_current_cpu();
	ok(cpu >= 0 && cpu < rseq_get_max_nr_cpus(), "rseq_current_cpu() falls back to getcpu(): %d", cpu);
	ok(rseq_addv(&v, 1, cpu) == -1 && v == 5, "rseq_addv returns -1 and commits nothing");
	ok(rseq_cmpeqv_storev(&v, 5, 6, cpu) == -1 && v == 5, "rseq_cmpeqv_storev returns -1 and commits nothing");
	ok(cpu_op_addv(&v, 2, cpu) == 0 && v == 7, "cpu_op_addv works");
	ok(percpu_cmpeqv_storev(&v, 7, 8, cpu) == 0 && v == 8, "percpu_cmpeqv_storev completes through a cpu-op");
	if (rseq_get_max_nr_cpus() > 64)
		bail_out("too many CPUs for this test");
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 64; i++)
		sum += counters[i];
	ok(sum == 4000, "4 threads x 1000 percpu_addv: exact total %ld", (long)sum);
	return exit_status();
}
