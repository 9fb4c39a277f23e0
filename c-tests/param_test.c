/* SPDX-License-Identifier: MIT */
/*
 * Stress test in the style of the kernel's
 * tools/testing/selftests/rseq/param_test.c, through the public API of
 * <rseq/rseq.h> only.
 *
 * 6 threads per online CPU run six per-CPU workloads, each ending with
 * an exact check of its totals:
 *
 *   counter   per-CPU counters (load_add_store / rseq_addv and the
 *             pointer-chasing load_add_load_load_add_store /
 *             rseq_offset_deref_addv)
 *   spinlock  per-CPU locks taken with load_cbne_store 0->1, a plain
 *             per-CPU counter under the lock, release-store unlock
 *   list      per-CPU linked lists: pop (load_cbeq_store_add_load_store)
 *             and push (load_cbne_store) of nodes
 *   buffer    per-CPU pointer arrays: push (load_cbne_store_store,
 *             RELEASE) and pop (load_cbne_load_cbne_store)
 *   memcpy    per-CPU arrays of 16-byte items: push (RELEASE) and pop
 *             (RELAXED) with load_cbne_memcpy_store
 *   memcpy-large  the same with 16 KiB items (an odd length), whose copy
 *             makes the critical section long enough to be aborted
 *             often; every popped copy is verified
 *
 * in CPU_ID mode and, when the kernel provides it, MM_CID mode. In CPU_ID
 * mode every other operation uses the 2017 names (rseq_addv, ...).
 *
 * Disturbances: random sched_yield(), a 1 us nanosleep every N
 * iterations, half of the threads moving themselves to a rotating single
 * CPU with sched_setaffinity() every N iterations, a thread sending
 * SIGUSR1 to every worker at a high rate, and one thread pinned to each
 * CPU that wakes up every few tens of microseconds to preempt the
 * workers at random points.
 *
 * The workers never call rseq_register_current_thread(): registration is
 * automatic (by glibc, or by the library when glibc's is disabled), and
 * the test checks that every worker ends up registered.
 *
 * Options: -T threads, -r repetition scale (percent), -y yield 1/N,
 * -s sleep every N, -m migrate every N, -k signal interval (us),
 * -p preempter interval (us),
 * -t per-workload timeout (s), -w comma-separated workloads, -v verbose.
 * 0 disables a disturbance.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rseq/rseq.h>

#include "tap.h"

#define CACHELINE	128
#define NODES_PER_CPU	100

/* Repetitions per thread of each workload, at scale 100%. */
#define REPS_COUNTER	600000
#define REPS_SPINLOCK	300000
#define REPS_LIST	300000
#define REPS_BUFFER	300000
#define REPS_MEMCPY	300000
#define REPS_BIG	8000

static int opt_threads;			/* 0: 6 x online CPUs */
static long opt_scale = 100;		/* percent of the default repetitions */
static unsigned int opt_yield = 64;	/* sched_yield() with probability 1/N */
static unsigned int opt_sleep = 512;	/* 1 us nanosleep every N iterations */
static unsigned int opt_migrate = 256;	/* odd threads change CPU every N iterations */
static unsigned int opt_signal_us = 200;	/* SIGUSR1 round every N us */
static unsigned int opt_preempt_us = 50;	/* per-CPU preempter wakes every N us */
static unsigned int opt_timeout = 120;	/* seconds per workload */
static bool opt_verbose;

static int max_nr_cpus;
static int nr_threads;
static cpu_set_t allowed_cpus;
static int allowed_list[CPU_SETSIZE];
static int nr_allowed;

static int workers_running;
static unsigned long sig_delivered, sig_delivered_total;
static unsigned long sig_sent;
static unsigned long preempt_wakeups;
static const char *current_workload = "setup";

static const char *mode_name(enum rseq_percpu_mode mode)
{
	return mode == RSEQ_PERCPU_MM_CID ? "mm_cid" : "cpu_id";
}

struct worker {
	pthread_t tid;
	int idx;
	enum rseq_percpu_mode mode;
	long reps;
	uint32_t rng;
	unsigned int migrate_next;
	/* Statistics. */
	unsigned long aborts, cmpfails, yields, sleeps, migrations, affinity_errors;
	unsigned long empty, bad, torn;
	long done, done2;		/* workload-specific exact counts */
	bool registered_at_start, registered_at_end;
};

static struct worker *workers;
static pthread_barrier_t start_barrier;

static uint32_t xorshift32(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return x;
}

/* The per-CPU index of the calling thread in the given mode. */
static inline int current_index(enum rseq_percpu_mode mode)
{
	int idx = mode == RSEQ_PERCPU_MM_CID ? (int)rseq_current_mm_cid() : (int)rseq_cpu_start();

	if (rseq_unlikely(idx < 0 || idx >= max_nr_cpus))
		bail_out("%s index %d out of range [0, %d)", mode_name(mode), idx, max_nr_cpus);
	return idx;
}

/* Use the 2017 name for this operation? (CPU_ID mode, odd iterations.) */
static inline bool use_2017(const struct worker *w, long i)
{
	return w->mode == RSEQ_PERCPU_CPU_ID && (i & 1);
}

static inline void count_ret(struct worker *w, int ret)
{
	if (ret == -1)
		w->aborts++;
	else if (ret == 1)
		w->cmpfails++;
	else
		w->bad++;
}

static void migrate(struct worker *w)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(allowed_list[w->migrate_next++ % nr_allowed], &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		w->affinity_errors++;
	else
		w->migrations++;
}

/* The disturbances between two operations. */
static void disturb(struct worker *w, long i)
{
	if (opt_yield && xorshift32(&w->rng) % opt_yield == 0) {
		sched_yield();
		w->yields++;
	}
	if (opt_sleep && (i + w->idx) % opt_sleep == 0) {
		struct timespec ts = { 0, 1000 };

		nanosleep(&ts, NULL);
		w->sleeps++;
	}
	if (opt_migrate && nr_allowed > 1 && (w->idx & 1) && i % opt_migrate == 0)
		migrate(w);
}

