/* SPDX-License-Identifier: MIT */
/*
 * The library loaded with dlopen() by a program that does not link it,
 * after other threads already exist: the load succeeds (its static TLS
 * fits glibc's surplus, unlike librseq's), the pre-existing threads get
 * working rseq without calling register (automatically when the library
 * owns registration), per-CPU counting is exact, and dlclose() leaves the
 * library loaded and usable (it is NODELETE).
 *
 * Built without librseq on the link line (see the Makefile); only the
 * header <rseq/thread-pointer.h> is used. The inline build reads cpu_id
 * from the area directly (thread pointer + rseq_offset) as the inline
 * headers do; the RSEQ_NO_INLINE build calls rseq_current_cpu_raw().
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <rseq/thread-pointer.h>

#include "tap.h"

#define NTHREADS 4
#define ITERS 100000
#define MAX_ABORTS 1000000L
#define QUERY_LIBC 1

struct counter {
	intptr_t v;
} __attribute__((aligned(128)));

static int (*p_addv)(intptr_t *v, intptr_t count, int cpu);
static uint32_t (*p_cpu_start)(void);
static int32_t (*p_cpu_raw)(void);
static bool (*p_available)(unsigned int query);
static int (*p_max_nr_cpus)(void);
static ptrdiff_t *p_offset;
static unsigned int *p_size;

static int nr_cpus;
static struct counter *counters;
static pthread_barrier_t start_barrier;

/* cpu_id read from the area at thread pointer + rseq_offset. */
static int32_t direct_cpu_raw(void)
{
	ptrdiff_t off = __atomic_load_n(p_offset, __ATOMIC_RELAXED);

	if (!off)
		return -1;
	return __atomic_load_n((int32_t *)((char *)rseq_thread_pointer() + off + 4), __ATOMIC_RELAXED);
}

/* cpu_id of the calling thread, the way this build reads it. */
static int32_t cpu_raw(void)
{
#ifdef RSEQ_NO_INLINE
	return p_cpu_raw();
#else
	return direct_cpu_raw();
#endif
}

static long percpu_add(intptr_t n)
{
	for (long aborts = 0; aborts < MAX_ABORTS; aborts++) {
		int cpu = (int)p_cpu_start();

		if (cpu < 0 || cpu >= nr_cpus)
			return -1;
		if (p_addv(&counters[cpu].v, n, cpu) == 0)
			return aborts;
	}
	return -1;
}

static intptr_t sum(void)
{
	intptr_t s = 0;

	for (int i = 0; i < nr_cpus; i++)
		s += counters[i].v;
	return s;
}

struct result {
	int cpu_before;
	int cpu_after_first;
	long stuck;
	long aborts;
};

static void *worker(void *arg)
{
	struct result *r = arg;

	/* Wait until main() has loaded the library. */
	pthread_barrier_wait(&start_barrier);
	r->cpu_before = cpu_raw();
	for (int i = 0; i < ITERS; i++) {
		long a = percpu_add(1);

		if (a < 0)
			r->stuck++;
		else
			r->aborts += a;
		if (i == 0)
			r->cpu_after_first = cpu_raw();
	}
	return NULL;
}

