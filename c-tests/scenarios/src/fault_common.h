/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of the fault scenarios: per-CPU counters that every
 * operation family increments (rseq critical sections, percpu_*,
 * cpu_op_* helpers, cpu_opv vectors), an exact expected total, a
 * watchdog, and the accounting of cpu-ops that a signal handler could not
 * run (EDEADLK) and leaves to its thread.
 *
 * Every increment is +1 (a vector op +2) on the slot of some CPU; the
 * operation that committed it adds the same amount to `expected` right
 * after. At the end (every thread joined, no handler running) the sum of
 * the slots must equal `expected`.
 */
#ifndef RSEQ_SCENARIOS_FAULT_COMMON_H
#define RSEQ_SCENARIOS_FAULT_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <linux/cpu_opv.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>
#include <rseq/percpu-op.h>

#include "tap.h"

struct fc_slot {
	intptr_t v;
} __attribute__((aligned(128)));

static struct fc_slot *fc_counts;	/* one per possible CPU (or mm_cid) */
static struct fc_slot *fc_counts_mm;	/* MM_CID-indexed counters */
static int fc_ncpus;
static atomic_long fc_expected;		/* committed increments */
static atomic_long fc_errors;		/* unexpected results */
static atomic_long fc_edeadlk;		/* handler cpu-ops refused with EDEADLK */
static atomic_long fc_deferred_done;	/* ... and redone by their thread */
static atomic_long fc_rseq_giveups;	/* rseq retried too long: used a cpu-op */
static _Thread_local atomic_long fc_deferred;	/* this thread's pending redo */
static _Thread_local uint32_t fc_rng;

static const char *fc_last_error = "";

static inline uint32_t fc_rand(void)
{
	uint32_t x = fc_rng;

	if (!x)
		x = (uint32_t)(uintptr_t)&fc_rng ^ 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	fc_rng = x;
	return x;
}

static inline void fc_error(const char *what)
{
	fc_last_error = what;
	atomic_fetch_add(&fc_errors, 1);
}