static void worker_start(struct worker *w)
{
	w->registered_at_start = rseq_current_cpu_raw() >= 0;
	pthread_barrier_wait(&start_barrier);
}

static void worker_end(struct worker *w)
{
	w->registered_at_end = rseq_current_cpu_raw() >= 0;
	if (sched_setaffinity(0, sizeof(allowed_cpus), &allowed_cpus))
		w->affinity_errors++;
	__atomic_fetch_sub(&workers_running, 1, __ATOMIC_RELEASE);
}

static void sigusr1_handler(int sig)
{
	(void)sig;
	__atomic_fetch_add(&sig_delivered, 1, __ATOMIC_RELAXED);
}

static void sigalrm_handler(int sig)
{
	static const char msg[] = "Bail out! workload timed out: ";
	ssize_t r;

	(void)sig;
	r = write(STDOUT_FILENO, msg, sizeof(msg) - 1);
	r = write(STDOUT_FILENO, current_workload, strlen(current_workload));
	r = write(STDOUT_FILENO, "\n", 1);
	(void)r;
	_exit(3);
}

static struct timespec us_to_timespec(unsigned int us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	return ts;
}

static void *signal_thread(void *arg)
{
	struct timespec ts = us_to_timespec(opt_signal_us);

	(void)arg;
	while (__atomic_load_n(&workers_running, __ATOMIC_ACQUIRE) > 0) {
		for (int i = 0; i < nr_threads; i++)
			if (!pthread_kill(workers[i].tid, SIGUSR1))
				sig_sent++;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/*
 * One per allowed CPU, pinned there: wakes up every opt_preempt_us, which
 * preempts the worker running on that CPU at a random point (inside or
 * outside a critical section) and lets the scheduler pick another one.
 */
static void *preempt_thread(void *arg)
{
	struct timespec ts = us_to_timespec(opt_preempt_us);
	unsigned long n = 0;

	(void)arg;
	while (__atomic_load_n(&workers_running, __ATOMIC_ACQUIRE) > 0) {
		nanosleep(&ts, NULL);
		n++;
	}
	__atomic_fetch_add(&preempt_wakeups, n, __ATOMIC_RELAXED);
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Runs fn in nr_threads workers (with the signal and preempter threads)
 * and checks that all of them were registered automatically. Statistics
 * are left in workers[].
 */
static void run_workers(const char *name, enum rseq_percpu_mode mode, long reps, void *(*fn)(void *))
{
	static char label[64];
	pthread_t sig_tid, preempt_tid[CPU_SETSIZE];
	int nr_preempt = 0;
	unsigned long aborts = 0, cmpfails = 0, yields = 0, sleeps = 0, migrations = 0;
	unsigned long affinity_errors = 0, bad = 0;
	int started_registered = 0, registered = 0, idle = 0, never_ran;
	double t0;
	int err;

	snprintf(label, sizeof(label), "%s/%s", name, mode_name(mode));
	current_workload = label;
	alarm(opt_timeout);
	t0 = now();
	memset(workers, 0, sizeof(*workers) * nr_threads);
	__atomic_store_n(&sig_delivered, 0, __ATOMIC_RELAXED);
	sig_sent = 0;
	__atomic_store_n(&preempt_wakeups, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&workers_running, nr_threads, __ATOMIC_RELEASE);
	if (pthread_barrier_init(&start_barrier, NULL, nr_threads + 1))
		bail_out("pthread_barrier_init failed");
	for (int i = 0; i < nr_threads; i++) {
		workers[i].idx = i;
		workers[i].mode = mode;
		workers[i].reps = reps;
		workers[i].rng = 0x9e3779b9u * (uint32_t)(i + 1);
		workers[i].migrate_next = (unsigned int)i;
		err = pthread_create(&workers[i].tid, NULL, fn, &workers[i]);
		if (err)
			bail_out("pthread_create: %s", strerror(err));
	}
	if (opt_signal_us) {
		err = pthread_create(&sig_tid, NULL, signal_thread, NULL);
		if (err)
			bail_out("pthread_create: %s", strerror(err));
	}
	for (int i = 0; opt_preempt_us && i < nr_allowed; i++) {
		pthread_attr_t attr;
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(allowed_list[i], &set);
		pthread_attr_init(&attr);
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		err = pthread_create(&preempt_tid[nr_preempt], &attr, preempt_thread, NULL);
		pthread_attr_destroy(&attr);
		if (err)
			bail_out("pthread_create: %s", strerror(err));
		nr_preempt++;
	}
	pthread_barrier_wait(&start_barrier);
	/* Workers stay joinable (never joined) until the signal thread is done. */
	if (opt_signal_us)
		pthread_join(sig_tid, NULL);
	for (int i = 0; i < nr_preempt; i++)
		pthread_join(preempt_tid[i], NULL);
	for (int i = 0; i < nr_threads; i++)
		pthread_join(workers[i].tid, NULL);
	pthread_barrier_destroy(&start_barrier);
	alarm(0);

	for (int i = 0; i < nr_threads; i++) {
		struct worker *w = &workers[i];

		aborts += w->aborts;
		cmpfails += w->cmpfails;
		yields += w->yields;
		sleeps += w->sleeps;
		migrations += w->migrations;
		affinity_errors += w->affinity_errors;
		bad += w->bad;
		started_registered += w->registered_at_start;
		/* Registration is lazy (on the first aborted section): a worker
		 * whose every pop found its buffer empty before reaching a
		 * section (an unregistered thread reads mm_cid 0) never ran
		 * one, so it need not be registered. */
		never_ran = !w->registered_at_end && w->done == 0 && w->empty > 0;
		idle += never_ran;
		registered += w->registered_at_end || never_ran;
	}
	sig_delivered_total += __atomic_load_n(&sig_delivered, __ATOMIC_RELAXED);
	diag("%s: %d threads x %ld reps in %.2f s: %lu aborts, %lu compare failures, "
	     "%lu yields, %lu sleeps, %lu migrations, %lu preempter wakeups, "
	     "SIGUSR1 %lu sent / %lu delivered; %d threads registered at start",
	     label, nr_threads, reps, now() - t0, aborts, cmpfails, yields, sleeps, migrations,
	     __atomic_load_n(&preempt_wakeups, __ATOMIC_RELAXED),
	     sig_sent, __atomic_load_n(&sig_delivered, __ATOMIC_RELAXED), started_registered);
	ok(registered == nr_threads,
	   "%s: all %d workers that ran a section registered automatically (%d, %d never ran one)", label,
	   nr_threads, registered, idle);
	ok(bad == 0 && affinity_errors == 0, "%s: no unexpected return value (%lu) or affinity error (%lu)",
	   label, bad, affinity_errors);
}

/* The indices that get initial items: the allowed CPUs, or every mm_cid. */
static bool populated(enum rseq_percpu_mode mode, int idx)
{
	return mode == RSEQ_PERCPU_MM_CID || CPU_ISSET(idx, &allowed_cpus);
}

static void *xaligned_calloc(size_t n, size_t size)
{
	void *p;

	if (posix_memalign(&p, CACHELINE, n * size))
		bail_out("out of memory");
	memset(p, 0, n * size);
	return p;
}

/* ------------------------------------------------------------------ */
/* 1. Per-CPU counters. */

struct counter_entry {
	intptr_t count;		/* load_add_store */
	intptr_t deref_count;	/* through base + slot */
	intptr_t base;		/* (intptr_t)this entry */
	intptr_t *slot;		/* &deref_count */
} __attribute__((aligned(CACHELINE)));

static struct counter_entry *counters;

static void *counter_thread(void *arg)
{
	struct worker *w = arg;
	enum rseq_percpu_mode mode = w->mode;
	long off = offsetof(struct counter_entry, slot);

	worker_start(w);
	for (long i = 0; i < w->reps; i++) {
		bool deref = i & 2;

		for (;;) {
			int cpu = current_index(mode);
			int ret;

			if (!deref)
				ret = use_2017(w, i) ? rseq_addv(&counters[cpu].count, 1, cpu) :
					rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &counters[cpu].count, 1, cpu);
			else
				ret = use_2017(w, i) ? rseq_offset_deref_addv(&counters[cpu].base, off, 1, cpu) :
					rseq_load_add_load_load_add_store__ptr(RSEQ_MO_RELAXED, mode,
						&counters[cpu].base, off, 1, cpu);
			if (rseq_likely(!ret))
				break;
			count_ret(w, ret == 1 ? 2 : ret);	/* 1 is not a valid result here */
		}
		if (deref)
			w->done2++;
		else
			w->done++;
		disturb(w, i);
	}
	worker_end(w);
	return NULL;
}

static void test_counter(enum rseq_percpu_mode mode)
{
	long reps = REPS_COUNTER * opt_scale / 100;
	intptr_t sum = 0, sum2 = 0;
	long expect = 0, expect2 = 0;

	counters = xaligned_calloc(max_nr_cpus, sizeof(*counters));
	for (int i = 0; i < max_nr_cpus; i++) {
		counters[i].base = (intptr_t)&counters[i];
		counters[i].slot = &counters[i].deref_count;
	}
	run_workers("counter", mode, reps, counter_thread);
	for (int i = 0; i < nr_threads; i++) {
		expect += workers[i].done;
		expect2 += workers[i].done2;
	}
	for (int i = 0; i < max_nr_cpus; i++) {
		sum += counters[i].count;
		sum2 += counters[i].deref_count;
	}
	/* expect + expect2 == nr_threads * reps: every iteration committed once. */
	ok(sum == expect && expect + expect2 == (long)nr_threads * reps,
	   "counter/%s: load_add_store total %ld == %ld", mode_name(mode), (long)sum, expect);
	ok(sum2 == expect2, "counter/%s: load_add_load_load_add_store total %ld == %ld",
	   mode_name(mode), (long)sum2, expect2);
	free(counters);
}

/* ------------------------------------------------------------------ */
/* 2. Per-CPU spinlocks protecting per-CPU plain counters. */

struct lock_entry {
	intptr_t v;
	intptr_t count;
} __attribute__((aligned(CACHELINE)));

static struct lock_entry *locks;

static int this_cpu_lock(struct worker *w, long i)
{
	int cpu;

	for (;;) {
		int ret;

		cpu = current_index(w->mode);
		ret = use_2017(w, i) ? rseq_cmpeqv_storev(&locks[cpu].v, 0, 1, cpu) :
			rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, w->mode, &locks[cpu].v, 0, 1, cpu);
		if (rseq_likely(!ret))
			break;
		/* Retry if the comparison fails or rseq aborts. */
		count_ret(w, ret);
	}
	rseq_smp_acquire__after_ctrl_dep();
	return cpu;
}

static void percpu_unlock(struct worker *w, int cpu)
{
	if (RSEQ_READ_ONCE(locks[cpu].v) != 1)
		w->bad++;
	rseq_smp_store_release(&locks[cpu].v, 0);
}

static void *spinlock_thread(void *arg)
{
	struct worker *w = arg;

	worker_start(w);
	for (long i = 0; i < w->reps; i++) {
		int cpu = this_cpu_lock(w, i);
		intptr_t c = RSEQ_READ_ONCE(locks[cpu].count);

		/* A deliberately non-atomic increment: only the lock protects it. */
		rseq_barrier();
		RSEQ_WRITE_ONCE(locks[cpu].count, c + 1);
		percpu_unlock(w, cpu);
		w->done++;
		disturb(w, i);
	}
	worker_end(w);
	return NULL;
}

static void test_spinlock(enum rseq_percpu_mode mode)
{
	long reps = REPS_SPINLOCK * opt_scale / 100;
	intptr_t sum = 0;
	int held = 0;

	locks = xaligned_calloc(max_nr_cpus, sizeof(*locks));
	run_workers("spinlock", mode, reps, spinlock_thread);
	for (int i = 0; i < max_nr_cpus; i++) {
		sum += locks[i].count;
		held += locks[i].v != 0;
	}
	ok(sum == (intptr_t)nr_threads * reps && held == 0,
	   "spinlock/%s: counter total %ld == %ld, %d locks left held",
	   mode_name(mode), (long)sum, (long)nr_threads * reps, held);
	free(locks);
}

/* ------------------------------------------------------------------ */
/* Items shared by the list and buffer workloads. */

struct node {
	intptr_t data;
	struct node *next;
	intptr_t id;
};

static struct node *nodes;
static int nr_nodes;
static unsigned char *seen;

static intptr_t node_data(intptr_t id)
{
	return id * 7 + 3;
}

/* Creates NODES_PER_CPU nodes per populated index; returns their data sum. */
static intptr_t make_nodes(enum rseq_percpu_mode mode)
{
	intptr_t sum = 0;
	int n = 0;

	for (int i = 0; i < max_nr_cpus; i++)
		n += populated(mode, i) ? NODES_PER_CPU : 0;
	nr_nodes = n;
	nodes = calloc(n, sizeof(*nodes));
	seen = calloc(n, 1);
	if (!nodes || !seen)
		bail_out("out of memory");
	for (int i = 0; i < n; i++) {
		nodes[i].id = i;
		nodes[i].data = node_data(i);
		sum += nodes[i].data;
	}
	return sum;
}

/* Accounts for one node found in a per-CPU structure at the end. */
static void see_node(const struct node *node, intptr_t *sum, int *count, int *dup, int *corrupt)
{
	if (node < nodes || node >= nodes + nr_nodes) {
		(*corrupt)++;
		return;
	}
	if (node->data != node_data(node->id) || node->id != node - nodes)
		(*corrupt)++;
	if (seen[node->id]++)
		(*dup)++;
	*sum += node->data;
	(*count)++;
}

static void free_nodes(void)
{
	free(nodes);
	free(seen);
	nodes = NULL;
	seen = NULL;
}

/* ------------------------------------------------------------------ */
/* 3. Per-CPU linked lists. */

struct list_entry {
	struct node *head;
} __attribute__((aligned(CACHELINE)));

static struct list_entry *lists;

static struct node *list_pop(struct worker *w, long i)
{
	for (;;) {
		int cpu = current_index(w->mode);
		intptr_t *targetptr = (intptr_t *)&lists[cpu].head;
		intptr_t head = 0;
		long offset = offsetof(struct node, next);
		int ret;

		ret = use_2017(w, i) ? rseq_cmpnev_storeoffp_load(targetptr, 0, offset, &head, cpu) :
			rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, w->mode, targetptr,
								 0, offset, &head, cpu);
		if (rseq_likely(!ret))
			return (struct node *)head;
		if (ret > 0) {
			w->empty++;
			return NULL;
		}
		/* Retry if rseq aborts. */
		count_ret(w, ret);
	}
}

