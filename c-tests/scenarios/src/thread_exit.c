/* SPDX-License-Identifier: MIT */
/*
 * Threads exiting at any point.
 *
 *   1. -n short-lived threads (default 5000), 8 at a time, each doing a
 *      few operations of random kinds (rseq, percpu_*, cpu_op_*, cpu_opv)
 *      and leaving in one of these ways: return; pthread_exit() from
 *      inside its loop right after a cpu-op, right after an rseq op, right
 *      after rseq_register_current_thread() (registered explicitly, never
 *      unregistered), twice registered, right after
 *      rseq_unregister_current_thread(); one in 8 is detached; one in 8 is
 *      created with glibc's pthread_create, behind the library's back (no
 *      registration at start when the library owns it);
 *   2. 4 long-running threads that call pthread_exit() from inside nested
 *      loops at a random iteration, restarted as they exit, while 2 more
 *      are cancelled (deferred cancellation, pthread_testcancel() between
 *      operations) at random times.
 *
 * Every operation's increment is counted right after it commits; the sum
 * of the per-CPU counters must equal the count exactly. Afterwards the
 * process still runs every operation on every CPU.
 */
#include "fault_common.h"

#include "glibc_thread.h"

static int opt_threads = 5000;
static double opt_secs = 2.0;
static atomic_long exits[8], finished, created_glibc, detached_done;
static const char *const exit_name[8] = {
	"return", "pthread_exit after a cpu-op", "pthread_exit after an rseq op",
	"pthread_exit after register", "pthread_exit after register x2",
	"pthread_exit after unregister", "pthread_exit mid-loop after percpu", "return (glibc thread)",
};

static void *short_thread(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	int how = (int)(id % 8);
	int nops = 2 + (int)(id % 4);

	fc_rng = (uint32_t)id * 2654435761u + 17;
	for (int i = 0; i < nops; i++) {
		fc_op((enum fc_kind)(fc_rand() % FC_NKINDS), 0);
		if (i == nops - 1) {
			atomic_fetch_add(&exits[how], 1);
			atomic_fetch_add(&finished, 1);
			switch (how) {
			case 1:
				fc_op(FC_CPUOP_ADD, 0);
				pthread_exit(NULL);
			case 2:
				fc_op(FC_RSEQ_ADD, 0);
				pthread_exit(NULL);
			case 3:
				if (rseq_register_current_thread())
					fc_error("register failed");
				pthread_exit(NULL);
			case 4:
				if (rseq_register_current_thread() || rseq_register_current_thread())
					fc_error("register failed");
				fc_op(FC_RSEQ_CAS, 0);
				pthread_exit(NULL);
			case 5:
				if (rseq_register_current_thread() || rseq_unregister_current_thread())
					fc_error("register/unregister failed");
				pthread_exit(NULL);
			case 6:
				fc_op(FC_PERCPU_ADD, 0);
				pthread_exit(NULL);
			default:
				break;
			}
		}
	}
	return NULL;
}

static void *detached_thread(void *arg)
{
	short_thread(arg);	/* returns for how == 0 or 7 only */
	atomic_fetch_add(&detached_done, 1);
	return NULL;
}

/* ---- part 2 ---------------------------------------------------------- */

static atomic_int stop;
static atomic_long loop_exits, cancels;

static void *looper(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	uint32_t exit_at;

	fc_rng = (uint32_t)id * 7919u + 1;
	exit_at = fc_rand() % 2000;
	for (uint32_t i = 0;; i++) {
		for (int j = 0; j < 4; j++) {
			fc_op((enum fc_kind)(fc_rand() % FC_NKINDS), 0);
			if (i * 4 + (uint32_t)j == exit_at) {
				atomic_fetch_add(&loop_exits, 1);
				pthread_exit(NULL);
			}
		}
		if (atomic_load(&stop)) {
			atomic_fetch_add(&loop_exits, 1);
			return NULL;
		}
	}
}

static void *cancellable(void *arg)
{
	uintptr_t id = (uintptr_t)arg;

	fc_rng = (uint32_t)id * 104729u + 5;
	pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, NULL);
	for (;;) {
		fc_op((enum fc_kind)(fc_rand() % FC_NKINDS), 0);
		pthread_testcancel();
		if (atomic_load(&stop))
			return NULL;
	}
}