static void fc_watchdog_handler(int sig)
{
	static const char msg[] = "Bail out! watchdog expired: deadlock or livelock\n";

	(void)sig;
	if (write(1, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(3);
}

/* alarm(seconds) with a handler that reports the hang. */
static inline void fc_watchdog(unsigned int seconds)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fc_watchdog_handler;
	sigaction(SIGALRM, &sa, NULL);
	alarm(seconds);
}

static inline void fc_init(void)
{
	fc_ncpus = rseq_get_max_nr_cpus();
	if (posix_memalign((void **)&fc_counts, 128, sizeof(*fc_counts) * (size_t)fc_ncpus) ||
	    posix_memalign((void **)&fc_counts_mm, 128, sizeof(*fc_counts_mm) * (size_t)fc_ncpus))
		bail_out("posix_memalign");
	memset(fc_counts, 0, sizeof(*fc_counts) * (size_t)fc_ncpus);
	memset(fc_counts_mm, 0, sizeof(*fc_counts_mm) * (size_t)fc_ncpus);
}

static inline long fc_sum(void)
{
	long s = 0;

	for (int i = 0; i < fc_ncpus; i++)
		s += (long)fc_counts[i].v + (long)fc_counts_mm[i].v;
	return s;
}

static inline double fc_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int fc_random_cpu(void)
{
	return (int)(fc_rand() % (uint32_t)fc_ncpus);
}

/* The operation kinds. */
enum fc_kind {
	FC_RSEQ_ADD,		/* rseq_load_add_store__ptr on the current CPU */
	FC_RSEQ_CAS,		/* rseq_cmpeqv_storev read-compare-store loop */
	FC_RSEQ_MM_ADD,		/* rseq_load_add_store__ptr MM_CID (if available) */
	FC_PERCPU_ADD,		/* percpu_addv on the current or a random CPU */
	FC_PERCPU_CAS,		/* percpu_cmpeqv_storev loop, random CPU */
	FC_CPUOP_ADD,		/* cpu_op_addv on a random CPU */
	FC_CPUOP_CAS,		/* cpu_op_cmpeqv_storev loop, random CPU */
	FC_CPUOPV,		/* cpu_opv: add, MB, add (+2), random CPU */
	FC_NKINDS,
};

static const char *const fc_kind_name[FC_NKINDS] = {
	"rseq add", "rseq cas", "rseq mm_cid add", "percpu_addv", "percpu cas",
	"cpu_op_addv", "cpu_op cas", "cpu_opv",
};

/* Result of one attempt: 0 done (amount committed), 1 EDEADLK (nothing
 * done: only possible in a handler), -1 unexpected error. */
static inline int fc_cpu_op_result(int r)
{
	if (r == 0)
		return 0;
	if (r < 0 && errno == EDEADLK)
		return 1;
	return -1;
}

static inline int fc_opv_add2(int cpu)
{
	struct cpu_op ops[3];

	memset(ops, 0, sizeof(ops));
	ops[0].op = CPU_ADD_OP;
	ops[0].len = sizeof(intptr_t);
	ops[0].u.arithmetic_op.p = (uintptr_t)&fc_counts[cpu].v;
	ops[0].u.arithmetic_op.count = 1;
	ops[1].op = CPU_MB_OP;
	ops[2] = ops[0];
	return cpu_opv(ops, 3, cpu, 0);
}

/*
 * One increment of the given kind. Returns the amount committed (1 or
 * 2), 0 when a cpu-op was refused with EDEADLK (in_handler only; the
 * caller defers it), -1 on an unexpected error (counted).
 */
static inline int fc_do(enum fc_kind kind, int in_handler)
{
	int cpu, r;
	int tries = in_handler ? 50 : 1000;

	switch (kind) {
	case FC_RSEQ_ADD:
		for (int i = 0; i < tries; i++) {
			cpu = (int)rseq_cpu_start();
			if (rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &fc_counts[cpu].v, 1, cpu) == 0)
				return 1;
		}
		atomic_fetch_add(&fc_rseq_giveups, 1);
		return fc_do(FC_PERCPU_ADD, in_handler);
	case FC_RSEQ_CAS:
		for (int i = 0; i < tries; i++) {
			intptr_t old;

			cpu = (int)rseq_cpu_start();
			old = RSEQ_READ_ONCE(fc_counts[cpu].v);
			if (rseq_cmpeqv_storev(&fc_counts[cpu].v, old, old + 1, cpu) == 0)
				return 1;
		}
		atomic_fetch_add(&fc_rseq_giveups, 1);
		return fc_do(FC_CPUOP_ADD, in_handler);
	case FC_RSEQ_MM_ADD:
		if (!rseq_mm_cid_available())
			return fc_do(FC_RSEQ_ADD, in_handler);
		for (int i = 0; i < tries; i++) {
			cpu = (int)rseq_current_mm_cid();
			if (cpu >= fc_ncpus) {
				fc_error("mm_cid out of range");
				return -1;
			}
			if (rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_MM_CID, &fc_counts_mm[cpu].v, 1, cpu) == 0)
				return 1;
		}
		atomic_fetch_add(&fc_rseq_giveups, 1);
		cpu = (int)rseq_current_mm_cid();
		r = fc_cpu_op_result(cpu_op_addv_mode(RSEQ_PERCPU_MM_CID, &fc_counts_mm[cpu].v, 1, cpu));
		break;
	case FC_PERCPU_ADD:
		cpu = (fc_rand() & 1) ? (int)rseq_cpu_start() : fc_random_cpu();
		r = fc_cpu_op_result(percpu_addv(&fc_counts[cpu].v, 1, cpu));
		break;
	case FC_PERCPU_CAS:
		cpu = fc_random_cpu();
		for (;;) {
			intptr_t old = RSEQ_READ_ONCE(fc_counts[cpu].v);
			int ret = percpu_cmpeqv_storev(&fc_counts[cpu].v, old, old + 1, cpu);

			if (ret == 1)
				continue;	/* raced: retry */
			r = fc_cpu_op_result(ret);
			break;
		}
		break;
	case FC_CPUOP_ADD:
		cpu = fc_random_cpu();
		r = fc_cpu_op_result(cpu_op_addv(&fc_counts[cpu].v, 1, cpu));
		break;
	case FC_CPUOP_CAS:
		cpu = fc_random_cpu();
		for (;;) {
			intptr_t old = RSEQ_READ_ONCE(fc_counts[cpu].v);
			int ret = cpu_op_cmpeqv_storev(&fc_counts[cpu].v, old, old + 1, cpu);

			if (ret == 1)
				continue;
			r = fc_cpu_op_result(ret);
			break;
		}
		break;
	default:
		cpu = fc_random_cpu();
		r = fc_cpu_op_result(fc_opv_add2(cpu));
		if (r == 0)
			return 2;
		break;
	}
	if (r == 0)
		return 1;
	if (r == 1 && in_handler)
		return 0;
	fc_error(r == 1 ? "EDEADLK outside a signal handler" : "cpu-op failed");
	return -1;
}