static void list_push(struct worker *w, long i, struct node *node)
{
	for (;;) {
		int cpu = current_index(w->mode);
		intptr_t *targetptr = (intptr_t *)&lists[cpu].head;
		intptr_t expect = (intptr_t)RSEQ_READ_ONCE(lists[cpu].head);
		int ret;

		node->next = (struct node *)expect;
		ret = use_2017(w, i) ? rseq_cmpeqv_storev(targetptr, expect, (intptr_t)node, cpu) :
			rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, w->mode, targetptr, expect,
						  (intptr_t)node, cpu);
		if (rseq_likely(!ret))
			return;
		/* Retry if the comparison fails or rseq aborts. */
		count_ret(w, ret);
	}
}

static void *list_thread(void *arg)
{
	struct worker *w = arg;

	worker_start(w);
	for (long i = 0; i < w->reps; i++) {
		struct node *node = list_pop(w, i);

		disturb(w, i);
		if (node) {
			list_push(w, i, node);
			w->done++;
		}
	}
	worker_end(w);
	return NULL;
}

static void test_list(enum rseq_percpu_mode mode)
{
	long reps = REPS_LIST * opt_scale / 100;
	intptr_t expect_sum = make_nodes(mode), sum = 0;
	int count = 0, dup = 0, corrupt = 0, n = 0;
	long moved = 0, empty = 0;

	lists = xaligned_calloc(max_nr_cpus, sizeof(*lists));
	for (int i = 0; i < max_nr_cpus; i++) {
		if (!populated(mode, i))
			continue;
		for (int j = 0; j < NODES_PER_CPU; j++, n++) {
			nodes[n].next = lists[i].head;
			lists[i].head = &nodes[n];
		}
	}
	run_workers("list", mode, reps, list_thread);
	for (int i = 0; i < max_nr_cpus; i++) {
		for (struct node *node = lists[i].head; node; node = node->next) {
			see_node(node, &sum, &count, &dup, &corrupt);
			if (corrupt || count > nr_nodes)
				break;	/* a cycle or a wild pointer */
		}
	}
	for (int i = 0; i < nr_threads; i++) {
		moved += workers[i].done;
		empty += workers[i].empty;
	}
	diag("list/%s: %ld nodes moved, %ld pops found an empty list", mode_name(mode), moved, empty);
	ok(sum == expect_sum && count == nr_nodes && dup == 0 && corrupt == 0,
	   "list/%s: sum %ld == %ld, %d nodes == %d, %d duplicated, %d corrupt",
	   mode_name(mode), (long)sum, (long)expect_sum, count, nr_nodes, dup, corrupt);
	free(lists);
	free_nodes();
}

