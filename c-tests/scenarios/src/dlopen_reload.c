/* SPDX-License-Identifier: MIT */
/*
 * dlopen, dlclose and dlopen again (three cycles) in a program that does
 * not link the library, with threads that exist before the first dlopen
 * and threads created while the library is "closed". Each reopen must
 * succeed and find the same library state: the same function and data
 * addresses, the same rseq_offset / rseq_size, the same cpu-op ownership
 * table (rseq_cpu_op_owners: a re-run initialisation would map a new
 * one), cpu-op counters that kept counting, the main thread still
 * registered without any call, and the explicit registrations made before
 * the dlclose still counted after it (two registers: the first unregister
 * keeps the thread registered, the second unregisters it). Every thread's increments (rseq_addv
 * retried, percpu_addv, cpu_op_addv) add up exactly.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

#define CYCLES		3
#define EARLY		3	/* threads created before the first dlopen */
#define ITERS		20000
#define QUERY_LIBC	1

struct counters9 {	/* struct cpu_op_counters, first 9 fields */
	uint64_t vectors, fences_none, fences_own_cpu, fences_membarrier_cpu, fences_membarrier_all,
		 fences_migrate, waits, rseq_aborts, fallbacks;
};

struct lib {
	void *handle;
	int (*addv)(intptr_t *, intptr_t, int);
	int (*percpu_addv)(intptr_t *, intptr_t, int);
	int (*cpu_op_addv)(intptr_t *, int64_t, int);
	uint32_t (*cpu_start)(void);
	int32_t (*cpu_raw)(void);
	int (*percpu_current_cpu)(void);
	bool (*available)(unsigned int);
	int (*max_cpus)(void);
	int (*reg)(void);
	int (*unreg)(void);
	int (*get_counters)(struct counters9 *, size_t);
	ptrdiff_t *offset;
	unsigned int *size;
	char **owners;
};

static struct lib L;
static int nr_cpus;
static intptr_t *counters;	/* [nr_cpus * 16]: one 128-byte line per CPU */
static pthread_barrier_t go[CYCLES];

static int open_lib(struct lib *l, int flags)
{
	int missing = 0;

	memset(l, 0, sizeof(*l));
	l->handle = dlopen("librseq.so.0", flags);
	if (!l->handle)
		return -1;
#define SYM(f, name) do { *(void **)&l->f = dlsym(l->handle, name); if (!l->f) missing++, diag("no %s", name); } while (0)
	SYM(addv, "rseq_addv");
	SYM(percpu_addv, "percpu_addv");
	SYM(cpu_op_addv, "cpu_op_addv");
	SYM(cpu_start, "rseq_cpu_start");
	SYM(cpu_raw, "rseq_current_cpu_raw");
	SYM(percpu_current_cpu, "percpu_current_cpu");
	SYM(available, "rseq_available");
	SYM(max_cpus, "rseq_get_max_nr_cpus");
	SYM(reg, "rseq_register_current_thread");
	SYM(unreg, "rseq_unregister_current_thread");
	SYM(get_counters, "cpu_op_get_counters");
	SYM(offset, "rseq_offset");
	SYM(size, "rseq_size");
	SYM(owners, "rseq_cpu_op_owners");
#undef SYM
	return missing ? -2 : 0;
}

static intptr_t *slot(int cpu)
{
	return &counters[(size_t)cpu * 16];
}

/* 1 through rseq_addv (retried until it commits), 1 through percpu_addv,
 * 1 through cpu_op_addv. Returns the number of failures. */
static long add3(void)
{
	long errors = 0;
	int cpu, tries = 0;

	do
		cpu = (int)L.cpu_start();
	while (L.addv(slot(cpu), 1, cpu) != 0 && ++tries < 1000000);
	if (tries >= 1000000)
		errors++;
	cpu = L.percpu_current_cpu();
	if (L.percpu_addv(slot(cpu), 1, cpu))
		errors++;
	cpu = L.percpu_current_cpu();
	if (L.cpu_op_addv(slot(cpu), 1, cpu))
		errors++;
	return errors;
}

struct worker {
	pthread_t t;
	int first_cycle;	/* the cycle whose reopen it waits for */
	long errors, done;
	int32_t cpu_after;
};

static void *worker(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(&go[w->first_cycle]);
	for (int i = 0; i < ITERS; i++) {
		w->errors += add3();
		w->done += 3;
	}
	w->cpu_after = L.cpu_raw();
	return NULL;
}

static intptr_t total(void)
{
	intptr_t s = 0;

	for (int c = 0; c < nr_cpus; c++)
		s += *slot(c);
	return s;
}