static void part2(void)
{
	pthread_t loopers[4], cancelled[2];
	uintptr_t next = 1000000;
	double t0 = fc_now();

	for (int i = 0; i < 4; i++)
		pthread_create(&loopers[i], NULL, looper, (void *)next++);
	for (int i = 0; i < 2; i++)
		pthread_create(&cancelled[i], NULL, cancellable, (void *)next++);
	while (fc_now() - t0 < opt_secs) {
		struct timespec ts = { 0, (long)(fc_rand() % 3000) * 1000 };

		nanosleep(&ts, NULL);
		/* Restart the loopers that exited. */
		for (int i = 0; i < 4; i++) {
			if (pthread_tryjoin_np(loopers[i], NULL) == 0)
				pthread_create(&loopers[i], NULL, looper, (void *)next++);
		}
		/* Cancel one at a random time, start a new one. */
		{
			int i = (int)(fc_rand() % 2);

			pthread_cancel(cancelled[i]);
			pthread_join(cancelled[i], NULL);
			atomic_fetch_add(&cancels, 1);
			pthread_create(&cancelled[i], NULL, cancellable, (void *)next++);
		}
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(loopers[i], NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(cancelled[i], NULL);
}

int main(int argc, char **argv)
{
	struct cpu_op_counters before, after;
	pthread_attr_t detached;
	double t0;
	long ndetached = 0;
	int c, fails = 0;

	while ((c = getopt(argc, argv, "n:d:")) != -1) {
		switch (c) {
		case 'n': opt_threads = atoi(optarg); break;
		case 'd': opt_secs = atof(optarg); break;
		default: bail_out("usage: %s [-n threads] [-d seconds]", argv[0]);
		}
	}
	plan_no_plan();
	fc_watchdog(240);
	fc_init();
	fc_rng = 1;
	diag("possible cpus %d, glibc owns registration %d, %d short-lived threads, %.1f s of exits and cancels",
	     fc_ncpus, rseq_available(RSEQ_AVAILABLE_QUERY_LIBC), opt_threads, opt_secs);
	pthread_attr_init(&detached);
	pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
	fc_get_counters(&before);
	t0 = fc_now();
	for (int base = 0; base < opt_threads; base += 8) {
		pthread_t t[8];
		int joinable[8];

		for (int i = 0; i < 8 && base + i < opt_threads; i++) {
			uintptr_t id = (uintptr_t)(base + i);
			int r;

			joinable[i] = 1;
			if (id % 8 == 7) {
				r = glibc_pthread_create(&t[i], NULL, short_thread, (void *)id);
				atomic_fetch_add(&created_glibc, r == 0);
			} else if (id % 64 == 8) {
				r = pthread_create(&t[i], &detached, detached_thread, (void *)(id & ~(uintptr_t)7));
				joinable[i] = 0;
				ndetached++;
			} else {
				r = pthread_create(&t[i], NULL, short_thread, (void *)id);
			}
			if (r) {
				joinable[i] = 0;
				fails++;
			}
		}
		for (int i = 0; i < 8 && base + i < opt_threads; i++)
			if (joinable[i])
				pthread_join(t[i], NULL);
	}
	/* Detached threads: wait until they finished their work. */
	while (atomic_load(&detached_done) < ndetached && fc_now() - t0 < 60)
		sched_yield();
	diag("part 1: %d threads in %.2f s (%ld created with glibc's pthread_create, %ld detached)",
	     opt_threads, fc_now() - t0, atomic_load(&created_glibc), ndetached);
	for (int i = 0; i < 8; i++)
		diag("  exits: %-36s %ld", exit_name[i], atomic_load(&exits[i]));
	ok(fails == 0 && atomic_load(&finished) == opt_threads,
	   "part 1: %ld of %d short-lived threads finished (%d creation failures)", atomic_load(&finished),
	   opt_threads, fails);
	ok(fc_sum() == atomic_load(&fc_expected), "part 1: exact total %ld == %ld", fc_sum(),
	   atomic_load(&fc_expected));

	t0 = fc_now();
	part2();
	diag("part 2: %.2f s, %ld pthread_exit from inside loops, %ld cancellations", fc_now() - t0,
	     atomic_load(&loop_exits), atomic_load(&cancels));
	ok(fc_sum() == atomic_load(&fc_expected), "part 2: exact total %ld == %ld", fc_sum(),
	   atomic_load(&fc_expected));
	ok(atomic_load(&loop_exits) > 0 && atomic_load(&cancels) > 0, "part 2: threads exited (%ld) and were cancelled (%ld)",
	   atomic_load(&loop_exits), atomic_load(&cancels));

	/* The process still works on every CPU. */
	{
		long before_sum = fc_sum();
		int bad = 0;

		for (int cpu = 0; cpu < fc_ncpus; cpu++) {
			if (cpu_op_addv(&fc_counts[cpu].v, 1, cpu) || percpu_addv(&fc_counts[cpu].v, 1, cpu))
				bad++;
		}
		for (int i = 0; i < 1000; i++)
			fc_op(FC_RSEQ_ADD, 0);
		ok(!bad && fc_sum() == before_sum + 2 * fc_ncpus + 1000 && rseq_current_cpu_raw() >= 0,
		   "afterwards every operation works on every CPU, the main thread is registered");
	}
	fc_get_counters(&after);
	fc_report_counters(&before, &after);
	ok(atomic_load(&fc_errors) == 0, "no unexpected operation result (%ld; last: %s)", atomic_load(&fc_errors),
	   fc_last_error);
	return exit_status();
}
