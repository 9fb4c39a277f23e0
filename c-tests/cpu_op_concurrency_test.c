/* SPDX-License-Identifier: MIT */
/*
 * cpu-op under concurrency: rseq fast paths and cpu-ops (on the caller's
 * own CPU and on other CPUs) mixed on the SAME per-CPU data, by 6 threads
 * per online CPU, with disturbances, each workload ending with an exact
 * check:
 *
 *   counters  rseq_addv, cpu_op_addv on the own CPU, cpu_op_addv on
 *             another CPU (round-robin over the possible CPUs), percpu_addv:
 *             the sum is exact
 *   lists     per-CPU linked lists: pop with rseq_cmpnev_storeoffp_load or
 *             cpu_op_cmpnev_storeoffp_load (own / other CPU), push with
 *             rseq_cmpeqv_storev or cpu_op_cmpeqv_storev: every node is
 *             found exactly once at the end, the data sum is unchanged
 *   buffers   per-CPU arrays + count: push with
 *             rseq_cmpeqv_trystorev_storev(_release) or
 *             cpu_op_cmpeqv_storev_storev(_release), pop with
 *             rseq_cmpeqv_cmpeqv_storev or cpu_op_cmpeqv_cmpeqv_storev:
 *             same checks
 *   vectors   writers run cpu_opv() vectors [a == b?, a += 1, 13 x MB,
 *             b += 1] on per-CPU words a[c], b[c]; readers on CPU c run
 *             rseq sections that read a[c] then b[c] (load_cbne_load_cbne
 *             and a load_cbne_memcpy copying both) and commit a store:
 *             no committed section and no vector may ever see a != b,
 *             and a[c] == b[c] == the number of vectors run on c. Two
 *             calibration runs show that the readers do catch a torn
 *             update: by a plain (non-atomic) writer, and by a writer
 *             that takes the CPU's cpu-op ownership word but skips the
 *             fence (the subtle way to get a cpu-op wrong).
 *
 * Disturbances: random sched_yield(), 1 us sleeps, odd threads migrating
 * with sched_setaffinity(), and a thread sending SIGUSR1 to every worker
 * every 100 us; the handler counts, and adds 1 to a per-CPU counter with
 * one rseq_addv attempt (the total of those is checked too).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/cpu_opv.h>	/* through pkg-config libcpu-op */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>
#include <rseq/percpu-op.h>

#include "tap.h"

#define SLOT		128
#define ALIGNED		__attribute__((aligned(SLOT)))
#define READ_ONCE(x)	__atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

#define REPS_COUNTER	20000
#define REPS_LIST	8000
#define REPS_BUFFER	8000
#define VECTORS		15000	/* per writer thread */
#define NODES_PER_CPU	64
#define MAX_ABORTS	20000000L	/* consecutive aborts before giving up */
/* Each calibration run stops at its first torn observation (usually within
 * 0.5 s); the unfenced-owner one depends on a few-ns race and once took
 * longer than 5 s under ASan on a loaded 2-vCPU machine. */
#define CALIBRATION_NS	15000000000LL

struct word {
	intptr_t v;
} ALIGNED;

static int max_cpus, nr_online, nr_threads;
static cpu_set_t allowed;
static int allowed_list[CPU_SETSIZE], nr_allowed;

struct worker {
	pthread_t thread;
	int id;
	pid_t tid;
	uint32_t rng;
	long method[6];		/* how many operations each method did */
	long errors;		/* unexpected results */
	long aborts;		/* rseq attempts that aborted */
	long migrations, yields, sleeps;
	long sig_received, sig_adds;
	long extra[4];		/* workload-specific */
	void *arg;
};

static struct worker *workers;
static int nr_workers;
static int workers_running;

/* Totals over all phases. */
static long total_sig_received, total_sig_adds, total_migrations, total_errors;
static long total_sig_sent;
static struct word *sig_counter;	/* per CPU, incremented by the handler */

static __thread long tls_sig_received, tls_sig_adds;

static void on_sigusr1(int sig)
{
	int saved = errno;

	(void)sig;
	tls_sig_received++;
	/* One rseq attempt on the current CPU, from inside the handler:
	 * aborted when it interrupts nothing special, or when a cpu-op owns
	 * the CPU; counted when committed. */
	if (rseq_current_cpu_raw() >= 0) {
		int cpu = (int)rseq_cpu_start();

		if (rseq_addv(&sig_counter[cpu].v, 1, cpu) == 0)
			tls_sig_adds++;
	}
	errno = saved;
}

