/* SPDX-License-Identifier: MIT */
/*
 * Registration: the exported data symbols in each ownership mode,
 * explicit register/unregister (nesting, EINVAL, automatic registration
 * again afterwards), automatic registration of threads that never call
 * register (lazily, on their first use), threads still registered in
 * later key destructors (the library does not unregister at exit) and
 * new threads on a reused stack block unregistered, many short-lived
 * threads, and rseq_available().
 *
 * Runs in both modes: glibc owning registration (the default with glibc
 * 2.35+) and the library owning it (GLIBC_TUNABLES=glibc.pthread.rseq=0).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/wait.h>
#include <limits.h>
#include <rseq/rseq.h>

#include "glibc_thread.h"
#include "tap.h"

#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27
#endif
#ifndef AT_RSEQ_ALIGN
#define AT_RSEQ_ALIGN 28
#endif

/* Consecutive aborts after which an operation counts as stuck. */
#define MAX_ABORTS 1000000L

#define AUTO_THREADS 8
#define AUTO_ITERS 100000
#define SHORT_THREADS 2000
#define SHORT_BATCH 16

struct counter {
	intptr_t v;
} __attribute__((aligned(128)));

static int nr_cpus;
static int libc_owns;		/* rseq_available(RSEQ_AVAILABLE_QUERY_LIBC) */

static struct counter *alloc_counters(void)
{
	struct counter *c = zalloc_aligned((size_t)nr_cpus * sizeof(*c));

	if (!c)
		bail_out("calloc");
	return c;
}

static intptr_t sum_counters(const struct counter *c)
{
	intptr_t sum = 0;

	for (int i = 0; i < nr_cpus; i++)
		sum += c[i].v;
	return sum;
}

/*
 * Adds n to the calling CPU's counter with the usual retry pattern.
 * Returns the number of aborts before the commit, or -1 when stuck.
 */
static long percpu_add(struct counter *c, intptr_t n)
{
	for (long aborts = 0; aborts < MAX_ABORTS; aborts++) {
		int cpu = (int)rseq_cpu_start();

		if (cpu < 0 || cpu >= nr_cpus)
			return -1;
		if (rseq_addv(&c[cpu].v, n, cpu) == 0)
			return aborts;
	}
	return -1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------------- */

static void test_available(long glibc_size_known, unsigned int glibc_size)
{
	bool avail;
	int err;

	errno = 0;
	avail = rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL);
	err = errno;
	ok(avail, "rseq_available(KERNEL) is true (errno %d)", err);
	if (glibc_size_known)
		ok(libc_owns == (glibc_size != 0),
		   "rseq_available(LIBC) = %d matches glibc's __rseq_size %u", libc_owns, glibc_size);
	else
		ok(!libc_owns, "no __rseq_size in this libc: rseq_available(LIBC) is false");
	errno = 0;
	avail = rseq_available(99);
	err = errno;
	ok(!avail && err == EINVAL, "rseq_available(99) is false with EINVAL (errno %d)", err);
	errno = 0;
	avail = rseq_available(2);
	err = errno;
	ok(!avail && err == EINVAL, "rseq_available(2) is false with EINVAL (errno %d)", err);
	/* The answers do not change between calls. */
	ok(rseq_available(RSEQ_AVAILABLE_QUERY_LIBC) == libc_owns && rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL),
	   "rseq_available answers are stable");
}