/* ------------------------------------------------------------------ */
/* 4. Per-CPU buffers of pointers. */

struct buffer_entry {
	intptr_t offset;
	intptr_t buflen;
	struct node **array;
} __attribute__((aligned(CACHELINE)));

static struct buffer_entry *buffers;

static bool buffer_push(struct worker *w, long i, struct node *node)
{
	for (;;) {
		int cpu = current_index(w->mode);
		intptr_t offset = RSEQ_READ_ONCE(buffers[cpu].offset);
		intptr_t *targetptr_spec, *targetptr_final;
		int ret;

		if (offset == buffers[cpu].buflen)
			return false;
		targetptr_spec = (intptr_t *)&buffers[cpu].array[offset];
		targetptr_final = &buffers[cpu].offset;
		ret = use_2017(w, i) ?
			rseq_cmpeqv_trystorev_storev_release(targetptr_final, offset, targetptr_spec,
							     (intptr_t)node, offset + 1, cpu) :
			rseq_load_cbne_store_store__ptr(RSEQ_MO_RELEASE, w->mode, targetptr_final, offset,
							targetptr_spec, (intptr_t)node, offset + 1, cpu);
		if (rseq_likely(!ret))
			return true;
		/* Retry if the comparison fails or rseq aborts. */
		count_ret(w, ret);
	}
}

