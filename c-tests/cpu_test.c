/* SPDX-License-Identifier: MIT */
/*
 * CPU numbers: pinned to each allowed CPU in turn, every way of asking
 * for the current CPU (rseq_current_cpu, rseq_cpu_start,
 * rseq_current_cpu_raw, rseq_fallback_current_cpu, sched_getcpu) gives
 * that CPU, and a critical section for it commits; node_id matches
 * getcpu(); mm_cid stays below rseq_get_max_nr_cpus() and is distinct
 * between threads running at the same time; rseq_get_max_nr_cpus() is
 * the possible-CPU count from sysfs; an unregistered thread's first CPU
 * query registers it (when the library owns registration).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <rseq/rseq.h>

#include "glibc_thread.h"
#include "tap.h"

#define MAX_MM_CID_THREADS 64
#define MM_CID_ATTEMPTS 5
#define SPIN_LIMIT_S 5.0

static int libc_owns;
static int max_nr_cpus;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One past the highest CPU in /sys/devices/system/cpu/possible, or -1. */
static int sysfs_possible_count(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
	char buf[4096], *p, *end;
	long max = -1;

	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	for (p = buf; *p && *p != '\n';) {
		long a = strtol(p, &end, 10), b = a;

		if (end == p)
			return -1;
		p = end;
		if (*p == '-') {
			p++;
			b = strtol(p, &end, 10);
			if (end == p)
				return -1;
			p = end;
		}
		if (b > max)
			max = b;
		if (*p == ',')
			p++;
	}
	return max < 0 ? -1 : (int)max + 1;
}

static int pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

static int getcpu_node(unsigned int *cpu, unsigned int *node)
{
	return (int)syscall(SYS_getcpu, cpu, node, NULL);
}

/* ---------------------------------------------------------------------- */

struct mismatch {
	int count;
	char first[160];
};

static void note(struct mismatch *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct mismatch *m, const char *fmt, ...)
{
	va_list ap;

	if (m->count++)
		return;
	va_start(ap, fmt);
	vsnprintf(m->first, sizeof(m->first), fmt, ap);
	va_end(ap);
}

static void test_each_cpu(const cpu_set_t *allowed, int nallowed)
{
	struct mismatch pin = { 0 }, getcpu_m = { 0 }, cur = { 0 }, start = { 0 }, raw = { 0 }, fallback = { 0 };
	struct mismatch node = { 0 }, mmcid = { 0 }, op = { 0 };
	bool node_avail = rseq_node_id_available(), cid_avail = rseq_mm_cid_available();
	intptr_t *counters = calloc((size_t)max_nr_cpus, sizeof(*counters));

	if (!counters)
		bail_out("calloc");
	for (int c = 0; c < CPU_SETSIZE; c++) {
		int s, rc, rs, rr, fb, ret = -1;
		unsigned int gc = 0, gn = 0;

		if (!CPU_ISSET(c, allowed))
			continue;
		if (pin_to(c)) {
			note(&pin, "cpu %d: sched_setaffinity: %s", c, strerror(errno));
			continue;
		}
		s = sched_getcpu();
		rc = (int)rseq_current_cpu();
		rs = (int)rseq_cpu_start();
		rr = rseq_current_cpu_raw();
		fb = rseq_fallback_current_cpu();
		if (s != c)
			note(&getcpu_m, "cpu %d: sched_getcpu() %d", c, s);
		if (rc != c)
			note(&cur, "cpu %d: rseq_current_cpu() %d", c, rc);
		if (rs != c)
			note(&start, "cpu %d: rseq_cpu_start() %d", c, rs);
		if (rr != c)
			note(&raw, "cpu %d: rseq_current_cpu_raw() %d", c, rr);
		if (fb != s)
			note(&fallback, "cpu %d: rseq_fallback_current_cpu() %d, sched_getcpu() %d", c, fb, s);
		if (node_avail) {
			uint32_t rn = rseq_current_node_id();
			int fn = rseq_fallback_current_node();

			if (getcpu_node(&gc, &gn) || gc != (unsigned int)c || rn != gn || fn != (int)gn)
				note(&node, "cpu %d: getcpu (%u, node %u), rseq_current_node_id() %u, rseq_fallback_current_node() %d",
				     c, gc, gn, rn, fn);
		}
		if (cid_avail) {
			uint32_t cid = rseq_current_mm_cid();

			if ((int)cid >= max_nr_cpus)
				note(&mmcid, "cpu %d: mm_cid %u >= %d", c, cid, max_nr_cpus);
		}
		/* A critical section for this CPU commits (pinned: only
		 * preemption can abort it). */
		if (c < max_nr_cpus) {
			for (int i = 0; i < 1000 && ret != 0; i++)
				ret = rseq_addv(&counters[c], 1, c);
			if (ret != 0 || counters[c] != 1)
				note(&op, "cpu %d: rseq_addv ret %d, counter %ld", c, ret, (long)counters[c]);
		} else {
			note(&op, "cpu %d: not below rseq_get_max_nr_cpus() %d", c, max_nr_cpus);
		}
	}
	free(counters);
#define REPORT(m, what)								\
	ok((m).count == 0, "%s on all %d allowed CPUs%s%s", what, nallowed,	\
	   (m).count ? "; first mismatch: " : "", (m).first)
	REPORT(pin, "sched_setaffinity pins");
	REPORT(getcpu_m, "sched_getcpu() is the pinned CPU");
	REPORT(cur, "rseq_current_cpu() is the pinned CPU");
	REPORT(start, "rseq_cpu_start() is the pinned CPU");
	REPORT(raw, "rseq_current_cpu_raw() is the pinned CPU");
	REPORT(fallback, "rseq_fallback_current_cpu() == sched_getcpu()");
	REPORT(op, "rseq_addv for the pinned CPU commits");
	if (node_avail)
		REPORT(node, "rseq_current_node_id() == getcpu node == rseq_fallback_current_node()");
	else
		skip(1, "node_id not available (rseq_size < 24)");
	if (cid_avail)
		REPORT(mmcid, "mm_cid < rseq_get_max_nr_cpus()");
	else
		skip(1, "mm_cid not available (rseq_size < 28)");
#undef REPORT
}

