/* SPDX-License-Identifier: MIT */
/*
 * MM_CID exclusivity: threads add to ctr[rseq_current_mm_cid()] with
 * MM_CID-mode critical sections, percpu_addv_mode(RSEQ_PERCPU_MM_CID) and
 * an MM_CID memcpy section, under yields and migrations; every total must
 * be exact.
 *
 * On a kernel that fills in mm_cid (Linux 6.3+, rseq_size >= 28) two
 * threads never hold the same id at once, so the sections commit and
 * exclude each other. On an older kernel the mm_cid field stays 0 in
 * every thread: the contract "a wrong id makes the operation abort" then
 * means every MM_CID section aborts (the test checks that none commits)
 * and the percpu_*_mode operations complete through exclusive cpu-ops.
 * Also checks what the kernel's feature size implies (Linux 6.1: no
 * AT_RSEQ_FEATURE_SIZE, feature size 20, no AT_RSEQ_ALIGN: rseq_size 20
 * and no mm_cid, registration still works).
 *
 * mm_cid_test [ITERS]: ITERS operations per thread and workload (default
 * 4000); the emulated VMs without LSE atomics pass fewer (c-tests/vm).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>
#include <rseq/percpu-op.h>

#include "tap.h"

static long iters = 4000;	/* per thread and workload */
#define YIELD_EVERY	61
#define MIGRATE_EVERY	499
#define PAYLOAD		48

struct slot {
	intptr_t count;
	intptr_t seq;
	unsigned char payload[PAYLOAD];
} __attribute__((aligned(128)));

enum workload { W_SECTION, W_PERCPU, W_MEMCPY, W_COUNT };
static const char *const names[W_COUNT] = {
	"rseq_load_add_store__ptr(MM_CID)",
	"percpu_addv_mode(MM_CID)",
	"percpu_cmpeqv_memcpy_storev_mode(MM_CID)",
};

static struct slot *slots;
static int nr_ids, nr_cpus_online;
static int have_cid;
static enum workload current;

struct worker {
	pthread_t tid;
	int idx;
	long done, committed, aborts, errors, bad_payload;
	unsigned int seed;
};

static unsigned int next_rand(unsigned int *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 16;
}

static void disturb(struct worker *w, long i)
{
	if ((i + w->idx) % YIELD_EVERY == 0)
		sched_yield();
	if ((i + w->idx) % MIGRATE_EVERY == 0 && nr_cpus_online > 1) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET((int)(next_rand(&w->seed) % (unsigned)nr_cpus_online), &set);
		/* Failure (a CPU outside our cpuset) only means no migration. */
		sched_setaffinity(0, sizeof(set), &set);
	}
}

static int cid_now(void)
{
	int cid = (int)rseq_current_mm_cid();
	return cid < nr_ids ? cid : 0;
}

static void one_section(struct worker *w)
{
	for (;;) {
		int cid = cid_now();
		if (rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_MM_CID, &slots[cid].count, 1, cid) == 0) {
			w->committed++;
			return;
		}
		w->aborts++;
		if (!have_cid) {
			/* Aborting is the contract; complete through a cpu-op. */
			if (cpu_op_addv_mode(RSEQ_PERCPU_MM_CID, &slots[cid].count, 1, cid) != 0)
				w->errors++;
			return;
		}
	}
}

static void one_percpu(struct worker *w)
{
	int cid = cid_now();
	if (percpu_addv_mode(RSEQ_PERCPU_MM_CID, &slots[cid].count, 1, cid) != 0)
		w->errors++;
}

static void one_memcpy(struct worker *w)
{
	unsigned char src[PAYLOAD];

	memset(src, (unsigned char)w->idx, sizeof(src));
	for (;;) {
		int cid = cid_now();
		intptr_t seq = __atomic_load_n(&slots[cid].seq, __ATOMIC_RELAXED);
		int r = percpu_cmpeqv_memcpy_storev_mode(RSEQ_PERCPU_MM_CID, &slots[cid].seq, seq, slots[cid].payload,
							 src, sizeof(src), seq + 1, cid);
		if (r == 0)
			return;
		if (r < 0) {
			w->errors++;
			return;
		}
		/* 1: another thread changed seq first (only a cpu-op can). */
	}
}

static void *work(void *arg)
{
	struct worker *w = arg;

	for (long i = 0; i < iters; i++) {
		switch (current) {
		case W_SECTION: one_section(w); break;
		case W_PERCPU: one_percpu(w); break;
		default: one_memcpy(w); break;
		}
		w->done++;
		disturb(w, i);
	}
	return NULL;
}

/* Every payload must be one thread's bytes, never a mix of two copies. */
static long mixed_payloads(void)
{
	long bad = 0;
	for (int i = 0; i < nr_ids; i++)
		for (int j = 1; j < PAYLOAD; j++)
			if (slots[i].payload[j] != slots[i].payload[0]) {
				bad++;
				break;
			}
	return bad;
}

