/* SPDX-License-Identifier: MIT */
/*
 * Stress of pool-allocated per-CPU data: 6 threads per online CPU
 * update per-CPU counters and per-CPU linked lists whose heads live in a
 * per-CPU pool (rseq_percpu_ptr) and whose nodes come from a robust
 * global pool. Half of the threads use the rseq operations (retrying
 * aborts), half the percpu_* operations (which always complete). The
 * threads yield, and move themselves between CPUs with
 * sched_setaffinity(). Checked exactly: the counters sum to the number of
 * increments; the values left in the lists equal pushes minus pops;
 * every node is freed exactly once (the robust pool aborts on a double
 * free, and on destroy if one was lost).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rseq/mempool.h>
#include <rseq/percpu-op.h>
#include <rseq/rseq.h>

#include "tap.h"

/* Iterations per thread; the first argument overrides it. */
static int ITERS = 50000;

struct node {
	intptr_t next;
	intptr_t value;
};

static intptr_t __rseq_percpu *counter;
static intptr_t __rseq_percpu *heads;
static struct rseq_mempool *node_pool;
static int nr_cpus, have_rseq;
static cpu_set_t allowed;
static int64_t pushed_sum[1024], popped_sum[1024], pushed_n[1024], popped_n[1024];

static void migrate(unsigned int *seed)
{
	int n = CPU_COUNT(&allowed), k = (int)(rand_r(seed) % (unsigned int)n), cpu;
	cpu_set_t one;

	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed))
			continue;
		if (k-- == 0)
			break;
	}
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	sched_setaffinity(0, sizeof(one), &one);
}

static void add_one(int use_rseq)
{
	for (;;) {
		int cpu = (int)rseq_cpu_start();
		intptr_t *c = rseq_percpu_ptr(counter, cpu);

		if (use_rseq) {
			if (rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, c, 1, cpu) == 0)
				return;
		} else if (percpu_addv(c, 1, cpu) == 0) {
			return;
		}
	}
}

static void push(int use_rseq, struct node *n)
{
	for (;;) {
		int cpu = (int)rseq_cpu_start();
		intptr_t *head = rseq_percpu_ptr(heads, cpu);
		intptr_t old = RSEQ_READ_ONCE(*head);
		int r;

		n->next = old;
		if (use_rseq)
			r = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, head, old, (intptr_t)n, cpu);
		else
			r = percpu_cmpeqv_storev(head, old, (intptr_t)n, cpu);
		if (r == 0)
			return;
	}
}

static struct node *pop(int use_rseq)
{
	for (;;) {
		int cpu = (int)rseq_cpu_start();
		intptr_t *head = rseq_percpu_ptr(heads, cpu);
		intptr_t load = 0;
		int r;

		if (use_rseq)
			r = rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, head, 0,
								      offsetof(struct node, next), &load, cpu);
		else
			r = percpu_cmpnev_storeoffp_load(head, 0, offsetof(struct node, next), &load, cpu);
		if (r == 0)
			return (struct node *)load;
		if (r > 0)
			return NULL;
	}
}

static void *worker(void *arg)
{
	/* Without rseq (a sandbox) the rseq path would retry forever. */
	int id = (int)(intptr_t)arg, use_rseq = have_rseq && id % 2 == 0, i;
	unsigned int seed = (unsigned int)id * 7919u + 1;

	for (i = 0; i < ITERS; i++) {
		add_one(use_rseq);
		if (i % 3 != 2) {
			struct node *n = (struct node *)rseq_mempool_malloc(node_pool);

			if (!n)
				bail_out("node allocation failed: %s", strerror(errno));
			n->value = i + 1;
			/* Once pushed, the node may be popped and freed by another thread. */
			pushed_sum[id] += i + 1;
			pushed_n[id]++;
			push(use_rseq, n);
		} else {
			struct node *n = pop(use_rseq);

			if (n) {
				popped_sum[id] += n->value;
				popped_n[id]++;
				rseq_mempool_free(n);
			}
		}
		if (i % 500 == 0)
			migrate(&seed);
		if (rand_r(&seed) % 64 == 0)
			sched_yield();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct rseq_mempool_attr *attr = rseq_mempool_attr_create();
	struct rseq_mempool *percpu_pool;
	int nthreads, i, cpu;
	int64_t total = 0, want_sum = 0, want_n = 0, left_sum = 0, left_n = 0;
	pthread_t *t;

	plan_no_plan();
	if (argc > 1 && atoi(argv[1]) > 0)
		ITERS = atoi(argv[1]);
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		bail_out("sched_getaffinity");
	nthreads = 6 * CPU_COUNT(&allowed);
	if (nthreads > 1024)
		nthreads = 1024;
	nr_cpus = rseq_get_max_nr_cpus();
	have_rseq = rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL);
	percpu_pool = rseq_mempool_create("per-CPU data", sizeof(intptr_t), NULL);
	rseq_mempool_attr_set_global(attr, 0);
	rseq_mempool_attr_set_robust(attr);
	node_pool = rseq_mempool_create("nodes", sizeof(struct node), attr);
	rseq_mempool_attr_destroy(attr);
	if (!percpu_pool || !node_pool)
		bail_out("pool creation failed: %s", strerror(errno));
	counter = (intptr_t *)rseq_mempool_percpu_zmalloc(percpu_pool);
	heads = (intptr_t *)rseq_mempool_percpu_zmalloc(percpu_pool);
	if (!counter || !heads)
		bail_out("per-CPU allocation failed");
	diag("%d threads x %d iterations, %d possible CPUs, rseq path %s", nthreads, ITERS, nr_cpus,
	     have_rseq ? "used by half of the threads" : "unavailable");
	t = (pthread_t *)calloc((size_t)nthreads, sizeof(*t));
	for (i = 0; i < nthreads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i))
			bail_out("pthread_create");
	for (i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	free(t);
	for (cpu = 0; cpu < nr_cpus; cpu++) {
		struct node *n = (struct node *)*rseq_percpu_ptr(heads, cpu);

		total += *rseq_percpu_ptr(counter, cpu);
		while (n) {
			struct node *next = (struct node *)n->next;

			left_sum += n->value;
			left_n++;
			rseq_mempool_free(n);
			n = next;
		}
	}
	for (i = 0; i < nthreads; i++) {
		want_sum += pushed_sum[i] - popped_sum[i];
		want_n += pushed_n[i] - popped_n[i];
	}
	ok(total == (int64_t)nthreads * ITERS, "per-CPU pool counters: total %lld == %lld", (long long)total,
	   (long long)nthreads * ITERS);
	ok(left_n == want_n && left_sum == want_sum, "per-CPU pool lists: %lld nodes (sum %lld) left == pushed - popped (%lld, %lld)",
	   (long long)left_n, (long long)left_sum, (long long)want_n, (long long)want_sum);
	rseq_mempool_percpu_free(counter);
	rseq_mempool_percpu_free(heads);
	/* Robust: aborts if a node was lost or freed twice. */
	ok(rseq_mempool_destroy(node_pool) == 0, "robust node pool destroyed: every node freed exactly once");
	ok(rseq_mempool_destroy(percpu_pool) == 0, "per-CPU pool destroyed");
	return exit_status();
}