static struct node *buffer_pop(struct worker *w, long i)
{
	for (;;) {
		int cpu = current_index(w->mode);
		intptr_t offset = RSEQ_READ_ONCE(buffers[cpu].offset);
		struct node *head;
		intptr_t *slot;
		int ret;

		if (offset == 0) {
			w->empty++;
			return NULL;
		}
		slot = (intptr_t *)&buffers[cpu].array[offset - 1];
		head = (struct node *)RSEQ_READ_ONCE(*slot);
		ret = use_2017(w, i) ?
			rseq_cmpeqv_cmpeqv_storev(&buffers[cpu].offset, offset, slot, (intptr_t)head,
						  offset - 1, cpu) :
			rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, w->mode, &buffers[cpu].offset,
							    offset, slot, (intptr_t)head, offset - 1, cpu);
		if (rseq_likely(!ret))
			return head;
		/* Retry if the comparison fails or rseq aborts. */
		count_ret(w, ret);
	}
}

static void *buffer_thread(void *arg)
{
	struct worker *w = arg;

	worker_start(w);
	for (long i = 0; i < w->reps; i++) {
		struct node *node = buffer_pop(w, i);

		disturb(w, i);
		if (node) {
			if (!buffer_push(w, i, node))
				w->bad++;	/* every buffer can hold every node */
			w->done++;
		}
	}
	worker_end(w);
	return NULL;
}

static void test_buffer(enum rseq_percpu_mode mode)
{
	long reps = REPS_BUFFER * opt_scale / 100;
	intptr_t expect_sum = make_nodes(mode), sum = 0;
	int count = 0, dup = 0, corrupt = 0, n = 0, overflow = 0;
	long moved = 0, empty = 0;

	buffers = xaligned_calloc(max_nr_cpus, sizeof(*buffers));
	for (int i = 0; i < max_nr_cpus; i++) {
		buffers[i].buflen = nr_nodes;
		buffers[i].array = calloc(nr_nodes, sizeof(*buffers[i].array));
		if (!buffers[i].array)
			bail_out("out of memory");
		if (!populated(mode, i))
			continue;
		for (int j = 0; j < NODES_PER_CPU; j++, n++)
			buffers[i].array[buffers[i].offset++] = &nodes[n];
	}
	run_workers("buffer", mode, reps, buffer_thread);
	for (int i = 0; i < max_nr_cpus; i++) {
		if (buffers[i].offset < 0 || buffers[i].offset > buffers[i].buflen) {
			overflow++;
			continue;
		}
		for (intptr_t j = 0; j < buffers[i].offset; j++)
			see_node(buffers[i].array[j], &sum, &count, &dup, &corrupt);
		free(buffers[i].array);
	}
	for (int i = 0; i < nr_threads; i++) {
		moved += workers[i].done;
		empty += workers[i].empty;
	}
	diag("buffer/%s: %ld nodes moved, %ld pops found an empty buffer", mode_name(mode), moved, empty);
	ok(sum == expect_sum && count == nr_nodes && dup == 0 && corrupt == 0 && overflow == 0,
	   "buffer/%s: sum %ld == %ld, %d nodes == %d, %d duplicated, %d corrupt, %d bad offsets",
	   mode_name(mode), (long)sum, (long)expect_sum, count, nr_nodes, dup, corrupt, overflow);
	free(buffers);
	free_nodes();
}

/* ------------------------------------------------------------------ */
/* 5. Per-CPU buffers of 16-byte items copied in and out. */

struct item {
	intptr_t data1;		/* id + 1 */
	uint64_t data2;		/* item_check(data1) */
};

struct memcpy_entry {
	intptr_t offset;
	intptr_t buflen;
	struct item *array;
} __attribute__((aligned(CACHELINE)));

static struct memcpy_entry *mbuffers;

static uint64_t item_check(intptr_t data1)
{
	return (uint64_t)data1 * 0x9e3779b97f4a7c15ull ^ 0x5555aaaa5555aaaaull;
}

