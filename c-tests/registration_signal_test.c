/* SPDX-License-Identifier: MIT */
/*
 * Signal handlers that use rseq while their own thread registers,
 * registers explicitly and unregisters (issue 14: registration blocks no
 * signal, see src/registration.rs, "Signal handlers").
 *
 * 6 x CPU-count threads, each starting unregistered when the library owns
 * registration, run ROUNDS rounds of: a migration (sched_setaffinity to
 * the next CPU), a first use (an inline increment: when the thread is
 * unregistered its first section aborts and the slow path registers it),
 * an explicit register, increments, an explicit unregister (back to
 * unregistered: the reference count drops to 0), one more increment
 * (registers again). A sender thread interrupts the workers with SIGUSR1
 * all along; every handler increments other counters, every other one
 * inside a balanced explicit register/unregister pair, so handlers run
 * in the middle of the interrupted thread's own registration and
 * unregistration. Exact totals of both kinds of increment, no register or
 * unregister call fails, none gets stuck. Runs in both ownership modes
 * (the tests runner adds GLIBC_TUNABLES=glibc.pthread.rseq=0).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rseq/rseq.h>

#include "tap.h"

#define ROUNDS 6000
#define INNER 8
#define MAX_ABORTS 1000000L

struct counter {
	intptr_t v;
} __attribute__((aligned(128)));

struct worker {
	pthread_t thread;
	int id;
	long main_adds, handler_adds;
	long signals, reg_errors, stuck, started_unregistered;
};

static int nr_cpus, nr_online;
static int online[1024];
static struct counter *main_counters, *handler_counters;
static _Atomic int finished, sender_stop;
static __thread struct worker *self;

static int add(struct counter *c)
{
	for (long aborts = 0; aborts < MAX_ABORTS; aborts++) {
		int cpu = (int)rseq_cpu_start();

		if (cpu < 0 || cpu >= nr_cpus)
			return -1;
		if (rseq_addv(&c[cpu].v, 1, cpu) == 0)
			return 0;
	}
	return -1;
}

static void handler(int sig)
{
	struct worker *w = self;
	int saved = errno;
	int pair;

	(void)sig;
	if (!w)
		return;
	pair = (int)(++w->signals & 1);
	if (pair && rseq_register_current_thread())
		w->reg_errors++;
	if (add(handler_counters) == 0)
		w->handler_adds++;
	else
		w->stuck++;
	if (pair && rseq_unregister_current_thread())
		w->reg_errors++;
	errno = saved;
}

static void migrate(int to)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(online[to % nr_online], &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	sigset_t usr1;

	self = w;
	w->started_unregistered = rseq_current_cpu_raw() < 0;
	for (int r = 0; r < ROUNDS; r++) {
		migrate(w->id + r);
		if (add(main_counters) == 0)
			w->main_adds++;
		else
			w->stuck++;
		if (rseq_register_current_thread())
			w->reg_errors++;
		for (int i = 0; i < INNER; i++) {
			if (add(main_counters) == 0)
				w->main_adds++;
			else
				w->stuck++;
		}
		if (rseq_unregister_current_thread())
			w->reg_errors++;
		if (add(main_counters) == 0)
			w->main_adds++;
		else
			w->stuck++;
	}
	/* No more signals for this thread; stay alive until the sender
	 * stopped (it targets this thread by pthread_t). */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	atomic_fetch_add(&finished, 1);
	while (!atomic_load(&sender_stop))
		usleep(1000);
	return NULL;
}

static struct worker *workers;
static int nr_workers;

static void *sender(void *arg)
{
	long sent = 0;

	(void)arg;
	while (atomic_load(&finished) < nr_workers) {
		for (int i = 0; i < nr_workers; i++) {
			pthread_kill(workers[i].thread, SIGUSR1);
			sent++;
		}
		if (sent % 64 == 0)
			sched_yield();
	}
	atomic_store(&sender_stop, 1);
	return NULL;
}

static intptr_t sum(const struct counter *c)
{
	intptr_t s = 0;

	for (int i = 0; i < nr_cpus; i++)
		s += c[i].v;
	return s;
}

int main(void)
{
	struct sigaction sa;
	cpu_set_t set;
	pthread_t snd;
	long main_adds = 0, handler_adds = 0, signals = 0, errors = 0, stuck = 0, unregistered = 0;
	int libc_owns;

	plan_no_plan();
	nr_cpus = rseq_get_max_nr_cpus();
	libc_owns = rseq_available(RSEQ_AVAILABLE_QUERY_LIBC);
	if (sched_getaffinity(0, sizeof(set), &set))
		bail_out("sched_getaffinity");
	for (int c = 0; c < CPU_SETSIZE && nr_online < 1024; c++)
		if (CPU_ISSET(c, &set))
			online[nr_online++] = c;
	nr_workers = 6 * nr_online;
	main_counters = zalloc_aligned((size_t)nr_cpus * sizeof(struct counter));
	handler_counters = zalloc_aligned((size_t)nr_cpus * sizeof(struct counter));
	workers = zalloc_aligned((size_t)nr_workers * sizeof(*workers));
	if (!main_counters || !handler_counters || !workers)
		bail_out("out of memory");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		bail_out("sigaction");
	for (int i = 0; i < nr_workers; i++) {
		workers[i].id = i;
		if (pthread_create(&workers[i].thread, NULL, work, &workers[i]))
			bail_out("pthread_create");
	}
	if (pthread_create(&snd, NULL, sender, NULL))
		bail_out("pthread_create");
	pthread_join(snd, NULL);
	for (int i = 0; i < nr_workers; i++) {
		struct worker *w = &workers[i];

		pthread_join(w->thread, NULL);
		main_adds += w->main_adds;
		handler_adds += w->handler_adds;
		signals += w->signals;
		errors += w->reg_errors;
		stuck += w->stuck;
		unregistered += w->started_unregistered;
	}
	diag("%d threads x %d rounds on %d CPUs, %ld signals handled (glibc owns: %d)", nr_workers, ROUNDS,
	     nr_online, signals, libc_owns);
	if (libc_owns)
		ok(unregistered == 0, "glibc registered every thread before it ran (%ld not)", unregistered);
	else
		ok(unregistered == nr_workers, "every thread started unregistered (%ld of %d)", unregistered,
		   nr_workers);
	ok(signals > 0, "the handlers ran (%ld signals)", signals);
	ok(errors == 0, "no register or unregister call failed, in the threads or their handlers (%ld)", errors);
	ok(stuck == 0, "no increment got stuck (%ld)", stuck);
	ok(main_adds == (long)nr_workers * ROUNDS * (INNER + 2) && sum(main_counters) == main_adds,
	   "threads' increments exact: %ld counted, %ld expected", (long)sum(main_counters),
	   (long)nr_workers * ROUNDS * (INNER + 2));
	ok(sum(handler_counters) == handler_adds && handler_adds == signals,
	   "handlers' increments exact: %ld counted, %ld committed, %ld signals", (long)sum(handler_counters),
	   handler_adds, signals);
	return exit_status();
}