static void test_data_symbols(const ptrdiff_t *glibc_offset, unsigned int feature, unsigned long align)
{
	uintptr_t area = (uintptr_t)rseq_get_abi();

	diag("rseq_offset %td, rseq_size %u, rseq_flags %u; __rseq_offset %td; feature size %u, align %lu",
	     rseq_offset, rseq_size, rseq_flags, glibc_offset ? *glibc_offset : (ptrdiff_t)0, feature, align);
	ok(rseq_flags == 0, "rseq_flags == 0 (%u)", rseq_flags);
	ok(area % 32 == 0, "the rseq area is 32-byte aligned (%#lx)", (unsigned long)area);
	if (libc_owns) {
		unsigned int expect = feature < 32 ? feature : 32;

		ok(glibc_offset && rseq_offset == *glibc_offset,
		   "glibc owns: rseq_offset (%td) == __rseq_offset (%td)", rseq_offset, glibc_offset ? *glibc_offset : (ptrdiff_t)0);
		ok(rseq_size == expect, "glibc owns: rseq_size (%u) == min(32, feature size %u)", rseq_size, feature);
		skip(1, "glibc owns registration: glibc's area alignment");
	} else {
		ok(rseq_offset != 0 && (!glibc_offset || rseq_offset != *glibc_offset),
		   "library owns: rseq_offset (%td) is its own, not __rseq_offset (%td)", rseq_offset,
		   glibc_offset ? *glibc_offset : (ptrdiff_t)0);
		ok(rseq_size == feature, "library owns: rseq_size (%u) == kernel feature size (%u)", rseq_size, feature);
		ok(area % (align > 32 ? align : 32) == 0, "library owns: area aligned to the kernel's AT_RSEQ_ALIGN (%lu)", align);
	}
	ok(rseq_current_cpu_raw() >= 0, "the main thread is registered before main() did anything (cpu_id %d)",
	   rseq_current_cpu_raw());
}

/* ---------------------------------------------------------------------- */

/*
 * Explicit register/unregister in the calling thread, which is registered
 * already (by the constructor, glibc, or automatically).
 */
static void register_sequence(const char *who)
{
	int r1, r2, u1, u2, u3, cpu_after_u1, cpu_after_u2, cpu_after_u3, e3;
	intptr_t v = 0;
	struct counter *c;
	int ret, cpu_after_abort;
	long aborts;

	ok(rseq_current_cpu_raw() >= 0, "%s: registered at the start (cpu_id %d)", who, rseq_current_cpu_raw());
	errno = 0;
	r1 = rseq_register_current_thread();
	r2 = rseq_register_current_thread();
	ok(r1 == 0 && r2 == 0, "%s: register twice returns 0, 0 (%d, %d, errno %d)", who, r1, r2, errno);
	ok(rseq_current_cpu_raw() >= 0, "%s: registered after two registers (cpu_id %d)", who, rseq_current_cpu_raw());

	errno = 0;
	u1 = rseq_unregister_current_thread();
	cpu_after_u1 = rseq_current_cpu_raw();
	u2 = rseq_unregister_current_thread();
	cpu_after_u2 = rseq_current_cpu_raw();
	errno = 0;
	u3 = rseq_unregister_current_thread();
	e3 = errno;
	cpu_after_u3 = rseq_current_cpu_raw();

	if (libc_owns) {
		ok(u1 == 0 && u2 == 0 && u3 == 0, "%s: glibc owns: unregister x3 returns 0 (%d %d %d)", who, u1, u2, u3);
		ok(cpu_after_u1 >= 0 && cpu_after_u2 >= 0 && cpu_after_u3 >= 0,
		   "%s: glibc owns: the thread stays registered (%d %d %d)", who, cpu_after_u1, cpu_after_u2, cpu_after_u3);
		skip(2, "glibc owns registration: no unregistration to observe");
	} else {
		ok(u1 == 0 && cpu_after_u1 >= 0,
		   "%s: first unregister drops one reference, still registered (ret %d, cpu_id %d)", who, u1, cpu_after_u1);
		ok(u2 == 0 && cpu_after_u2 == -1,
		   "%s: last matching unregister unregisters (ret %d, cpu_id %d)", who, u2, cpu_after_u2);
		ok(u3 == -1 && e3 == EINVAL && cpu_after_u3 == -1,
		   "%s: a further unregister fails with EINVAL (ret %d, errno %d, cpu_id %d)", who, u3, e3, cpu_after_u3);
		/* Unregistered: an operation aborts once, and its slow path
		 * registers the thread again. */
		ret = rseq_addv(&v, 1, (int)rseq_cpu_start());
		cpu_after_abort = rseq_current_cpu_raw();
		ok(ret == -1 && v == 0 && cpu_after_abort >= 0,
		   "%s: unregistered, rseq_addv aborts (ret %d, v %ld) and registers the thread again (cpu_id %d)",
		   who, ret, (long)v, cpu_after_abort);
	}
	c = alloc_counters();
	aborts = percpu_add(c, 5);
	cpu_after_abort = rseq_current_cpu_raw();
	ok(aborts >= 0 && sum_counters(c) == 5 && cpu_after_abort >= 0,
	   "%s: operations work afterwards (aborts %ld, sum %ld, cpu_id %d)", who, aborts, (long)sum_counters(c),
	   cpu_after_abort);
	free(c);

	/* Explicit registration from the unregistered state, then matching
	 * unregistration. */
	if (!libc_owns) {
		int ra, ua, cpu_a, cpu_b;

		u1 = rseq_unregister_current_thread();
		ok(u1 == 0 && rseq_current_cpu_raw() == -1, "%s: unregistered again (ret %d)", who, u1);
		ra = rseq_register_current_thread();
		cpu_a = rseq_current_cpu_raw();
		ua = rseq_unregister_current_thread();
		cpu_b = rseq_current_cpu_raw();
		ok(ra == 0 && cpu_a >= 0 && ua == 0 && cpu_b == -1,
		   "%s: register from unregistered, then one unregister (ret %d cpu %d, ret %d cpu %d)",
		   who, ra, cpu_a, ua, cpu_b);
		ok(rseq_register_current_thread() == 0 && rseq_current_cpu_raw() >= 0,
		   "%s: explicit register registers again", who);
	} else {
		skip(3, "glibc owns registration");
	}
}