static bool memcpy_push(struct worker *w, long i, struct item item)
{
	for (;;) {
		int cpu = current_index(w->mode);
		intptr_t offset = RSEQ_READ_ONCE(mbuffers[cpu].offset);
		int ret;

		if (offset == mbuffers[cpu].buflen)
			return false;
		ret = use_2017(w, i) ?
			rseq_cmpeqv_trymemcpy_storev_release(&mbuffers[cpu].offset, offset,
							     &mbuffers[cpu].array[offset], &item,
							     sizeof(item), offset + 1, cpu) :
			rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELEASE, w->mode, &mbuffers[cpu].offset,
							 offset, &mbuffers[cpu].array[offset], &item,
							 sizeof(item), offset + 1, cpu);
		if (rseq_likely(!ret))
			return true;
		/* Retry if the comparison fails or rseq aborts. */
		count_ret(w, ret);
	}
}

static bool memcpy_pop(struct worker *w, long i, struct item *item)
{
	for (;;) {
		int cpu = current_index(w->mode);
		intptr_t offset = RSEQ_READ_ONCE(mbuffers[cpu].offset);
		int ret;

		if (offset == 0) {
			w->empty++;
			return false;
		}
		ret = use_2017(w, i) ?
			rseq_cmpeqv_trymemcpy_storev(&mbuffers[cpu].offset, offset, item,
						     &mbuffers[cpu].array[offset - 1], sizeof(*item),
						     offset - 1, cpu) :
			rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELAXED, w->mode, &mbuffers[cpu].offset,
							 offset, item, &mbuffers[cpu].array[offset - 1],
							 sizeof(*item), offset - 1, cpu);
		if (rseq_likely(!ret))
			return true;
		/* Retry if the comparison fails or rseq aborts. */
		count_ret(w, ret);
	}
}

static void *memcpy_thread(void *arg)
{
	struct worker *w = arg;

	worker_start(w);
	for (long i = 0; i < w->reps; i++) {
		struct item item;

		if (memcpy_pop(w, i, &item)) {
			if (item.data2 != item_check(item.data1))
				w->torn++;	/* a torn copy */
			disturb(w, i);
			if (!memcpy_push(w, i, item))
				w->bad++;
			w->done++;
		} else {
			disturb(w, i);
		}
	}
	worker_end(w);
	return NULL;
}

static void test_memcpy(enum rseq_percpu_mode mode)
{
	long reps = REPS_MEMCPY * opt_scale / 100;
	intptr_t expect_sum = 0, sum = 0;
	uint64_t expect_sum2 = 0, sum2 = 0;
	int n = 0, count = 0, dup = 0, corrupt = 0, overflow = 0, total = 0;
	long moved = 0, empty = 0, torn = 0;
	unsigned char *found;

	for (int i = 0; i < max_nr_cpus; i++)
		total += populated(mode, i) ? NODES_PER_CPU : 0;
	found = calloc(total, 1);
	mbuffers = xaligned_calloc(max_nr_cpus, sizeof(*mbuffers));
	if (!found)
		bail_out("out of memory");
	for (int i = 0; i < max_nr_cpus; i++) {
		mbuffers[i].buflen = total;
		mbuffers[i].array = calloc(total, sizeof(*mbuffers[i].array));
		if (!mbuffers[i].array)
			bail_out("out of memory");
		if (!populated(mode, i))
			continue;
		for (int j = 0; j < NODES_PER_CPU; j++, n++) {
			struct item *it = &mbuffers[i].array[mbuffers[i].offset++];

			it->data1 = n + 1;
			it->data2 = item_check(it->data1);
			expect_sum += it->data1;
			expect_sum2 += it->data2;
		}
	}
	run_workers("memcpy", mode, reps, memcpy_thread);
	for (int i = 0; i < max_nr_cpus; i++) {
		if (mbuffers[i].offset < 0 || mbuffers[i].offset > mbuffers[i].buflen) {
			overflow++;
			continue;
		}
		for (intptr_t j = 0; j < mbuffers[i].offset; j++) {
			const struct item *it = &mbuffers[i].array[j];

			if (it->data1 < 1 || it->data1 > total || it->data2 != item_check(it->data1)) {
				corrupt++;
				continue;
			}
			if (found[it->data1 - 1]++)
				dup++;
			sum += it->data1;
			sum2 += it->data2;
			count++;
		}
		free(mbuffers[i].array);
	}
	for (int i = 0; i < nr_threads; i++) {
		moved += workers[i].done;
		empty += workers[i].empty;
		torn += workers[i].torn;
	}
	diag("memcpy/%s: %ld items moved, %ld pops found an empty buffer", mode_name(mode), moved, empty);
	ok(torn == 0, "memcpy/%s: every popped copy complete (%ld torn)", mode_name(mode), torn);
	ok(sum == expect_sum && sum2 == expect_sum2 && count == total && dup == 0 && corrupt == 0 && overflow == 0,
	   "memcpy/%s: sums %ld == %ld and %#llx == %#llx, %d items == %d, %d duplicated, %d corrupt, %d bad offsets",
	   mode_name(mode), (long)sum, (long)expect_sum, (unsigned long long)sum2,
	   (unsigned long long)expect_sum2, count, total, dup, corrupt, overflow);
	free(mbuffers);
	free(found);
}

/* ------------------------------------------------------------------ */
/*
 * 6. The same with large items (16 KiB, a length that is not a
 * multiple of 8): the copy makes the critical section long enough for
 * preemption and signals to abort it often, and every popped copy is
 * verified byte by byte, so a torn copy that was committed is caught.
 */

#define BIG_PAYLOAD	16379
#define BIG_PER_CPU	8

struct big_item {
	intptr_t data1;		/* id + 1 */
	uint64_t data2;		/* item_check(data1) */
	unsigned char payload[BIG_PAYLOAD];
};

