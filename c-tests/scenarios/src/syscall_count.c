/* SPDX-License-Identifier: MIT */
/*
 * Issue 14: system calls a thread costs. Creates and joins N threads one
 * after another; each makes one getppid() (the marker strace uses to tell
 * worker threads from the main thread), then, by MODE:
 *   idle      nothing else: a thread that never touches the library;
 *   inline    per-CPU increments with an inline critical section (its
 *             first one aborts and registers the thread), rseq_current_cpu();
 *   explicit  librseq's style: rseq_register_current_thread() twice, the
 *             increments, rseq_unregister_current_thread() twice.
 * syscall_count.sh runs it under strace -f and counts rseq and
 * rt_sigprocmask calls per worker thread; built with -DNO_LIBRARY (idle
 * only, no rseq header, not linked with the library) it gives glibc's own
 * per-thread calls, the baseline. Exits non-zero if an increment got
 * stuck or the total is wrong.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef NO_LIBRARY
#include <rseq/rseq.h>
#define SLOT 16
static intptr_t *counts;
static int ncpus;
static long failures;
#endif

static const char *mode;

#ifndef NO_LIBRARY
static int add_one(void)
{
	for (int tries = 0; tries < 1000; tries++) {
		int cpu = (int)rseq_cpu_start();

		if (cpu >= 0 && cpu < ncpus && rseq_addv(&counts[cpu * SLOT], 1, cpu) == 0)
			return 0;
	}
	return -1;
}
#endif

static void *worker(void *arg)
{
	(void)arg;
	(void)getppid();
#ifndef NO_LIBRARY
	if (!strcmp(mode, "inline")) {
		for (int i = 0; i < 10; i++)
			if (add_one())
				__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
		if ((int)rseq_current_cpu() < 0)
			__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
	} else if (!strcmp(mode, "explicit")) {
		if (rseq_register_current_thread() || rseq_register_current_thread())
			__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
		for (int i = 0; i < 10; i++)
			if (add_one())
				__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
		if (rseq_unregister_current_thread() || rseq_unregister_current_thread())
			__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
	}
#endif
	return NULL;
}

int main(int argc, char **argv)
{
	int n;

	if (argc != 3) {
		fprintf(stderr, "usage: %s idle|inline|explicit N\n", argv[0]);
		return 2;
	}
	mode = argv[1];
	n = atoi(argv[2]);
#ifndef NO_LIBRARY
	ncpus = rseq_get_max_nr_cpus();
	counts = calloc((size_t)ncpus * SLOT, sizeof(*counts));
	if (!counts)
		return 2;
#else
	if (strcmp(mode, "idle"))
		return 2;
#endif
	for (int i = 0; i < n; i++) {
		pthread_t t;

		if (pthread_create(&t, NULL, worker, NULL) || pthread_join(t, NULL))
			return 2;
	}
#ifndef NO_LIBRARY
	{
		long sum = 0, want = strcmp(mode, "idle") ? 10L * n : 0;

		for (int c = 0; c < ncpus; c++)
			sum += counts[c * SLOT];
		if (failures || sum != want) {
			fprintf(stderr, "%ld failures, total %ld of %ld\n", failures, sum, want);
			return 1;
		}
	}
#endif
	return 0;
}