static void *register_sequence_thread(void *arg)
{
	struct counter *c = alloc_counters();

	(void)arg;
	if (percpu_add(c, 1) < 0)
		ok(0, "new thread: first operation stuck");
	free(c);
	register_sequence("new thread");
	return NULL;
}

/* ---------------------------------------------------------------------- */

static struct counter *auto_counters;
static pthread_barrier_t auto_barrier;

struct auto_result {
	int cpu_before;		/* cpu_id before any rseq use */
	int cpu_after_first;	/* cpu_id after the first operation */
	long stuck;		/* operations that never committed */
	long aborts;
};

static void *auto_thread(void *arg)
{
	struct auto_result *res = arg;

	res->cpu_before = rseq_current_cpu_raw();
	pthread_barrier_wait(&auto_barrier);
	for (int i = 0; i < AUTO_ITERS; i++) {
		long a = percpu_add(auto_counters, 1);

		if (a < 0)
			res->stuck++;
		else
			res->aborts += a;
		if (i == 0)
			res->cpu_after_first = rseq_current_cpu_raw();
	}
	return NULL;
}

/* New threads start registered when glibc owns registration; when the
 * library owns it they start unregistered, from the library's
 * pthread_create or from glibc's own (registration is lazy: a thread that
 * never uses rseq costs no system call), and get registered on their first
 * operation. */
static void test_automatic_registration(int bypass)
{
	pthread_t t[AUTO_THREADS];
	struct auto_result res[AUTO_THREADS];
	int before_ok = 1, after_ok = 1;
	long stuck = 0, aborts = 0;
	intptr_t sum;
	double t0 = now();

	memset(res, 0, sizeof(res));
	auto_counters = alloc_counters();
	pthread_barrier_init(&auto_barrier, NULL, AUTO_THREADS);
	for (int i = 0; i < AUTO_THREADS; i++)
		if ((bypass ? glibc_pthread_create : pthread_create)(&t[i], NULL, auto_thread, &res[i]))
			bail_out("pthread_create");
	for (int i = 0; i < AUTO_THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&auto_barrier);
	for (int i = 0; i < AUTO_THREADS; i++) {
		if (libc_owns ? res[i].cpu_before < 0 : res[i].cpu_before != -1)
			before_ok = 0;
		if (res[i].cpu_after_first < 0)
			after_ok = 0;
		stuck += res[i].stuck;
		aborts += res[i].aborts;
	}
	sum = sum_counters(auto_counters);
	diag("automatic registration (%s): %d threads x %d increments in %.3f s, %ld aborts",
	     bypass ? "glibc's pthread_create" : "pthread_create", AUTO_THREADS, AUTO_ITERS, now() - t0, aborts);
	if (libc_owns)
		ok(before_ok, "auto: glibc registered every new thread before it ran");
	else
		ok(before_ok, "auto: library owns: threads from %s start unregistered (cpu_id -1)",
		   bypass ? "glibc's own pthread_create" : "the library's pthread_create");
	ok(after_ok, "auto: every thread is registered after its first operation");
	ok(stuck == 0, "auto: no operation got stuck (%ld)", stuck);
	ok(sum == (intptr_t)AUTO_THREADS * AUTO_ITERS, "auto: exact total %ld (expected %ld)",
	   (long)sum, (long)AUTO_THREADS * AUTO_ITERS);
	free(auto_counters);
}