/* One increment, accounted. From a signal handler, a refused cpu-op is
 * left to the interrupted thread (fc_drain). */
static inline void fc_op(enum fc_kind kind, int in_handler)
{
	int n = fc_do(kind, in_handler);

	if (n > 0) {
		atomic_fetch_add(&fc_expected, n);
	} else if (n == 0) {
		atomic_fetch_add(&fc_edeadlk, 1);
		atomic_fetch_add(&fc_deferred, 1);
	}
}

/* Redoes, outside any handler, the increments this thread's handlers
 * could not do. */
static inline void fc_drain(void)
{
	long n;

	while ((n = atomic_exchange(&fc_deferred, 0)) > 0) {
		for (long i = 0; i < n; i++) {
			int cpu = fc_random_cpu();

			if (cpu_op_addv(&fc_counts[cpu].v, 1, cpu) == 0) {
				atomic_fetch_add(&fc_expected, 1);
				atomic_fetch_add(&fc_deferred_done, 1);
			} else {
				fc_error("deferred cpu_op_addv failed");
			}
		}
	}
}

/* Blocks the storm's signals in the calling thread, then drains: after
 * this, no handler runs in this thread any more. */
static inline void fc_quiesce(const sigset_t *storm)
{
	pthread_sigmask(SIG_BLOCK, storm, NULL);
	fc_drain();
}

static inline void fc_get_counters(struct cpu_op_counters *c)
{
	memset(c, 0, sizeof(*c));
	if (cpu_op_get_counters(c, sizeof(*c)))
		memset(c, 0, sizeof(*c));
}

static inline void fc_report_counters(const struct cpu_op_counters *a, const struct cpu_op_counters *b)
{
	diag("library counters: %llu vectors, %llu rseq aborts, %llu percpu fallbacks, %llu waits, fences: %llu own-cpu %llu membarrier-cpu %llu membarrier-all %llu migrate",
	     (unsigned long long)(b->vectors - a->vectors), (unsigned long long)(b->rseq_aborts - a->rseq_aborts),
	     (unsigned long long)(b->fallbacks - a->fallbacks), (unsigned long long)(b->waits - a->waits),
	     (unsigned long long)(b->fences_own_cpu - a->fences_own_cpu),
	     (unsigned long long)(b->fences_membarrier_cpu - a->fences_membarrier_cpu),
	     (unsigned long long)(b->fences_membarrier_all - a->fences_membarrier_all),
	     (unsigned long long)(b->fences_migrate - a->fences_migrate));
}

#endif /* RSEQ_SCENARIOS_FAULT_COMMON_H */