static uint32_t rnd(struct worker *w)
{
	uint32_t x = w->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	w->rng = x;
	return x;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct word *alloc_words(int n)
{
	struct word *w = aligned_alloc(SLOT, (size_t)n * sizeof(*w));

	if (!w)
		bail_out("out of memory");
	memset(w, 0, (size_t)n * sizeof(*w));
	return w;
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		bail_out("sched_setaffinity(%d): %s", cpu, strerror(errno));
}

/* Yields, sleeps and (odd threads) migrations between operations. */
static void disturb(struct worker *w, long i)
{
	if (rnd(w) % 8 == 0) {
		sched_yield();
		w->yields++;
	}
	if ((i + w->id) % 512 == 0) {
		struct timespec ts = { 0, 1000 };

		nanosleep(&ts, NULL);
		w->sleeps++;
	}
	if (nr_allowed > 1 && (w->id & 1) && (i + 1) % 128 == 0) {
		cpu_set_t set;
		long k = (i + 1) / 128;

		if (k % 4 == 3) {
			set = allowed;
		} else {
			CPU_ZERO(&set);
			CPU_SET(allowed_list[(w->id + k) % nr_allowed], &set);
		}
		if (sched_setaffinity(0, sizeof(set), &set) == 0)
			w->migrations++;
	}
}

/* A CPU other than `cpu` (round-robin over the possible CPUs). */
static int other_cpu(struct worker *w, int cpu)
{
	if (max_cpus == 1)
		return 0;
	return (cpu + 1 + (int)(rnd(w) % (uint32_t)(max_cpus - 1))) % max_cpus;
}

/* The sender: SIGUSR1 to every running worker every 100 us. */
static void *signal_thread(void *arg)
{
	long sent = 0;

	(void)arg;
	while (__atomic_load_n(&workers_running, __ATOMIC_ACQUIRE) > 0) {
		struct timespec ts = { 0, 100000 };

		for (int i = 0; i < nr_workers; i++) {
			pid_t tid = __atomic_load_n(&workers[i].tid, __ATOMIC_ACQUIRE);

			/* tgkill on an exited thread fails with ESRCH. */
			if (tid > 0 && syscall(SYS_tgkill, getpid(), tid, SIGUSR1) == 0)
				sent++;
		}
		nanosleep(&ts, NULL);
	}
	__atomic_fetch_add(&total_sig_sent, sent, __ATOMIC_RELAXED);
	return NULL;
}

static void worker_begin(struct worker *w)
{
	__atomic_store_n(&w->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
}

static void worker_end(struct worker *w)
{
	sigset_t set;

	/* No handler may run after its counts were collected. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	w->sig_received = tls_sig_received;
	w->sig_adds = tls_sig_adds;
	__atomic_store_n(&w->tid, 0, __ATOMIC_RELEASE);
	sched_setaffinity(0, sizeof(allowed), &allowed);
	__atomic_fetch_sub(&workers_running, 1, __ATOMIC_RELEASE);
}

/* Runs n workers of fn (with the signal thread), then sums their
 * statistics into the totals. Returns the workers (valid until the next
 * phase). */
static struct worker *run_phase(const char *name, void *(*fn)(void *), int n, void *arg, bool signals)
{
	pthread_t sender;
	long long t0 = now_ns();

	free(workers);
	workers = calloc((size_t)n, sizeof(*workers));
	if (!workers)
		bail_out("out of memory");
	nr_workers = n;
	workers_running = n;
	for (int i = 0; i < n; i++) {
		workers[i].id = i;
		workers[i].rng = 0x9e3779b9u * (uint32_t)(i + 1) ^ (uint32_t)t0;
		if (!workers[i].rng)
			workers[i].rng = 1;
		workers[i].arg = arg;
	}
	for (int i = 0; i < n; i++)
		if (pthread_create(&workers[i].thread, NULL, fn, &workers[i]))
			bail_out("pthread_create");
	if (signals && pthread_create(&sender, NULL, signal_thread, NULL))
		bail_out("pthread_create");
	for (int i = 0; i < n; i++)
		pthread_join(workers[i].thread, NULL);
	if (signals)
		pthread_join(sender, NULL);
	for (int i = 0; i < n; i++) {
		total_sig_received += workers[i].sig_received;
		total_sig_adds += workers[i].sig_adds;
		total_migrations += workers[i].migrations;
		total_errors += workers[i].errors;
	}
	diag("%s: %d threads, %.2f s", name, n, (double)(now_ns() - t0) / 1e9);
	return workers;
}

static long sum_method(const struct worker *ws, int n, int m)
{
	long s = 0;

	for (int i = 0; i < n; i++)
		s += ws[i].method[m];
	return s;
}

static long sum_field(const struct worker *ws, int n, size_t off)
{
	long s = 0;

	for (int i = 0; i < n; i++)
		s += *(const long *)((const char *)&ws[i] + off);
	return s;
}

#define SUM(ws, n, field) sum_field(ws, n, offsetof(struct worker, field))

/* ------------------------------------------------------------------ */
/* Counters */

static struct word *counters;

static void *counter_worker(void *arg)
{
	struct worker *w = arg;

	worker_begin(w);
	for (long i = 0; i < REPS_COUNTER; i++) {
		int m = (int)(rnd(w) % 4), ret, c;
		long aborts = 0;

		switch (m) {
		case 0:		/* rseq fast path on the current CPU */
			for (;;) {
				c = (int)rseq_cpu_start();
				if (rseq_addv(&counters[c].v, 1, c) == 0)
					break;
				w->aborts++;
				if (++aborts > MAX_ABORTS) {
					w->errors++;
					goto next;
				}
			}
			break;
		case 1:		/* cpu-op on the own CPU */
			c = cpu_op_get_current_cpu();
			ret = cpu_op_addv(&counters[c].v, 1, c);
			if (ret) {
				w->errors++;
				goto next;
			}
			break;
		case 2:		/* cpu-op on another CPU */
			c = other_cpu(w, cpu_op_get_current_cpu());
			ret = cpu_op_addv(&counters[c].v, 1, c);
			if (ret) {
				w->errors++;
				goto next;
			}
			break;
		default:	/* percpu wrapper */
			do {
				c = percpu_current_cpu();
				ret = percpu_addv(&counters[c].v, 1, c);
			} while (ret < 0 && errno == EAGAIN);
			if (ret) {
				w->errors++;
				goto next;
			}
			break;
		}
		w->method[m]++;
next:
		disturb(w, i);
	}
	worker_end(w);
	return NULL;
}

static void test_counters(void)
{
	struct worker *ws;
	long sum = 0, expect = (long)nr_threads * REPS_COUNTER;

	counters = alloc_words(max_cpus);
	ws = run_phase("counters", counter_worker, nr_threads, NULL, true);
	for (int c = 0; c < max_cpus; c++)
		sum += counters[c].v;
	diag("counters: rseq %ld (aborts %ld), cpu_op own %ld, cpu_op other %ld, percpu %ld",
	     sum_method(ws, nr_threads, 0), SUM(ws, nr_threads, aborts), sum_method(ws, nr_threads, 1),
	     sum_method(ws, nr_threads, 2), sum_method(ws, nr_threads, 3));
	ok(SUM(ws, nr_threads, errors) == 0, "counters: no operation failed (%ld)", SUM(ws, nr_threads, errors));
	ok(sum == expect, "counters: exact total %ld (expected %ld)", sum, expect);
	ok(sum_method(ws, nr_threads, 0) > 0 && sum_method(ws, nr_threads, 1) > 0 &&
	   sum_method(ws, nr_threads, 2) > 0 && sum_method(ws, nr_threads, 3) > 0,
	   "counters: every method was used");
	free(counters);
}

/* ------------------------------------------------------------------ */
/* Lists */

struct node {
	struct node *next;
	intptr_t data;
	long id;
	long seen;
};

static struct word *list_heads;
static struct node *nodes;
static long nr_nodes;

#define NEXT_OFF ((off_t)offsetof(struct node, next))

/* Pops a node with method m (0 rseq, 1 cpu-op own CPU, 2 cpu-op other
 * CPU): the node, or NULL when the chosen list was empty. */
static struct node *list_pop(struct worker *w, int m)
{
	intptr_t load = 0;
	int ret, c;
	long aborts = 0;

	switch (m) {
	case 0:
		for (;;) {
			c = (int)rseq_cpu_start();
			ret = rseq_cmpnev_storeoffp_load(&list_heads[c].v, 0, NEXT_OFF, &load, c);
			if (ret >= 0)
				break;
			w->aborts++;
			if (++aborts > MAX_ABORTS) {
				w->errors++;
				return NULL;
			}
		}
		break;
	default:
		c = cpu_op_get_current_cpu();
		if (m == 2)
			c = other_cpu(w, c);
		do
			ret = cpu_op_cmpnev_storeoffp_load(&list_heads[c].v, 0, NEXT_OFF, &load, c);
		while (ret < 0 && errno == EAGAIN);
		break;
	}
	if (ret == 1) {
		w->extra[0]++;		/* empty */
		return NULL;
	}
	if (ret != 0) {
		w->errors++;
		return NULL;
	}
	w->method[m]++;
	return (struct node *)load;
}

static void list_push(struct worker *w, struct node *n, int m)
{
	int ret, c;
	long aborts = 0;

	switch (m) {
	case 0:
		for (;;) {
			intptr_t expect;

			c = (int)rseq_cpu_start();
			expect = READ_ONCE(list_heads[c].v);
			n->next = (struct node *)expect;
			ret = rseq_cmpeqv_storev(&list_heads[c].v, expect, (intptr_t)n, c);
			if (ret == 0)
				break;
			if (ret < 0)
				w->aborts++;
			if (++aborts > MAX_ABORTS) {
				w->errors++;
				return;
			}
		}
		break;
	default:
		c = cpu_op_get_current_cpu();
		if (m == 2)
			c = other_cpu(w, c);
		for (;;) {
			intptr_t expect = READ_ONCE(list_heads[c].v);

			n->next = (struct node *)expect;
			ret = cpu_op_cmpeqv_storev(&list_heads[c].v, expect, (intptr_t)n, c);
			if (ret == 0)
				break;
			if (ret != 1) {
				w->errors++;
				return;
			}
		}
		break;
	}
	w->method[3 + m]++;
}

static void *list_worker(void *arg)
{
	struct worker *w = arg;

	worker_begin(w);
	for (long i = 0; i < REPS_LIST; i++) {
		struct node *n = list_pop(w, (int)(rnd(w) % 3));

		if (n) {
			if (rnd(w) % 16 == 0)
				sched_yield();
			list_push(w, n, (int)(rnd(w) % 3));
		}
		disturb(w, i);
	}
	worker_end(w);
	return NULL;
}

/* Marks every node reachable from the per-CPU heads; checks each is a
 * node of ours, found once; returns the data sum. */
static bool check_nodes_found_once(const char *what, intptr_t data_sum)
{
	long lost = 0, dup = 0;
	intptr_t sum = 0;

	for (long i = 0; i < nr_nodes; i++) {
		if (nodes[i].seen == 0)
			lost++;
		else if (nodes[i].seen > 1)
			dup++;
		sum += nodes[i].data * nodes[i].seen;
	}
	ok(lost == 0 && dup == 0, "%s: every node found exactly once (%ld lost, %ld duplicated)", what, lost, dup);
	ok(sum == data_sum, "%s: data sum unchanged (%ld, expected %ld)", what, (long)sum, (long)data_sum);
	return lost == 0 && dup == 0 && sum == data_sum;
}

static intptr_t init_nodes(void)
{
	intptr_t sum = 0;

	nr_nodes = (long)NODES_PER_CPU * max_cpus;
	nodes = calloc((size_t)nr_nodes, sizeof(*nodes));
	if (!nodes)
		bail_out("out of memory");
	for (long i = 0; i < nr_nodes; i++) {
		nodes[i].id = i;
		nodes[i].data = (intptr_t)(i * 7 + 1);
		sum += nodes[i].data;
	}
	return sum;
}

static bool is_node(intptr_t p)
{
	uintptr_t a = (uintptr_t)p, base = (uintptr_t)nodes;

	return a >= base && a < base + (uintptr_t)nr_nodes * sizeof(struct node) &&
	       (a - base) % sizeof(struct node) == 0;
}

static void test_lists(void)
{
	struct worker *ws;
	intptr_t data_sum = init_nodes();
	long foreign = 0;

	list_heads = alloc_words(max_cpus);
	for (long i = 0; i < nr_nodes; i++) {
		int c = (int)(i % max_cpus);

		nodes[i].next = (struct node *)list_heads[c].v;
		list_heads[c].v = (intptr_t)&nodes[i];
	}
	ws = run_phase("lists", list_worker, nr_threads, NULL, true);
	for (int c = 0; c < max_cpus; c++) {
		long steps = 0;

		for (intptr_t p = list_heads[c].v; p; p = (intptr_t)((struct node *)p)->next) {
			if (!is_node(p) || ++steps > nr_nodes + 1) {
				foreign++;
				break;
			}
			((struct node *)p)->seen++;
		}
	}
	diag("lists: pops rseq %ld / cpu_op own %ld / other %ld; pushes rseq %ld / own %ld / other %ld; empty %ld, aborts %ld",
	     sum_method(ws, nr_threads, 0), sum_method(ws, nr_threads, 1), sum_method(ws, nr_threads, 2),
	     sum_method(ws, nr_threads, 3), sum_method(ws, nr_threads, 4), sum_method(ws, nr_threads, 5),
	     SUM(ws, nr_threads, extra[0]), SUM(ws, nr_threads, aborts));
	ok(SUM(ws, nr_threads, errors) == 0, "lists: no operation failed (%ld)", SUM(ws, nr_threads, errors));
	ok(foreign == 0, "lists: every list is a well-formed chain of our nodes");
	ok(sum_method(ws, nr_threads, 0) + sum_method(ws, nr_threads, 1) + sum_method(ws, nr_threads, 2) ==
	   sum_method(ws, nr_threads, 3) + sum_method(ws, nr_threads, 4) + sum_method(ws, nr_threads, 5),
	   "lists: as many pushes as pops");
	check_nodes_found_once("lists", data_sum);
	free(list_heads);
	free(nodes);
}

/* ------------------------------------------------------------------ */
/* Buffers */

struct buffer {
	intptr_t offset;
	intptr_t *array;
} ALIGNED;

static struct buffer *buffers;
static intptr_t buffer_cap;

static struct node *buffer_pop(struct worker *w, int m)
{
	long aborts = 0;

	for (;;) {
		int c, ret;
		intptr_t off, head;
		struct buffer *b;

		if (m == 0)
			c = (int)rseq_cpu_start();
		else
			c = cpu_op_get_current_cpu();
		if (m == 2)
			c = other_cpu(w, c);
		b = &buffers[c];
		off = READ_ONCE(b->offset);
		if (off == 0) {
			w->extra[0]++;
			return NULL;
		}
		head = READ_ONCE(b->array[off - 1]);
		if (m == 0)
			ret = rseq_cmpeqv_cmpeqv_storev(&b->offset, off, &b->array[off - 1], head, off - 1, c);
		else
			ret = cpu_op_cmpeqv_cmpeqv_storev(&b->offset, off, &b->array[off - 1], head, off - 1, c);
		if (ret == 0) {
			w->method[m]++;
			return (struct node *)head;
		}
		if (ret < 0 && m != 0) {
			w->errors++;
			return NULL;
		}
		if (ret < 0)
			w->aborts++;
		if (ret > 2 || ++aborts > MAX_ABORTS) {
			w->errors++;
			return NULL;
		}
	}
}

static void buffer_push(struct worker *w, struct node *n, int m)
{
	long aborts = 0;

	for (;;) {
		int c, ret;
		bool release = rnd(w) & 1;
		intptr_t off;
		struct buffer *b;

		if (m == 0)
			c = (int)rseq_cpu_start();
		else
			c = cpu_op_get_current_cpu();
		if (m == 2)
			c = other_cpu(w, c);
		b = &buffers[c];
		off = READ_ONCE(b->offset);
		if (off == buffer_cap) {
			w->errors++;	/* cannot happen: room for every node */
			return;
		}
		if (m == 0)
			ret = release ?
				rseq_cmpeqv_trystorev_storev_release(&b->offset, off, &b->array[off], (intptr_t)n, off + 1, c) :
				rseq_cmpeqv_trystorev_storev(&b->offset, off, &b->array[off], (intptr_t)n, off + 1, c);
		else
			ret = release ?
				cpu_op_cmpeqv_storev_storev_release(&b->offset, off, &b->array[off], (intptr_t)n, off + 1, c) :
				cpu_op_cmpeqv_storev_storev(&b->offset, off, &b->array[off], (intptr_t)n, off + 1, c);
		if (ret == 0) {
			w->method[3 + m]++;
			if (release)
				w->extra[1]++;
			return;
		}
		if (ret < 0 && m != 0) {
			w->errors++;
			return;
		}
		if (ret < 0)
			w->aborts++;
		if (ret > 1 || ++aborts > MAX_ABORTS) {
			w->errors++;
			return;
		}
	}
}

static void *buffer_worker(void *arg)
{
	struct worker *w = arg;

	worker_begin(w);
	for (long i = 0; i < REPS_BUFFER; i++) {
		struct node *n = buffer_pop(w, (int)(rnd(w) % 3));

		if (n) {
			if (rnd(w) % 16 == 0)
				sched_yield();
			buffer_push(w, n, (int)(rnd(w) % 3));
		}
		disturb(w, i);
	}
	worker_end(w);
	return NULL;
}

static void test_buffers(void)
{
	struct worker *ws;
	intptr_t data_sum = init_nodes();
	long foreign = 0;

	buffer_cap = nr_nodes;
	buffers = aligned_alloc(SLOT, (size_t)max_cpus * sizeof(*buffers));
	if (!buffers)
		bail_out("out of memory");
	for (int c = 0; c < max_cpus; c++) {
		buffers[c].offset = 0;
		buffers[c].array = calloc((size_t)buffer_cap, sizeof(intptr_t));
		if (!buffers[c].array)
			bail_out("out of memory");
	}
	for (long i = 0; i < nr_nodes; i++) {
		struct buffer *b = &buffers[i % max_cpus];

		b->array[b->offset++] = (intptr_t)&nodes[i];
	}
	ws = run_phase("buffers", buffer_worker, nr_threads, NULL, true);
	for (int c = 0; c < max_cpus; c++) {
		if (buffers[c].offset < 0 || buffers[c].offset > buffer_cap) {
			foreign++;
			continue;
		}
		for (intptr_t k = 0; k < buffers[c].offset; k++) {
			if (!is_node(buffers[c].array[k])) {
				foreign++;
				continue;
			}
			((struct node *)buffers[c].array[k])->seen++;
		}
	}
	diag("buffers: pops rseq %ld / cpu_op own %ld / other %ld; pushes rseq %ld / own %ld / other %ld (%ld release); empty %ld, aborts %ld",
	     sum_method(ws, nr_threads, 0), sum_method(ws, nr_threads, 1), sum_method(ws, nr_threads, 2),
	     sum_method(ws, nr_threads, 3), sum_method(ws, nr_threads, 4), sum_method(ws, nr_threads, 5),
	     SUM(ws, nr_threads, extra[1]), SUM(ws, nr_threads, extra[0]), SUM(ws, nr_threads, aborts));
	ok(SUM(ws, nr_threads, errors) == 0, "buffers: no operation failed (%ld)", SUM(ws, nr_threads, errors));
	ok(foreign == 0, "buffers: every slot holds one of our nodes");
	ok(sum_method(ws, nr_threads, 0) + sum_method(ws, nr_threads, 1) + sum_method(ws, nr_threads, 2) ==
	   sum_method(ws, nr_threads, 3) + sum_method(ws, nr_threads, 4) + sum_method(ws, nr_threads, 5),
	   "buffers: as many pushes as pops");
	check_nodes_found_once("buffers", data_sum);
	for (int c = 0; c < max_cpus; c++)
		free(buffers[c].array);
	free(buffers);
	free(nodes);
}

/* ------------------------------------------------------------------ */
/* Vectors: atomicity with respect to critical sections */

struct pair {
	intptr_t a;
	char pad_a[SLOT - sizeof(intptr_t)];
	intptr_t b;
	char pad_b[SLOT - sizeof(intptr_t)];
} ALIGNED;

#define PAIR_SPAN (offsetof(struct pair, b) + sizeof(intptr_t))

static struct pair *pairs;
static long *vectors_done;		/* per CPU */
static int writers_running;
static bool plain_writer;		/* calibration: non-atomic writer */
static bool fake_owner;			/* ... that takes the ownership word */
static long long calibration_deadline;
static long torn_seen;			/* calibration: readers saw a != b */

/* Readers: ids < nr_readers; writers after. */
static int nr_readers;

static void build_vector(struct cpu_op *ops, struct pair *p)
{
	memset(ops, 0, 16 * sizeof(*ops));
	ops[0].op = CPU_COMPARE_EQ_OP;
	ops[0].len = sizeof(intptr_t);
	ops[0].u.compare_op.a = (uintptr_t)&p->a;
	ops[0].u.compare_op.b = (uintptr_t)&p->b;
	ops[1].op = CPU_ADD_OP;
	ops[1].len = sizeof(intptr_t);
	ops[1].u.arithmetic_op.p = (uintptr_t)&p->a;
	ops[1].u.arithmetic_op.count = 1;
	for (int k = 2; k < 15; k++)
		ops[k].op = CPU_MB_OP;
	ops[15].op = CPU_ADD_OP;
	ops[15].len = sizeof(intptr_t);
	ops[15].u.arithmetic_op.p = (uintptr_t)&p->b;
	ops[15].u.arithmetic_op.count = 1;
}

/* The same update, torn: what a vector would do without the guarantee. */
static void plain_update(struct pair *p)
{
	__atomic_fetch_add(&p->a, 1, __ATOMIC_SEQ_CST);
	for (int k = 0; k < 13; k++)
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	__atomic_fetch_add(&p->b, 1, __ATOMIC_SEQ_CST);
}

static void *vector_reader(void *arg)
{
	struct worker *w = arg;
	long i = 0;

	worker_begin(w);
	if (plain_writer || (w->id & 1) == 0)
		pin(allowed_list[w->id % nr_allowed]);
	while (__atomic_load_n(&writers_running, __ATOMIC_ACQUIRE) > 0) {
		int c = (int)rseq_cpu_start(), ret;
		struct pair *p = &pairs[c];
		intptr_t x = READ_ONCE(p->a), y = READ_ONCE(p->b);

		if (rnd(w) & 1) {
			/* Compare a == x then b == y, commit a = x. */
			ret = rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID,
								  &p->a, x, &p->b, y, x, c);
			if (ret == 0) {
				w->method[0]++;
				if (x != y)
					w->extra[0]++;	/* torn */
			}
		} else {
			/* Compare a == x, copy a..b, commit a = x. */
			struct pair copy;

			ret = rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID,
							       &p->a, x, &copy, p, PAIR_SPAN, x, c);
			if (ret == 0) {
				w->method[1]++;
				if (copy.a != copy.b || copy.a != x)
					w->extra[0]++;	/* torn */
			}
		}
		if (ret < 0)
			w->aborts++;
		else if (ret == 1)
			w->extra[1]++;		/* compare failed */
		if (!plain_writer && ++i % 64 == 0)
			disturb(w, i / 64);
		if (plain_writer && (w->extra[0] || now_ns() > calibration_deadline))
			break;
	}
	if (plain_writer && w->extra[0])
		__atomic_fetch_add(&torn_seen, w->extra[0], __ATOMIC_RELAXED);
	worker_end(w);
	return NULL;
}

static void *vector_writer(void *arg)
{
	struct worker *w = arg;
	struct cpu_op ops[16];
	long *done = calloc((size_t)max_cpus, sizeof(long));
	int home = allowed_list[(w->id + 1) % nr_allowed];

	if (!done)
		bail_out("out of memory");
	worker_begin(w);
	pin(home);
	if (plain_writer) {
		/* Torn updates on the readers' CPUs until one is seen. */
		while (!__atomic_load_n(&torn_seen, __ATOMIC_RELAXED) && now_ns() < calibration_deadline) {
			for (int k = 0; k < nr_allowed; k++) {
				int c = allowed_list[k];

				if (c == home && nr_allowed > 1)
					continue;
				if (fake_owner) {
					/* Take c's cpu-op ownership word (library
					 * ABI, as the inline sections read it), but
					 * skip the fence: sections that loaded the
					 * word just before may still commit. */
					uint32_t *word = (uint32_t *)rseq_cpu_op_owner_word(c, RSEQ_CPU_OP_WORD_CPU_ID);

					__atomic_store_n(word, 1, __ATOMIC_SEQ_CST);
					plain_update(&pairs[c]);
					__atomic_store_n(word, 0, __ATOMIC_RELEASE);
				} else {
					plain_update(&pairs[c]);
				}
				done[c]++;
			}
		}
	} else {
		for (long i = 0; i < VECTORS; i++) {
			int c, ret;

			/* Mostly another CPU (readers pinned there), sometimes
			 * the own one, sometimes any possible CPU. */
			switch (rnd(w) % 4) {
			case 0:
				c = cpu_op_get_current_cpu();
				break;
			case 1:
				c = (int)(rnd(w) % (uint32_t)max_cpus);
				break;
			default:
				c = other_cpu(w, cpu_op_get_current_cpu());
			}
			build_vector(ops, &pairs[c]);
			ret = cpu_opv(ops, 16, c, 0);
			if (ret == 0) {
				done[c]++;
				w->method[2]++;
			} else if (ret == 1) {
				w->extra[2]++;	/* saw a != b */
			} else {
				w->errors++;
			}
			if ((i + 1) % 256 == 0 && nr_allowed > 1) {
				/* Change home now and then. */
				home = allowed_list[(w->id + 1 + (i + 1) / 256) % nr_allowed];
				pin(home);
				w->migrations++;
			}
			if (rnd(w) % 8 == 0)
				sched_yield();
		}
	}
	for (int c = 0; c < max_cpus; c++)
		__atomic_fetch_add(&vectors_done[c], done[c], __ATOMIC_RELAXED);
	free(done);
	__atomic_fetch_sub(&writers_running, 1, __ATOMIC_RELEASE);
	worker_end(w);
	return NULL;
}

static void *vector_worker(void *arg)
{
	struct worker *w = arg;

	return w->id < nr_readers ? vector_reader(w) : vector_writer(w);
}

static void reset_pairs(void)
{
	memset(pairs, 0, (size_t)max_cpus * sizeof(*pairs));
	memset(vectors_done, 0, (size_t)max_cpus * sizeof(long));
}

/* The check has teeth: a writer doing the same two additions without a
 * cpu-op is caught by the readers; so is one that takes the target's
 * ownership word like a cpu-op but skips the fence (the subtle way to
 * get cpu-ops wrong). Each runs until the first torn observation. */
static void test_vector_calibration(void)
{
	static const char *const names[2] = {
		"a plain (non-atomic) writer",
		"a writer taking the ownership word without a fence",
	};

	if (nr_allowed < 2) {
		skip(2, "one usable CPU: a torn writer cannot run beside the readers");
		return;
	}
	for (int k = 0; k < 2; k++) {
		struct worker *ws;
		char label[128];

		reset_pairs();
		plain_writer = true;
		fake_owner = k == 1;
		torn_seen = 0;
		calibration_deadline = now_ns() + CALIBRATION_NS;
		nr_readers = nr_allowed * 2;
		writers_running = 1;
		snprintf(label, sizeof(label), "vector calibration (%s)", names[k]);
		ws = run_phase(label, vector_worker, nr_readers + 1, NULL, false);
		diag("calibration: reader commits %ld, aborts %ld, compare failures %ld",
		     sum_method(ws, nr_readers, 0) + sum_method(ws, nr_readers, 1), SUM(ws, nr_readers, aborts),
		     SUM(ws, nr_readers, extra[1]));
		plain_writer = false;
		fake_owner = false;
		ok(torn_seen > 0, "calibration: readers catch %s (%ld torn observations)", names[k], torn_seen);
	}
}

static void test_vectors(void)
{
	struct worker *ws;
	long commits, torn, vec_torn, done = 0;
	int mismatch = 0, n = nr_threads;

	reset_pairs();
	nr_readers = n / 2;
	writers_running = n - nr_readers;
	ws = run_phase("vectors", vector_worker, n, NULL, true);
	commits = sum_method(ws, n, 0) + sum_method(ws, n, 1);
	torn = SUM(ws, n, extra[0]);
	vec_torn = SUM(ws, n, extra[2]);
	for (int c = 0; c < max_cpus; c++) {
		done += vectors_done[c];
		if (pairs[c].a != vectors_done[c] || pairs[c].b != vectors_done[c]) {
			diag("cpu %d: a %ld, b %ld, vectors %ld", c, (long)pairs[c].a, (long)pairs[c].b, vectors_done[c]);
			mismatch++;
		}
	}
	diag("vectors: %ld vectors; reader commits %ld (cbne_cbne %ld, memcpy %ld), compare failures %ld, aborts %ld",
	     done, commits, sum_method(ws, n, 0), sum_method(ws, n, 1), SUM(ws, n, extra[1]), SUM(ws, n, aborts));
	ok(SUM(ws, n, errors) == 0, "vectors: no cpu_opv failed (%ld)", SUM(ws, n, errors));
	ok(done == (long)(n - nr_readers) * VECTORS, "vectors: every vector ran (%ld)", done);
	ok(commits > 0, "vectors: readers committed sections on the same CPUs (%ld)", commits);
	ok(torn == 0, "vectors: no committed section saw a != b (%ld)", torn);
	ok(vec_torn == 0, "vectors: no vector saw a != b (%ld)", vec_torn);
	ok(mismatch == 0, "vectors: a[c] == b[c] == vectors run on c, for every CPU");
}

/* ------------------------------------------------------------------ */

int main(void)
{
	struct sigaction sa;
	struct cpu_op_counters cnt;
	long sig_sum = 0;
	long long t0 = now_ns();

	plan_no_plan();
	max_cpus = rseq_get_max_nr_cpus();
	nr_online = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nr_online < 1)
		nr_online = 1;
	nr_threads = 6 * nr_online;
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		bail_out("sched_getaffinity: %s", strerror(errno));
	for (int c = 0; c < CPU_SETSIZE && c < max_cpus; c++)
		if (CPU_ISSET(c, &allowed))
			allowed_list[nr_allowed++] = c;
	if (nr_allowed == 0)
		bail_out("no usable CPU below %d", max_cpus);
	diag("possible cpus %d, online %d, usable %d, threads %d, glibc owns rseq %d, cpu_op_available %d",
	     max_cpus, nr_online, nr_allowed, nr_threads, rseq_available(RSEQ_AVAILABLE_QUERY_LIBC), cpu_op_available());

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL))
		bail_out("sigaction");
	sig_counter = alloc_words(max_cpus);

	pairs = aligned_alloc(SLOT, (size_t)max_cpus * sizeof(*pairs));
	vectors_done = calloc((size_t)max_cpus, sizeof(long));
	if (!pairs || !vectors_done)
		bail_out("out of memory");

	test_counters();
	test_lists();
	test_buffers();
	test_vector_calibration();
	test_vectors();

	for (int c = 0; c < max_cpus; c++)
		sig_sum += sig_counter[c].v;
	diag("signals: %ld sent, %ld handled, %ld rseq_addv commits in handlers; %ld migrations",
	     total_sig_sent, total_sig_received, total_sig_adds, total_migrations);
	ok(total_sig_received > 0, "signals were delivered to the workers (%ld)", total_sig_received);
	ok(sig_sum == total_sig_adds, "handler counters: exact total %ld (expected %ld)", sig_sum, total_sig_adds);
	if (nr_allowed > 1)
		ok(total_migrations > 0, "workers migrated (%ld)", total_migrations);
	else
		skip(1, "one usable CPU: no migration");

	if (cpu_op_get_counters(&cnt, sizeof(cnt)) == 0)
		diag("cpu_op counters: vectors %llu, fences none %llu / own cpu %llu / membarrier cpu %llu / membarrier all %llu / migrate %llu, "
		     "waits %llu, rseq aborts %llu, fallbacks %llu",
		     (unsigned long long)cnt.vectors, (unsigned long long)cnt.fences_none,
		     (unsigned long long)cnt.fences_own_cpu, (unsigned long long)cnt.fences_membarrier_cpu,
		     (unsigned long long)cnt.fences_membarrier_all, (unsigned long long)cnt.fences_migrate,
		     (unsigned long long)cnt.waits, (unsigned long long)cnt.rseq_aborts,
		     (unsigned long long)cnt.fallbacks);
	ok(cpu_op_get_counters(&cnt, sizeof(cnt)) == 0 && cnt.vectors > 0 && cnt.fallbacks > 0,
	   "cpu_op_get_counters reports vectors and fallbacks");
	diag("total %.2f s", (double)(now_ns() - t0) / 1e9);
	return exit_status();
}