#define BIG_COPY_LEN	(offsetof(struct big_item, payload) + BIG_PAYLOAD)	/* 16395 */

struct big_entry {
	intptr_t offset;
	intptr_t buflen;
	struct big_item *array;
} __attribute__((aligned(CACHELINE)));

static struct big_entry *bbuffers;

/* Payload byte k of item data1 is big_pattern[k] + data1 * 31 (mod 256). */
static unsigned char big_pattern[BIG_PAYLOAD];

static void big_init_pattern(void)
{
	for (size_t k = 0; k < BIG_PAYLOAD; k++)
		big_pattern[k] = (unsigned char)(k * 7 + (k >> 8));
}

static void big_fill(struct big_item *it, intptr_t data1)
{
	unsigned char d = (unsigned char)(data1 * 31);

	it->data1 = data1;
	it->data2 = item_check(data1);
	for (size_t k = 0; k < BIG_PAYLOAD; k++)
		it->payload[k] = (unsigned char)(big_pattern[k] + d);
}

static bool big_valid(const struct big_item *it, intptr_t max)
{
	unsigned char d, diff = 0;

	if (it->data1 < 1 || it->data1 > max || it->data2 != item_check(it->data1))
		return false;
	d = (unsigned char)(it->data1 * 31);
	for (size_t k = 0; k < BIG_PAYLOAD; k++)
		diff |= (unsigned char)(it->payload[k] - big_pattern[k] - d);
	return diff == 0;
}

static bool big_push(struct worker *w, long i, struct big_item *item)
{
	for (;;) {
		int cpu = current_index(w->mode);
		intptr_t offset = RSEQ_READ_ONCE(bbuffers[cpu].offset);
		int ret;

		if (offset == bbuffers[cpu].buflen)
			return false;
		ret = use_2017(w, i) ?
			rseq_cmpeqv_trymemcpy_storev_release(&bbuffers[cpu].offset, offset,
							     &bbuffers[cpu].array[offset], item,
							     BIG_COPY_LEN, offset + 1, cpu) :
			rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELEASE, w->mode, &bbuffers[cpu].offset,
							 offset, &bbuffers[cpu].array[offset], item,
							 BIG_COPY_LEN, offset + 1, cpu);
		if (rseq_likely(!ret))
			return true;
		count_ret(w, ret);
	}
}

static bool big_pop(struct worker *w, long i, struct big_item *item)
{
	for (;;) {
		int cpu = current_index(w->mode);
		intptr_t offset = RSEQ_READ_ONCE(bbuffers[cpu].offset);
		int ret;

		if (offset == 0) {
			w->empty++;
			return false;
		}
		ret = use_2017(w, i) ?
			rseq_cmpeqv_trymemcpy_storev(&bbuffers[cpu].offset, offset, item,
						     &bbuffers[cpu].array[offset - 1], BIG_COPY_LEN,
						     offset - 1, cpu) :
			rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELAXED, w->mode, &bbuffers[cpu].offset,
							 offset, item, &bbuffers[cpu].array[offset - 1],
							 BIG_COPY_LEN, offset - 1, cpu);
		if (rseq_likely(!ret))
			return true;
		count_ret(w, ret);
	}
}

static intptr_t big_total;

static void *big_thread(void *arg)
{
	struct worker *w = arg;
	struct big_item item;

	worker_start(w);
	for (long i = 0; i < w->reps; i++) {
		/* Garbage in the destination: only a complete copy passes. */
		memset(&item, 0xa5, sizeof(item));
		if (big_pop(w, i, &item)) {
			if (!big_valid(&item, big_total))
				w->torn++;	/* a torn or corrupt copy */
			disturb(w, i);
			if (!big_push(w, i, &item))
				w->bad++;
			w->done++;
		} else {
			disturb(w, i);
		}
	}
	worker_end(w);
	return NULL;
}

static void test_big_memcpy(enum rseq_percpu_mode mode)
{
	long reps = REPS_BIG * opt_scale / 100;
	intptr_t expect_sum = 0, sum = 0;
	int n = 0, count = 0, dup = 0, corrupt = 0, overflow = 0, total = 0;
	long moved = 0, empty = 0, torn = 0;
	unsigned char *found;

	for (int i = 0; i < max_nr_cpus; i++)
		total += populated(mode, i) ? BIG_PER_CPU : 0;
	big_total = total;
	big_init_pattern();
	found = calloc(total, 1);
	bbuffers = xaligned_calloc(max_nr_cpus, sizeof(*bbuffers));
	if (!found)
		bail_out("out of memory");
	for (int i = 0; i < max_nr_cpus; i++) {
		bbuffers[i].buflen = total;
		bbuffers[i].array = calloc(total, sizeof(*bbuffers[i].array));
		if (!bbuffers[i].array)
			bail_out("out of memory");
		if (!populated(mode, i))
			continue;
		for (int j = 0; j < BIG_PER_CPU; j++, n++) {
			big_fill(&bbuffers[i].array[bbuffers[i].offset++], n + 1);
			expect_sum += n + 1;
		}
	}
	run_workers("memcpy-large", mode, reps, big_thread);
	for (int i = 0; i < max_nr_cpus; i++) {
		if (bbuffers[i].offset < 0 || bbuffers[i].offset > bbuffers[i].buflen) {
			overflow++;
			continue;
		}
		for (intptr_t j = 0; j < bbuffers[i].offset; j++) {
			const struct big_item *it = &bbuffers[i].array[j];

			if (!big_valid(it, total)) {
				corrupt++;
				continue;
			}
			if (found[it->data1 - 1]++)
				dup++;
			sum += it->data1;
			count++;
		}
		free(bbuffers[i].array);
	}
	for (int i = 0; i < nr_threads; i++) {
		moved += workers[i].done;
		empty += workers[i].empty;
		torn += workers[i].torn;
	}
	diag("memcpy-large/%s: %ld items of %zu bytes moved, %ld pops found an empty buffer",
	     mode_name(mode), moved, (size_t)BIG_COPY_LEN, empty);
	ok(torn == 0, "memcpy-large/%s: every popped copy complete (%ld torn)", mode_name(mode), torn);
	ok(sum == expect_sum && count == total && dup == 0 && corrupt == 0 && overflow == 0,
	   "memcpy-large/%s: sum %ld == %ld, %d items == %d, %d duplicated, %d corrupt, %d bad offsets",
	   mode_name(mode), (long)sum, (long)expect_sum, count, total, dup, corrupt, overflow);
	free(bbuffers);
	free(found);
}

