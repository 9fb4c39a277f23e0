/* SPDX-License-Identifier: MIT */
/*
 * Issue 9, scenario 8: two copies of the library in one process. This
 * program is linked with librseq.a (with and without -rdynamic) and
 * dlopen()s librseq.so as a plugin would. Threads increment per-CPU
 * counters with the executable's inline rseq sections and with the
 * plugin copy's cpu-ops, on the same counters: the total must be exact
 * (one ownership table), the executable's rseq_offset must not change,
 * and the executable's sections must keep committing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>

#include "tap.h"

#define SLOT 16
static intptr_t *counts;
static int ncpus;
static atomic_long expected, commits, atomic_ops;
static int (*plugin_addv)(intptr_t *, int64_t, int);
static const uint32_t *(*plugin_word)(int);

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (long i = 0; i < 200000; i++) {
		if ((i + id) % 4 == 0) {
			int c = (int)((i / 4 + id) % ncpus);
			if (plugin_addv(&counts[c * SLOT], 1, c) == 0)
				atomic_fetch_add(&expected, 1);
		} else {
			int cpu = rseq_cpu_start();
			if (cpu >= 0 && rseq_addv(&counts[cpu * SLOT], 1, cpu) == 0) {
				atomic_fetch_add(&expected, 1);
				atomic_fetch_add(&commits, 1);
			}
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	enum { W = 4 };
	pthread_t t[W];

	plan_no_plan();
	ncpus = (int)sysconf(_SC_NPROCESSORS_CONF);
	counts = calloc((size_t)ncpus * SLOT, sizeof(intptr_t));
	rseq_register_current_thread();
	ptrdiff_t offset_before = rseq_offset;
	unsigned int size_before = rseq_size;
	void *h = dlopen(argc > 1 ? argv[1] : "librseq.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		bail_out("dlopen: %s", dlerror());
	plugin_addv = (int (*)(intptr_t *, int64_t, int))dlsym(h, "cpu_op_addv");
	if (!plugin_addv)
		bail_out("no cpu_op_addv in the plugin copy");
	/* Make the plugin copy initialise now. */
	plugin_addv(&counts[0], 0, 0);
	ok(rseq_offset == offset_before, "the executable's rseq_offset is unchanged (%td, was %td)", rseq_offset,
	   offset_before);
	ok(rseq_size == size_before || size_before == 0, "the executable's rseq_size is unchanged (%u, was %u)",
	   rseq_size, size_before);
	/* The slow-path counters live in the table's slots: the plugin's
	 * vectors show in the executable copy's counters iff the table is
	 * shared. */
	struct cpu_op_counters before, after;
	cpu_op_get_counters(&before, sizeof(before));
	for (int i = 0; i < 100; i++)
		plugin_addv(&counts[0], 0, 0);
	cpu_op_get_counters(&after, sizeof(after));
	ok(after.vectors - before.vectors >= 100, "one ownership table for both copies (%lu plugin vectors seen)",
	   (unsigned long)(after.vectors - before.vectors));
	for (int i = 0; i < W; i++)
		pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < W; i++)
		pthread_join(t[i], NULL);
	intptr_t sum = 0;
	for (int c = 0; c < ncpus; c++)
		sum += counts[c * SLOT];
	ok(sum == atomic_load(&expected), "exact total: %ld (expected %ld)", (long)sum, atomic_load(&expected));
	ok(atomic_load(&commits) > 0, "the executable's sections commit (%ld)", atomic_load(&commits));
	(void)plugin_word;
	(void)atomic_ops;
	return exit_status();
}