/* ---------------------------------------------------------------------- */

/* A new thread's first CPU query (not raw) registers it when the library
 * owns registration. */
struct fresh_result {
	int cpu;
	int raw_before, start_before, current, getcpu, raw_after;
};

static void *fresh_thread(void *arg)
{
	struct fresh_result *r = arg;

	if (pin_to(r->cpu))
		r->cpu = -1;
	r->raw_before = rseq_current_cpu_raw();
	r->start_before = (int)rseq_cpu_start();
	r->current = (int)rseq_current_cpu();
	r->getcpu = sched_getcpu();
	r->raw_after = rseq_current_cpu_raw();
	return NULL;
}

/* A new thread (from the library's pthread_create, bypass = 0, or from
 * glibc's own) starts registered when glibc owns registration; when the
 * library owns it the thread starts unregistered (registration is lazy),
 * until rseq_current_cpu() registers it. */
static void test_fresh_thread(int cpu, int bypass)
{
	struct fresh_result r = { .cpu = cpu };
	pthread_t t;

	if ((bypass ? glibc_pthread_create : pthread_create)(&t, NULL, fresh_thread, &r))
		bail_out("pthread_create");
	pthread_join(t, NULL);
	diag("new thread on cpu %d: raw %d, cpu_start %d before; rseq_current_cpu() %d; raw %d after",
	     cpu, r.raw_before, r.start_before, r.current, r.raw_after);
	if (libc_owns) {
		ok(r.raw_before == cpu, "new thread: glibc registered it (cpu_id %d)", r.raw_before);
	} else {
		ok(r.raw_before == -1 && r.start_before == 0,
		   "new thread (%s): library owns: unregistered at first (cpu_id %d, cpu_id_start %d)",
		   bypass ? "glibc's pthread_create" : "pthread_create", r.raw_before, r.start_before);
	}
	ok(r.cpu == cpu && r.current == cpu && r.getcpu == cpu, "new thread: rseq_current_cpu() %d is its CPU %d",
	   r.current, cpu);
	ok(r.raw_after == cpu, "new thread: registered after rseq_current_cpu() (cpu_id %d)", r.raw_after);
}

/* ---------------------------------------------------------------------- */

static int cid_nthreads;
static _Atomic int cid_arrived, cid_done, cid_timeout;
static pthread_barrier_t cid_barrier;

struct cid_result {
	int cpu;
	int pinned;
	uint32_t cid1, cid2;
	int cpu2;
};

static void spin_until(_Atomic int *v, int target)
{
	double limit = now() + SPIN_LIMIT_S;

	while (atomic_load(v) < target) {
		if (now() > limit) {
			atomic_store(&cid_timeout, 1);
			return;
		}
	}
}

static void *cid_thread(void *arg)
{
	struct cid_result *r = arg;

	r->pinned = pin_to(r->cpu) == 0;
	(void)rseq_current_cpu();	/* registers the thread if needed */
	pthread_barrier_wait(&cid_barrier);
	r->cid1 = rseq_current_mm_cid();
	atomic_fetch_add(&cid_arrived, 1);
	/* Every thread is running (spinning) from here ... */
	spin_until(&cid_arrived, cid_nthreads);
	r->cid2 = rseq_current_mm_cid();
	r->cpu2 = rseq_current_cpu_raw();
	atomic_fetch_add(&cid_done, 1);
	/* ... to here. */
	spin_until(&cid_done, cid_nthreads);
	return NULL;
}