/* ---------------------------------------------------------------------- */

/* A key destructor of the program, run when each test thread exits:
 * the thread is still registered there (the library does not unregister
 * at exit: see src/registration.rs) and can use rseq. */
static pthread_key_t probe_key;
static _Atomic int probe_cpu_at_exit = -100;
static _Atomic int probe_ran;
static _Atomic long probe_add = -100;
static struct counter *probe_counters;

static void probe_destructor(void *value)
{
	(void)value;
	atomic_store(&probe_cpu_at_exit, rseq_current_cpu_raw());
	atomic_store(&probe_add, percpu_add(probe_counters, 1));
	atomic_fetch_add(&probe_ran, 1);
}

struct exit_args {
	int explicit_register;
	int cpu_in_thread;
	int cpu_at_start;
	struct rseq_abi *area;
};

static void *exit_thread(void *arg)
{
	struct exit_args *a = arg;
	struct counter *c = alloc_counters();

	a->cpu_at_start = rseq_current_cpu_raw();
	a->area = rseq_get_abi();
	if (a->explicit_register && rseq_register_current_thread())
		a->cpu_in_thread = -100;
	if (percpu_add(c, 1) < 0)
		a->cpu_in_thread = -101;
	else if (a->cpu_in_thread == 0)
		a->cpu_in_thread = rseq_current_cpu_raw();
	free(c);
	pthread_setspecific(probe_key, (void *)1);
	return NULL;
}

/* Threads exit registered; the next thread, which glibc's stack cache
 * gives the same stack block (and TLS) again, starts unregistered
 * (glibc initialises its TLS again) when the library owns registration. */
static void test_thread_exit(void)
{
	struct rseq_abi *prev_area = NULL;
	int reused = 0, fresh_ok = 1, rounds = 0;

	probe_counters = alloc_counters();
	for (int round = 0; round < 4; round++) {
		for (int explicit_register = 0; explicit_register <= 1; explicit_register++) {
			const char *how = explicit_register ? "explicitly registered" : "automatically registered";
			struct exit_args a = { explicit_register, 0, -100, NULL };
			pthread_t t;

			atomic_store(&probe_cpu_at_exit, -100);
			atomic_store(&probe_ran, 0);
			atomic_store(&probe_add, -100);
			if (pthread_create(&t, NULL, exit_thread, &a))
				bail_out("pthread_create");
			pthread_join(t, NULL);
			rounds++;
			if (a.area == prev_area)
				reused++;
			prev_area = a.area;
			if (!libc_owns && a.cpu_at_start != -1)
				fresh_ok = 0;
			if (round)
				continue;
			ok(a.cpu_in_thread >= 0 && atomic_load(&probe_ran) == 1,
			   "exit (%s): the thread used rseq (cpu_id %d) and its key destructor ran", how,
			   a.cpu_in_thread);
			ok(atomic_load(&probe_cpu_at_exit) >= 0 && atomic_load(&probe_add) >= 0,
			   "exit (%s): still registered in a later key destructor, which can use rseq (cpu_id %d, add %ld)",
			   how, atomic_load(&probe_cpu_at_exit), atomic_load(&probe_add));
		}
	}
	ok(sum_counters(probe_counters) == rounds, "exit: the key destructors' increments are exact (%ld of %d)",
	   (long)sum_counters(probe_counters), rounds);
	ok(reused > 0, "exit: glibc's stack cache gave %d of %d threads the previous thread's TLS block", reused,
	   rounds - 1);
	if (libc_owns)
		skip(1, "glibc owns registration: glibc registers every new thread");
	else
		ok(fresh_ok, "exit: every new thread, on a reused TLS block or not, starts unregistered (cpu_id -1)");
	free(probe_counters);
}

