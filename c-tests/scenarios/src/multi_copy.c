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

/* A thread that uses rseq only through the plugin copy: when the
 * executable's copy owns registration, the plugin copy has it register
 * the thread (through the executable copy's anchor), lazily. */
static int (*plugin_init)(void), (*plugin_register)(void), (*plugin_unregister)(void);

static void *plugin_only(void *arg)
{
	int *r = arg;

	r[0] = rseq_current_cpu_raw();
	r[1] = plugin_init();
	r[2] = rseq_current_cpu_raw();
	r[3] = plugin_unregister();
	r[4] = rseq_current_cpu_raw();
	r[5] = plugin_register();
	r[6] = rseq_current_cpu_raw();
	r[7] = plugin_unregister();
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
	plugin_init = (int (*)(void))dlsym(h, "rseq_init");
	plugin_register = (int (*)(void))dlsym(h, "rseq_register_current_thread");
	plugin_unregister = (int (*)(void))dlsym(h, "rseq_unregister_current_thread");
	if (!plugin_init || !plugin_register || !plugin_unregister)
		bail_out("no registration functions in the plugin copy");
	int r[8];
	pthread_t p;
	if (pthread_create(&p, NULL, plugin_only, r) || pthread_join(p, NULL))
		bail_out("pthread_create");
	if (rseq_available(RSEQ_AVAILABLE_QUERY_LIBC))
		ok(r[0] >= 0 && r[1] == 0 && r[2] >= 0 && r[3] == 0 && r[4] >= 0 && r[5] == 0 && r[6] >= 0 && r[7] == 0,
		   "glibc owns: a thread using only the plugin copy is registered throughout");
	else
		ok(r[0] == -1 && r[1] == 0 && r[2] >= 0 && r[3] == 0 && r[4] == -1 && r[5] == 0 && r[6] >= 0 &&
			   r[7] == 0,
		   "a thread using only the plugin copy: unregistered at first (%d), registered by the plugin's "
		   "rseq_init (%d: %d), unregistered (%d: %d) and registered (%d: %d) by its explicit calls",
		   r[0], r[1], r[2], r[3], r[4], r[5], r[6]);
	(void)plugin_word;
	(void)atomic_ops;
	return exit_status();
}