static void *late_worker(void *arg)
{
	struct result *r = arg;

	r->cpu_before = cpu_raw();
	for (int i = 0; i < ITERS; i++) {
		if (percpu_add(1) < 0)
			r->stuck++;
		if (i == 0)
			r->cpu_after_first = cpu_raw();
	}
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define LOOKUP(ptr, name) do {						\
	*(void **)&(ptr) = dlsym(handle, name);				\
	if (!(ptr))							\
		missing++, diag("dlsym(%s): %s", name, dlerror());	\
} while (0)

int main(void)
{
	const ptrdiff_t *glibc_offset = dlsym(RTLD_DEFAULT, "__rseq_offset");
	const unsigned int *glibc_size = dlsym(RTLD_DEFAULT, "__rseq_size");
	bool glibc_expected = glibc_size && *glibc_size != 0;
	pthread_t t[NTHREADS], late;
	struct result res[NTHREADS], late_res;
	void *handle, *again;
	int missing = 0, main_cpu, libc_owns, before_ok = 1, after_ok = 1;
	long stuck = 0, aborts = 0;
	intptr_t total;
	double t0 = now(), t_load;

	plan_no_plan();
	diag("glibc __rseq_size %d; build: %s", glibc_size ? (int)*glibc_size : -1,
#ifdef RSEQ_NO_INLINE
	     "noinline"
#else
	     "direct area reads"
#endif
	     );
	ok(!dlsym(RTLD_DEFAULT, "rseq_offset") && !dlopen("librseq.so.0", RTLD_NOW | RTLD_NOLOAD),
	   "librseq is not linked into the program");

	memset(res, 0, sizeof(res));
	pthread_barrier_init(&start_barrier, NULL, NTHREADS + 1);
	for (int i = 0; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, worker, &res[i]))
			bail_out("pthread_create");

	/* Threads exist (blocked on the barrier): now load the library. */
	t_load = now();
	handle = dlopen("librseq.so.0", RTLD_NOW);
	t_load = now() - t_load;
	if (!ok(handle != NULL, "dlopen(librseq.so.0) with %d threads running succeeds (%.3f ms)%s%s", NTHREADS,
		t_load * 1e3, handle ? "" : ": ", handle ? "" : dlerror()))
		bail_out("cannot continue without the library");
	LOOKUP(p_addv, "rseq_addv");
	LOOKUP(p_cpu_start, "rseq_cpu_start");
	LOOKUP(p_cpu_raw, "rseq_current_cpu_raw");
	LOOKUP(p_available, "rseq_available");
	LOOKUP(p_max_nr_cpus, "rseq_get_max_nr_cpus");
	LOOKUP(p_offset, "rseq_offset");
	LOOKUP(p_size, "rseq_size");
	if (!ok(missing == 0, "dlsym finds rseq_addv, rseq_cpu_start, rseq_current_cpu_raw, rseq_available, "
		"rseq_get_max_nr_cpus, rseq_offset, rseq_size (%d missing)", missing))
		bail_out("symbols missing");

	nr_cpus = p_max_nr_cpus();
	if (nr_cpus <= 0)
		bail_out("rseq_get_max_nr_cpus() = %d", nr_cpus);
	counters = zalloc_aligned((size_t)nr_cpus * sizeof(*counters));
	if (!counters)
		bail_out("calloc");

	libc_owns = p_available(QUERY_LIBC);
	diag("rseq_offset %td, rseq_size %u, glibc owns registration: %d", *p_offset, *p_size, libc_owns);
	ok(libc_owns == glibc_expected, "rseq_available(LIBC) = %d matches glibc's __rseq_size", libc_owns);
	if (libc_owns)
		ok(glibc_offset && *p_offset == *glibc_offset, "glibc owns: rseq_offset == __rseq_offset (%td)", *p_offset);
	else
		ok(*p_offset != 0 && (!glibc_offset || *p_offset != *glibc_offset),
		   "library owns: rseq_offset (%td) is the library's own area", *p_offset);
	main_cpu = cpu_raw();
	ok(main_cpu >= 0, "the loading thread is registered right after dlopen (cpu_id %d)", main_cpu);
	ok(*p_size != 0 && *p_size != -1U, "rseq_size is an active feature size (%u)", *p_size);
	for (int i = 0; i < 100; i++) {
		/* Equal unless the thread migrated between the two reads. */
		main_cpu = p_cpu_raw();
		if (main_cpu == direct_cpu_raw())
			break;
	}
	ok(main_cpu >= 0 && main_cpu == direct_cpu_raw(),
	   "rseq_current_cpu_raw() (%d) agrees with the area at thread pointer + rseq_offset", main_cpu);

	/* Release the pre-existing threads. */
	pthread_barrier_wait(&start_barrier);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start_barrier);
	for (int i = 0; i < NTHREADS; i++) {
		if (libc_owns ? res[i].cpu_before < 0 : res[i].cpu_before != -1)
			before_ok = 0;
		if (res[i].cpu_after_first < 0)
			after_ok = 0;
		stuck += res[i].stuck;
		aborts += res[i].aborts;
		diag("thread %d: cpu_id %d before its first operation, %d after; %ld aborts", i, res[i].cpu_before,
		     res[i].cpu_after_first, res[i].aborts);
	}
	if (libc_owns) {
		ok(before_ok, "glibc owns: pre-existing threads were registered by glibc");
		ok(after_ok, "glibc owns: pre-existing threads stay registered");
	} else {
		ok(before_ok, "library owns: pre-existing threads start unregistered (cpu_id -1)");
		ok(after_ok, "library owns: each pre-existing thread got registered automatically by its first operation");
	}
	total = sum();
	ok(stuck == 0, "no operation got stuck (%ld)", stuck);
	ok(total == (intptr_t)NTHREADS * ITERS, "exact total %ld (expected %ld)", (long)total, (long)NTHREADS * ITERS);

	/* dlclose: NODELETE keeps the library loaded and usable. */
	ok(dlclose(handle) == 0, "dlclose succeeds");
	again = dlopen("librseq.so.0", RTLD_NOW | RTLD_NOLOAD);
	ok(again != NULL, "after dlclose the library is still loaded (NODELETE)");
	ok(percpu_add(7) >= 0 && cpu_raw() >= 0, "rseq_addv through the saved pointer still works after dlclose");
	total = sum();
	ok(total == (intptr_t)NTHREADS * ITERS + 7, "exact total after dlclose (%ld)", (long)total);
	memset(&late_res, 0, sizeof(late_res));
	if (pthread_create(&late, NULL, late_worker, &late_res))
		bail_out("pthread_create");
	pthread_join(late, NULL);
	total = sum();
	ok(late_res.stuck == 0 && late_res.cpu_after_first >= 0 && total == (intptr_t)(NTHREADS + 1) * ITERS + 7,
	   "a thread created after dlclose operates (cpu_id %d before, %d after; total %ld)", late_res.cpu_before,
	   late_res.cpu_after_first, (long)total);
	if (again)
		dlclose(again);
	free(counters);
	diag("total %.3f s (%ld aborts in the pre-existing threads)", now() - t0, aborts);
	return exit_status();
}