static void test_mm_cid_distinct(const cpu_set_t *allowed, int nallowed)
{
	struct cid_result res[MAX_MM_CID_THREADS];
	pthread_t t[MAX_MM_CID_THREADS];
	int attempt, distinct = 0, in_range = 0, stable = 0, pinned = 0;

	if (!rseq_mm_cid_available()) {
		skip(3, "mm_cid not available (rseq_size < 28)");
		return;
	}
	cid_nthreads = nallowed < MAX_MM_CID_THREADS ? nallowed : MAX_MM_CID_THREADS;
	if (cid_nthreads < 2) {
		skip(3, "fewer than 2 allowed CPUs: no concurrent threads to compare");
		return;
	}
	for (attempt = 1; attempt <= MM_CID_ATTEMPTS; attempt++) {
		int n = 0;

		memset(res, 0, sizeof(res));
		for (int c = 0; c < CPU_SETSIZE && n < cid_nthreads; c++)
			if (CPU_ISSET(c, allowed))
				res[n++].cpu = c;
		atomic_store(&cid_arrived, 0);
		atomic_store(&cid_done, 0);
		atomic_store(&cid_timeout, 0);
		pthread_barrier_init(&cid_barrier, NULL, (unsigned int)cid_nthreads);
		for (int i = 0; i < cid_nthreads; i++)
			if (pthread_create(&t[i], NULL, cid_thread, &res[i]))
				bail_out("pthread_create");
		for (int i = 0; i < cid_nthreads; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&cid_barrier);

		pinned = stable = in_range = distinct = 1;
		for (int i = 0; i < cid_nthreads; i++) {
			if (!res[i].pinned || res[i].cpu2 != res[i].cpu)
				pinned = 0;
			if (res[i].cid1 != res[i].cid2)
				stable = 0;
			if ((int)res[i].cid2 >= max_nr_cpus)
				in_range = 0;
			for (int j = 0; j < i; j++)
				if (res[i].cid2 == res[j].cid2)
					distinct = 0;
		}
		if (pinned && stable && !atomic_load(&cid_timeout))
			break;
		diag("mm_cid attempt %d: pinned %d, stable %d, timeout %d; retrying", attempt, pinned, stable,
		     atomic_load(&cid_timeout));
	}
	for (int i = 0; i < cid_nthreads; i++)
		diag("mm_cid: thread on cpu %d: mm_cid %u (%u at arrival)", res[i].cpu, res[i].cid2, res[i].cid1);
	ok(pinned && stable && !atomic_load(&cid_timeout),
	   "mm_cid: %d threads pinned to distinct CPUs ran concurrently (attempts %d)", cid_nthreads,
	   attempt > MM_CID_ATTEMPTS ? MM_CID_ATTEMPTS : attempt);
	ok(in_range, "mm_cid: every concurrent thread's mm_cid < rseq_get_max_nr_cpus() (%d)", max_nr_cpus);
	ok(distinct, "mm_cid: the %d concurrent threads hold pairwise distinct mm_cids", cid_nthreads);
}

/* ---------------------------------------------------------------------- */

int main(void)
{
	cpu_set_t orig, after;
	int nallowed, possible, first_cpu = -1, max_allowed = -1;
	double t0 = now();

	plan_no_plan();
	libc_owns = rseq_available(RSEQ_AVAILABLE_QUERY_LIBC);
	if (sched_getaffinity(0, sizeof(orig), &orig))
		bail_out("sched_getaffinity: %s", strerror(errno));
	nallowed = CPU_COUNT(&orig);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &orig)) {
			if (first_cpu < 0)
				first_cpu = c;
			max_allowed = c;
		}
	max_nr_cpus = rseq_get_max_nr_cpus();
	possible = sysfs_possible_count();
	diag("glibc owns registration: %d; rseq_size %u; %d allowed CPUs; rseq_get_max_nr_cpus() %d; sysfs possible %d; "
	     "node_id %d, mm_cid %d", libc_owns, rseq_size, nallowed, max_nr_cpus, possible, rseq_node_id_available(),
	     rseq_mm_cid_available());

	if (possible > 0)
		ok(max_nr_cpus == possible, "rseq_get_max_nr_cpus() (%d) == possible CPUs from sysfs (%d)", max_nr_cpus,
		   possible);
	else
		ok(max_nr_cpus == (int)sysconf(_SC_NPROCESSORS_CONF),
		   "no sysfs: rseq_get_max_nr_cpus() (%d) == sysconf(_SC_NPROCESSORS_CONF)", max_nr_cpus);
	ok(max_allowed < max_nr_cpus, "every allowed CPU (max %d) is below rseq_get_max_nr_cpus()", max_allowed);
	ok(rseq_current_cpu_raw() >= 0 && rseq_current_cpu_raw() < max_nr_cpus,
	   "the main thread is registered (cpu_id %d)", rseq_current_cpu_raw());
	if (max_nr_cpus <= 0 || max_allowed >= max_nr_cpus)
		bail_out("cannot index per-CPU data");

	test_each_cpu(&orig, nallowed);
	test_fresh_thread(first_cpu, 0);
	test_fresh_thread(first_cpu, 1);
	test_mm_cid_distinct(&orig, nallowed);

	if (sched_setaffinity(0, sizeof(orig), &orig))
		bail_out("restoring the affinity: %s", strerror(errno));
	ok(!sched_getaffinity(0, sizeof(after), &after) && CPU_EQUAL(&orig, &after), "the original affinity is restored");
	diag("total %.3f s", now() - t0);
	return exit_status();
}