int main(int argc, char **argv)
{
	if (argc > 1 && atol(argv[1]) > 0)
		iters = atol(argv[1]);
	unsigned long feature = getauxval(27 /* AT_RSEQ_FEATURE_SIZE */);
	unsigned long align = getauxval(28 /* AT_RSEQ_ALIGN */);
	int registered = rseq_current_cpu_raw() >= 0;

	plan(6 + 3 * W_COUNT);
	nr_cpus_online = (int)sysconf(_SC_NPROCESSORS_ONLN);
	nr_ids = rseq_get_max_nr_cpus();
	if (nr_ids <= 0)
		bail_out("rseq_get_max_nr_cpus() = %d", nr_ids);
	have_cid = rseq_mm_cid_available();
	diag("kernel feature size %lu (AT_RSEQ_FEATURE_SIZE %s), AT_RSEQ_ALIGN %lu, rseq_size %u, mm_cid %s, "
	     "%d ids, %d CPUs online", feature ? feature : 20, feature ? "present" : "absent", align, rseq_size,
	     have_cid ? "available" : "unavailable", nr_ids, nr_cpus_online);

	/* What the feature size implies (the Linux 6.1 case: no auxv entry). */
	unsigned int expect_size = feature ? (unsigned int)(feature < 32 ? feature : 32) : 20;
	ok(registered, "the main thread is registered (registration works without AT_RSEQ_ALIGN too)");
	ok(rseq_size == expect_size || (rseq_size > 32 && rseq_size == feature),
	   "rseq_size %u matches the kernel's feature size %lu", rseq_size, feature ? feature : 20);
	ok(have_cid == (rseq_size >= 28), "rseq_mm_cid_available() %d follows rseq_size", have_cid);
	ok(rseq_node_id_available() == (rseq_size >= 24), "rseq_node_id_available() follows rseq_size");
	if (!have_cid) {
		int cid = (int)rseq_current_mm_cid();
		intptr_t v = 0;
		int r = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_MM_CID, &v, 1, cid);
		ok(r != 0 && v == 0, "without mm_cid an MM_CID section on the id the area shows (%d) aborts (%d)", cid,
		   r);
		errno = 0;
		r = cpu_op_addv_mode(RSEQ_PERCPU_MM_CID, &v, 1, cid);
		ok(r == 0 && v == 1, "... and a cpu-op on that id completes (%d, errno %d)", r, errno);
	} else {
		ok(1, "mm_cid available: sections on the thread's id commit (checked below)");
		ok(1, "mm_cid available: cpu-ops on ids checked below");
	}

	int nthreads = 6 * (nr_cpus_online > 0 ? nr_cpus_online : 1);
	struct worker *ws = calloc((size_t)nthreads, sizeof(*ws));
	slots = zalloc_aligned(sizeof(*slots) * (size_t)nr_ids);
	if (!ws)
		bail_out("out of memory");
	for (int k = 0; k < W_COUNT; k++) {
		memset(slots, 0, sizeof(*slots) * (size_t)nr_ids);
		current = (enum workload)k;
		for (int i = 0; i < nthreads; i++) {
			memset(&ws[i], 0, sizeof(ws[i]));
			ws[i].idx = i;
			ws[i].seed = 7919u * (unsigned)(i + 1);
			if (pthread_create(&ws[i].tid, NULL, work, &ws[i]))
				bail_out("pthread_create failed");
		}
		long done = 0, committed = 0, aborts = 0, errors = 0;
		for (int i = 0; i < nthreads; i++) {
			pthread_join(ws[i].tid, NULL);
			done += ws[i].done;
			committed += ws[i].committed;
			aborts += ws[i].aborts;
			errors += ws[i].errors;
		}
		intptr_t sum = 0;
		for (int i = 0; i < nr_ids; i++)
			sum += k == W_MEMCPY ? slots[i].seq : slots[i].count;
		ok(sum == done && errors == 0, "%s: total exact (%ld of %ld, %ld lost), %ld errors, %d threads",
		   names[k], (long)sum, done, done - (long)sum, errors, nthreads);
		if (k == W_SECTION)
			ok(have_cid ? committed == done : committed == 0,
			   "%s: %ld committed sections, %ld aborts (%s)", names[k], committed, aborts,
			   have_cid ? "all commit eventually" : "none may commit without mm_cid");
		else if (k == W_MEMCPY)
			ok(mixed_payloads() == 0, "%s: no payload mixes two copies", names[k]);
		else
			ok(1, "%s: ran", names[k]);
		ok(have_cid || sum == done, "%s: %s", names[k], have_cid ? "ids were exclusive" : "fell back exactly");
	}
	free(ws);
	free(slots);
	return exit_status();
}