int main(void)
{
	struct worker early[EARLY], late[CYCLES];
	struct lib first;
	struct counters9 c0, c1;
	intptr_t expect = 0;
	int libc_owns, r;
	long errors = 0;

	plan_no_plan();
	memset(early, 0, sizeof(early));
	memset(late, 0, sizeof(late));
	ok(!dlopen("librseq.so.0", RTLD_NOW | RTLD_NOLOAD), "the library is not loaded at start");
	for (int i = 0; i < CYCLES; i++)
		pthread_barrier_init(&go[i], NULL, i == 0 ? EARLY + 1 : 2);
	for (int i = 0; i < EARLY; i++)
		if (pthread_create(&early[i].t, NULL, worker, &early[i]))
			bail_out("pthread_create");

	r = open_lib(&L, RTLD_NOW | RTLD_LOCAL);
	if (!ok(r == 0, "first dlopen with %d threads running (%d)", EARLY, r))
		bail_out("%s", dlerror());
	first = L;
	nr_cpus = L.max_cpus();
	counters = calloc((size_t)nr_cpus * 16, sizeof(intptr_t));
	if (!counters)
		bail_out("calloc");
	libc_owns = L.available(QUERY_LIBC);
	diag("glibc owns registration: %d; rseq_offset %td, rseq_size %u, owners %p", libc_owns, *L.offset, *L.size,
	     (void *)*L.owners);
	ok(L.reg() == 0 && L.reg() == 0, "two explicit rseq_register_current_thread() calls before the first dlclose");
	errors += add3();
	expect += 3;

	for (int cycle = 0; cycle < CYCLES; cycle++) {
		struct lib again;
		ptrdiff_t off = *L.offset;
		unsigned int size = *L.size;
		char *owners = *L.owners;
		int32_t cpu_before;

		/* Release this cycle's waiting threads while the library is
		 * open, let them finish, then close. */
		pthread_barrier_wait(&go[cycle]);
		if (cycle == 0) {
			for (int i = 0; i < EARLY; i++) {
				pthread_join(early[i].t, NULL);
				errors += early[i].errors;
				expect += early[i].done;
				ok(early[i].cpu_after >= 0, "pre-existing thread %d registered after its operations (cpu_id %d)",
				   i, early[i].cpu_after);
			}
		} else {
			pthread_join(late[cycle - 1].t, NULL);
			errors += late[cycle - 1].errors;
			expect += late[cycle - 1].done;
			ok(late[cycle - 1].cpu_after >= 0,
			   "cycle %d: the thread created while the library was closed is registered (cpu_id %d)", cycle,
			   late[cycle - 1].cpu_after);
		}
		memset(&c0, 0, sizeof(c0));
		L.get_counters(&c0, sizeof(c0));
		ok(total() == expect, "cycle %d: exact total %ld before dlclose (expected %ld)", cycle, (long)total(),
		   (long)expect);

		ok(dlclose(L.handle) == 0, "cycle %d: dlclose", cycle);
		/* A thread created while "closed", by glibc's pthread_create (the
		 * library is not in the global scope: no interposer). */
		if (cycle + 1 < CYCLES) {
			late[cycle].first_cycle = cycle + 1;
			if (pthread_create(&late[cycle].t, NULL, worker, &late[cycle]))
				bail_out("pthread_create");
		}

		r = open_lib(&again, cycle % 2 ? (RTLD_NOW | RTLD_LOCAL) : (RTLD_LAZY | RTLD_GLOBAL));
		if (!ok(r == 0, "cycle %d: dlopen again succeeds (%d)", cycle, r))
			bail_out("%s", dlerror());
		ok(again.addv == first.addv && again.percpu_addv == first.percpu_addv && again.offset == first.offset &&
		   again.owners == first.owners,
		   "cycle %d: same function and data addresses (the library stayed mapped)", cycle);
		ok(*again.offset == off && *again.size == size && *again.owners == owners,
		   "cycle %d: rseq_offset %td, rseq_size %u and the ownership table %p unchanged", cycle, *again.offset,
		   *again.size, (void *)*again.owners);
		cpu_before = again.cpu_raw();
		ok(cpu_before >= 0, "cycle %d: the main thread is still registered, without any call (cpu_id %d)", cycle,
		   cpu_before);
		memset(&c1, 0, sizeof(c1));
		again.get_counters(&c1, sizeof(c1));
		ok(c1.vectors >= c0.vectors && c0.vectors > 0 && c1.fallbacks >= c0.fallbacks,
		   "cycle %d: cpu-op counters persist (vectors %llu -> %llu)", cycle, (unsigned long long)c0.vectors,
		   (unsigned long long)c1.vectors);
		L = again;
		errors += add3();
		expect += 3;
	}
	ok(total() == expect, "final exact total %ld (expected %ld)", (long)total(), (long)expect);
	ok(errors == 0, "no operation failed (%ld)", errors);

	/* The two explicit registrations made before the first dlclose are
	 * still counted: the first unregister only drops one, the second
	 * unregisters the thread (when the library owns registration). */
	errno = 0;
	r = L.unreg();
	ok(r == 0 && L.cpu_raw() >= 0,
	   "first rseq_unregister_current_thread(): 0, the thread stays registered (%d, errno %d, cpu_id %d)", r, errno,
	   L.cpu_raw());
	errno = 0;
	r = L.unreg();
	ok(r == 0, "second rseq_unregister_current_thread(): 0 (errno %d)", errno);
	if (libc_owns)
		skip(1, "glibc owns registration: unregister is a no-op");
	else
		ok(L.cpu_raw() < 0, "library owns: the second one unregistered the thread (cpu_id %d)", L.cpu_raw());
	errors = add3();
	ok(errors == 0 && L.cpu_raw() >= 0 && total() == expect + 3,
	   "the next operations register it again automatically and count exactly (cpu_id %d)", L.cpu_raw());
	free(counters);
	return exit_status();
}