/* ---------------------------------------------------------------------- */

static struct counter *short_counters;
static _Atomic long short_unregistered, short_stuck;

static void *short_thread(void *arg)
{
	(void)arg;
	if (percpu_add(short_counters, 1) < 0)
		atomic_fetch_add(&short_stuck, 1);
	else if (rseq_current_cpu_raw() < 0)
		atomic_fetch_add(&short_unregistered, 1);
	return NULL;
}

static void test_short_lived_threads(void)
{
	pthread_t t[SHORT_BATCH];
	double t0 = now();
	intptr_t sum;
	long aborts;
	int created = 0;

	short_counters = alloc_counters();
	while (created < SHORT_THREADS) {
		int n = SHORT_THREADS - created < SHORT_BATCH ? SHORT_THREADS - created : SHORT_BATCH;

		for (int i = 0; i < n; i++)
			if (pthread_create(&t[i], NULL, short_thread, NULL))
				bail_out("pthread_create: %s", strerror(errno));
		for (int i = 0; i < n; i++)
			pthread_join(t[i], NULL);
		created += n;
	}
	sum = sum_counters(short_counters);
	diag("%d short-lived threads in %.3f s", SHORT_THREADS, now() - t0);
	ok(sum == SHORT_THREADS && atomic_load(&short_stuck) == 0,
	   "short-lived threads: exact total %ld of %d, %ld stuck", (long)sum, SHORT_THREADS, atomic_load(&short_stuck));
	ok(atomic_load(&short_unregistered) == 0, "short-lived threads: each was registered after its operation (%ld not)",
	   atomic_load(&short_unregistered));
	/* The process still works: the main thread and a new thread. */
	aborts = percpu_add(short_counters, 1);
	sum = sum_counters(short_counters);
	ok(aborts >= 0 && sum == SHORT_THREADS + 1, "short-lived threads: the main thread still operates (sum %ld)",
	   (long)sum);
	free(short_counters);
}

/* ---------------------------------------------------------------------- */

int main(void)
{
	const ptrdiff_t *glibc_offset = dlsym(RTLD_DEFAULT, "__rseq_offset");
	const unsigned int *glibc_size = dlsym(RTLD_DEFAULT, "__rseq_size");
	unsigned long feature = getauxval(AT_RSEQ_FEATURE_SIZE);
	unsigned long align = getauxval(AT_RSEQ_ALIGN);
	pthread_t t;
	double t0 = now();

	/* The probe key: a key destructor of the program. */
	if (pthread_key_create(&probe_key, probe_destructor))
		bail_out("pthread_key_create");
	plan_no_plan();
	nr_cpus = rseq_get_max_nr_cpus();
	if (nr_cpus <= 0)
		bail_out("rseq_get_max_nr_cpus() = %d", nr_cpus);
	if (!feature)
		feature = 20;
	libc_owns = rseq_available(RSEQ_AVAILABLE_QUERY_LIBC);
	diag("glibc owns registration: %d; __rseq_size %d; inline: %s", libc_owns,
	     glibc_size ? (int)*glibc_size : -1,
#ifdef RSEQ_NO_INLINE
	     "no"
#else
	     "yes"
#endif
	     );

	test_available(glibc_size != NULL, glibc_size ? *glibc_size : 0);
	test_data_symbols(glibc_offset, (unsigned int)feature, align);
	register_sequence("main thread");
	if (pthread_create(&t, NULL, register_sequence_thread, NULL))
		bail_out("pthread_create");
	pthread_join(t, NULL);
	test_automatic_registration(0);
	test_automatic_registration(1);
	test_thread_exit();
	test_short_lived_threads();
	/* Nothing above changed the data symbols. */
	ok(rseq_flags == 0 && rseq_size == (libc_owns ? (feature < 32 ? feature : 32) : feature),
	   "data symbols unchanged at the end (size %u, flags %u)", rseq_size, rseq_flags);
	diag("total %.3f s", now() - t0);
	return exit_status();
}
