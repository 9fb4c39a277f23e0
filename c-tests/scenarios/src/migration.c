/* SPDX-License-Identifier: MIT */
/*
 * Affinity changes and migration storms while operations run.
 *
 * W workers (-w, default 4) run operations of every kind (rseq in CPU_ID
 * and MM_CID mode, percpu_*, cpu_op_*, cpu_opv) in a loop; a migrator
 * thread changes their affinity masks continuously with
 * sched_setaffinity(tid, ...) (a single random CPU, or every CPU), and
 * one worker in two also moves itself every 64 operations. Asserts exact
 * totals, no unexpected error, and that the migrations happened (workers
 * saw their CPU change). Options: -d seconds (default 3), -w workers.
 */
#include "fault_common.h"

#include <sys/syscall.h>

static int opt_workers = 4;
static double opt_secs = 3.0;
static atomic_int stop, ready;
static pid_t *tids;
static atomic_long setaffinity_ok, setaffinity_err, cpu_changes, worker_ops;
static cpu_set_t allowed;
static int allowed_list[CPU_SETSIZE], nallowed;

static void random_mask(cpu_set_t *set)
{
	CPU_ZERO(set);
	if (fc_rand() % 4 == 0) {
		*set = allowed;
	} else {
		CPU_SET(allowed_list[fc_rand() % (uint32_t)nallowed], set);
	}
}

static void *worker(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	int last = -1;
	long n = 0;

	fc_rng = (uint32_t)id * 2654435761u + 11;
	tids[id] = (pid_t)syscall(SYS_gettid);
	atomic_fetch_add(&ready, 1);
	while (!atomic_load(&stop)) {
		int cpu;

		fc_op((enum fc_kind)(fc_rand() % FC_NKINDS), 0);
		n++;
		cpu = sched_getcpu();
		if (last >= 0 && cpu != last)
			atomic_fetch_add(&cpu_changes, 1);
		last = cpu;
		if ((id & 1) && n % 64 == 0) {
			cpu_set_t set;

			random_mask(&set);
			if (sched_setaffinity(0, sizeof(set), &set) == 0)
				atomic_fetch_add(&setaffinity_ok, 1);
			else
				atomic_fetch_add(&setaffinity_err, 1);
		}
	}
	sched_setaffinity(0, sizeof(allowed), &allowed);
	atomic_fetch_add(&worker_ops, n);
	return NULL;
}

static void *migrator(void *arg)
{
	(void)arg;
	fc_rng = 77;
	while (!atomic_load(&stop)) {
		for (int i = 0; i < opt_workers; i++) {
			cpu_set_t set;

			random_mask(&set);
			if (sched_setaffinity(tids[i], sizeof(set), &set) == 0)
				atomic_fetch_add(&setaffinity_ok, 1);
			else
				atomic_fetch_add(&setaffinity_err, 1);
		}
		if (fc_rand() % 8 == 0)
			sched_yield();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct cpu_op_counters before, after;
	pthread_t *w, m;
	double t0;
	int c;

	while ((c = getopt(argc, argv, "d:w:")) != -1) {
		switch (c) {
		case 'd': opt_secs = atof(optarg); break;
		case 'w': opt_workers = atoi(optarg); break;
		default: bail_out("usage: %s [-d seconds] [-w workers]", argv[0]);
		}
	}
	plan_no_plan();
	fc_watchdog((unsigned int)opt_secs + 120);
	fc_init();
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		bail_out("sched_getaffinity");
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &allowed))
			allowed_list[nallowed++] = i;
	diag("possible cpus %d, allowed %d, glibc owns registration %d, mm_cid %d, %d workers, %.1f s",
	     fc_ncpus, nallowed, rseq_available(RSEQ_AVAILABLE_QUERY_LIBC), rseq_mm_cid_available(), opt_workers,
	     opt_secs);
	if (nallowed < 2) {
		skip(4, "fewer than 2 CPUs allowed: nothing to migrate between");
		return exit_status();
	}
	tids = calloc((size_t)opt_workers, sizeof(*tids));
	w = calloc((size_t)opt_workers, sizeof(*w));
	fc_get_counters(&before);
	t0 = fc_now();
	for (int i = 0; i < opt_workers; i++)
		if (pthread_create(&w[i], NULL, worker, (void *)(uintptr_t)i))
			bail_out("pthread_create");
	while (atomic_load(&ready) < opt_workers)
		sched_yield();
	if (pthread_create(&m, NULL, migrator, NULL))
		bail_out("pthread_create");
	while (fc_now() - t0 < opt_secs) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, 1);
	pthread_join(m, NULL);
	for (int i = 0; i < opt_workers; i++)
		pthread_join(w[i], NULL);
	fc_get_counters(&after);
	diag("%.2f s: %ld worker ops, %ld affinity changes (%ld refused), %ld CPU changes seen by the workers",
	     fc_now() - t0, atomic_load(&worker_ops), atomic_load(&setaffinity_ok), atomic_load(&setaffinity_err),
	     atomic_load(&cpu_changes));
	diag("rseq retries given up (1000 aborts in a row, fell back to a cpu-op): %ld", atomic_load(&fc_rseq_giveups));
	fc_report_counters(&before, &after);
	ok(fc_sum() == atomic_load(&fc_expected), "exact total %ld == %ld", fc_sum(), atomic_load(&fc_expected));
	ok(atomic_load(&fc_errors) == 0, "no unexpected operation result (%ld; last: %s)", atomic_load(&fc_errors),
	   fc_last_error);
	ok(atomic_load(&setaffinity_ok) > 1000 && atomic_load(&cpu_changes) > 100,
	   "the migration storm happened (%ld affinity changes, %ld CPU changes)", atomic_load(&setaffinity_ok),
	   atomic_load(&cpu_changes));
	ok(atomic_load(&worker_ops) > 1000, "the workers progressed (%ld ops)", atomic_load(&worker_ops));
	return exit_status();
}