/* ------------------------------------------------------------------ */

static const char *opt_workloads;	/* comma-separated names; NULL: all */

static bool selected(const char *name)
{
	size_t len = strlen(name);

	if (!opt_workloads)
		return true;
	for (const char *p = opt_workloads; *p; ) {
		size_t n = strcspn(p, ",");

		if (n == len && !strncmp(p, name, len))
			return true;
		p += n + (p[n] == ',');
	}
	return false;
}

static const struct {
	const char *name;
	void (*fn)(enum rseq_percpu_mode mode);
} workloads[] = {
	{ "counter", test_counter },
	{ "spinlock", test_spinlock },
	{ "list", test_list },
	{ "buffer", test_buffer },
	{ "memcpy", test_memcpy },
	{ "memcpy-large", test_big_memcpy },
};

static void run_mode(enum rseq_percpu_mode mode)
{
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
		if (selected(workloads[i].name))
			workloads[i].fn(mode);
}

static void usage(const char *argv0)
{
	printf("usage: %s [-T threads] [-r scale%%] [-y yield 1/N] [-s sleep every N] "
	       "[-m migrate every N] [-k signal interval us] [-p preempter interval us] "
	       "[-t timeout s] [-w workload,...] [-v]\n"
	       "workloads: counter, spinlock, list, buffer, memcpy, memcpy-large (default: all)\n", argv0);
}

static unsigned int parse_uint(const char *s, const char *argv0)
{
	char *end;
	long v = strtol(s, &end, 0);

	if (*s == '\0' || *end != '\0' || v < 0 || v > 1000000000L) {
		usage(argv0);
		exit(2);
	}
	return (unsigned int)v;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	int c;

	while ((c = getopt(argc, argv, "T:r:y:s:m:k:p:t:w:vh")) != -1) {
		switch (c) {
		case 'T': opt_threads = (int)parse_uint(optarg, argv[0]); break;
		case 'r': opt_scale = parse_uint(optarg, argv[0]); break;
		case 'y': opt_yield = parse_uint(optarg, argv[0]); break;
		case 's': opt_sleep = parse_uint(optarg, argv[0]); break;
		case 'm': opt_migrate = parse_uint(optarg, argv[0]); break;
		case 'k': opt_signal_us = parse_uint(optarg, argv[0]); break;
		case 'p': opt_preempt_us = parse_uint(optarg, argv[0]); break;
		case 't': opt_timeout = parse_uint(optarg, argv[0]); break;
		case 'w': opt_workloads = optarg; break;
		case 'v': opt_verbose = true; break;
		default:
			usage(argv[0]);
			return c == 'h' ? 0 : 2;
		}
	}

	plan_no_plan();
	if (!rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL))
		bail_out("this kernel has no rseq");

	max_nr_cpus = rseq_get_max_nr_cpus();
	if (max_nr_cpus <= 0)
		bail_out("rseq_get_max_nr_cpus() = %d", max_nr_cpus);
	if (sched_getaffinity(0, sizeof(allowed_cpus), &allowed_cpus))
		bail_out("sched_getaffinity failed");
	for (int i = 0; i < CPU_SETSIZE; i++) {
		if (!CPU_ISSET(i, &allowed_cpus))
			continue;
		if (i >= max_nr_cpus)
			bail_out("allowed CPU %d >= rseq_get_max_nr_cpus() %d", i, max_nr_cpus);
		allowed_list[nr_allowed++] = i;
	}
	nr_threads = opt_threads ? opt_threads : 6 * (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nr_threads <= 0)
		nr_threads = 6;
	workers = calloc(nr_threads, sizeof(*workers));
	if (!workers)
		bail_out("out of memory");

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = sigusr1_handler;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL))
		bail_out("sigaction(SIGUSR1) failed");
	sa.sa_handler = sigalrm_handler;
	sa.sa_flags = 0;
	if (sigaction(SIGALRM, &sa, NULL))
		bail_out("sigaction(SIGALRM) failed");

	diag("%d threads, %d possible CPUs (rseq_get_max_nr_cpus), %d allowed; glibc owns registration: %d; "
	     "rseq_size %u", nr_threads, max_nr_cpus, nr_allowed,
	     rseq_available(RSEQ_AVAILABLE_QUERY_LIBC), rseq_size);
	if (opt_verbose)
		diag("scale %ld%%, yield 1/%u, sleep every %u, migrate every %u, signal every %u us, "
		     "preempter every %u us", opt_scale, opt_yield, opt_sleep, opt_migrate, opt_signal_us,
		     opt_preempt_us);

	run_mode(RSEQ_PERCPU_CPU_ID);
	/* Queried after threads registered: rseq_size may be 0 until then. */
	if (rseq_mm_cid_available())
		run_mode(RSEQ_PERCPU_MM_CID);
	else
		skip(1, "no mm_cid (rseq_size too small): MM_CID mode not tested");

	if (opt_signal_us)
		ok(sig_delivered_total > 0, "SIGUSR1 delivered to workers %lu times", sig_delivered_total);
	return exit_status();
}
