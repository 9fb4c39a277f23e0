/* SPDX-License-Identifier: MIT */
/*
 * The whole API with rseq refused by a seccomp filter installed before
 * exec (run as `seccomp_exec ENOSYS|EPERM seccomp_api ENOSYS|EPERM`), so
 * that glibc's registration failed too. Complements cpu_op_progress_test's
 * seccomp part (availability, percpu_addv / list / cpu_op_cmpeqv_storev
 * totals) with:
 *
 *   - in the main thread, a thread from the library's pthread_create and a
 *     thread from glibc's own pthread_create: registration reports the
 *     errno, unregistration fails, rseq_size is 0, no node id / mm_cid,
 *     the CPU-number accessors still give the CPU sched_getcpu() gives;
 *   - every critical-section family (both API generations, CPU_ID and
 *     MM_CID, RELAXED and RELEASE) returns -1 and commits nothing, for
 *     cpu = rseq_cpu_start(), rseq_current_cpu(), cpu_id and mm_cid;
 *   - every percpu_* family completes through a cpu-op with its exact
 *     semantics (success and compare failure, on the current CPU, on
 *     another CPU and in MM_CID mode), and each call is counted as one
 *     fallback;
 *   - the cpu_op_* helpers and a raw cpu_opv() vector;
 *   - threads doing MM_CID-mode percpu_addv, a per-CPU spinlock
 *     (percpu_cmpeqv_storev lock, percpu_cmpeqv_storev_storev_release
 *     unlock-and-publish) and a per-CPU memcpy stack of 16-byte items
 *     (percpu_cmpeqv_memcpy_storev push/pop): exact totals.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>
#include <rseq/percpu-op.h>

#include "tap.h"
#include "glibc_thread.h"

#define READ_ONCE(x)	__atomic_load_n(&(x), __ATOMIC_RELAXED)
#define REPS		20000
#define STACK_CAP	64

static int expect_err;
static const char *expect_name;
static int nr_cpus;

struct node {
	intptr_t payload;
	struct node *next;
};

static uint64_t fallbacks(void)
{
	struct cpu_op_counters c;

	memset(&c, 0, sizeof(c));
	cpu_op_get_counters(&c, sizeof(c));
	return c.fallbacks;
}

/* The CPU sched_getcpu() gives, compared with f(), retried for
 * migrations between the two reads. */
static bool same_cpu(int (*f)(void))
{
	for (int i = 0; i < 1000; i++) {
		int a = sched_getcpu(), b = f(), c = sched_getcpu();

		if (a == b && b == c)
			return true;
	}
	return false;
}

static int acc_current_cpu(void) { return (int)rseq_current_cpu(); }
static int acc_fallback_cpu(void) { return (int)rseq_fallback_current_cpu(); }
static int acc_percpu_cpu(void) { return percpu_current_cpu(); }
static int acc_cpu_op_cpu(void) { return cpu_op_get_current_cpu(); }

/* Every family once, set up so that a commit would change something.
 * Returns how many calls did not return -1; *changed counts the calls
 * after which memory differs. */
static int all_families(enum rseq_percpu_mode mode, int cpu, int *changed)
{
	int bad = 0, ret;
	intptr_t v, v2, load, base, counter;
	struct node n2 = { 2, NULL }, n1 = { 1, &n2 };
	intptr_t head;
	char src[16] = "0123456789abcde", dst[16];
	struct { intptr_t pad; intptr_t *slot; } obj = { 0, &counter };
	long off = offsetof(struct node, next);

#define CALL(setup, expr, unchanged) do {				\
	setup;								\
	ret = (expr);							\
	if (ret != -1)							\
		bad++, diag("%s: %s returned %d", mode == RSEQ_PERCPU_MM_CID ? "mm_cid" : "cpu_id", #expr, ret); \
	if (!(unchanged))						\
		(*changed)++, diag("%s committed", #expr);		\
} while (0)

	CALL(v = 1, rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, 2, cpu), v == 1);
	CALL((head = (intptr_t)&n1, load = 0),
	     rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, &head, 0, off, &load, cpu),
	     head == (intptr_t)&n1 && load == 0);
	CALL(v = 1, rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, cpu), v == 1);
	CALL((counter = 7, base = (intptr_t)&obj),
	     rseq_load_add_load_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &base, (long)offsetof(__typeof__(obj), slot), 3, cpu),
	     counter == 7);
	CALL((v = 1, v2 = 0), rseq_load_cbne_store_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, &v2, 5, 2, cpu), v == 1 && v2 == 0);
	CALL((v = 1, v2 = 0), rseq_load_cbne_store_store__ptr(RSEQ_MO_RELEASE, mode, &v, 1, &v2, 5, 2, cpu), v == 1 && v2 == 0);
	CALL((v = 1, v2 = 2), rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, &v2, 2, 9, cpu), v == 1);
	CALL((v = 1, memset(dst, 0, sizeof(dst))),
	     rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, dst, src, sizeof(dst), 2, cpu),
	     v == 1 && dst[0] == 0);
	CALL((v = 1, memset(dst, 0, sizeof(dst))),
	     rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELEASE, mode, &v, 1, dst, src, sizeof(dst), 2, cpu),
	     v == 1 && dst[0] == 0);
	if (mode == RSEQ_PERCPU_CPU_ID) {
		/* The 2017/2018 names. */
		CALL(v = 1, rseq_cmpeqv_storev(&v, 1, 2, cpu), v == 1);
		CALL((head = (intptr_t)&n1, load = 0), rseq_cmpnev_storeoffp_load(&head, 0, off, &load, cpu),
		     head == (intptr_t)&n1 && load == 0);
		CALL(v = 1, rseq_addv(&v, 1, cpu), v == 1);
		CALL((counter = 7, base = (intptr_t)&obj),
		     rseq_offset_deref_addv(&base, (long)offsetof(__typeof__(obj), slot), 3, cpu), counter == 7);
		CALL((v = 1, v2 = 0), rseq_cmpeqv_trystorev_storev(&v, 1, &v2, 5, 2, cpu), v == 1 && v2 == 0);
		CALL((v = 1, v2 = 0), rseq_cmpeqv_trystorev_storev_release(&v, 1, &v2, 5, 2, cpu), v == 1 && v2 == 0);
		CALL((v = 1, v2 = 2), rseq_cmpeqv_cmpeqv_storev(&v, 1, &v2, 2, 9, cpu), v == 1);
		CALL((v = 1, memset(dst, 0, sizeof(dst))), rseq_cmpeqv_trymemcpy_storev(&v, 1, dst, src, sizeof(dst), 2, cpu),
		     v == 1 && dst[0] == 0);
		CALL((v = 1, memset(dst, 0, sizeof(dst))),
		     rseq_cmpeqv_trymemcpy_storev_release(&v, 1, dst, src, sizeof(dst), 2, cpu), v == 1 && dst[0] == 0);
	}
#undef CALL
	return bad;
}

/* Registration and the accessors, from the calling thread. */
static void *check_thread_api(void *arg)
{
	const char *who = arg;
	int ret, err, bad = 0, changed = 0, calls = 0;
	int cpus[4];
	bool avail;

	errno = 0;
	avail = rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL);
	err = errno;
	ok(!avail && err == expect_err, "%s: rseq_available(KERNEL) false, errno %s (got %d)", who, expect_name, err);
	ok(!rseq_available(RSEQ_AVAILABLE_QUERY_LIBC), "%s: rseq_available(LIBC) false", who);
	errno = 0;
	ret = rseq_register_current_thread();
	err = errno;
	ok(ret == -1 && err == expect_err, "%s: rseq_register_current_thread() = -1, errno %s (ret %d, errno %d)",
	   who, expect_name, ret, err);
	errno = 0;
	ret = rseq_unregister_current_thread();
	err = errno;
	ok(ret == -1 && (err == expect_err || err == EINVAL),
	   "%s: rseq_unregister_current_thread() = -1 (ret %d, errno %d)", who, ret, err);
	ok(rseq_size == 0 && rseq_flags == 0 && !rseq_node_id_available() && !rseq_mm_cid_available(),
	   "%s: rseq_size %u, rseq_flags %u: no feature available", who, rseq_size, rseq_flags);
	ok(rseq_current_cpu_raw() < 0 && rseq_cpu_start() < (uint32_t)nr_cpus,
	   "%s: cpu_id %d < 0, cpu_id_start %u a possible CPU", who, (int)rseq_current_cpu_raw(), rseq_cpu_start());
	/* As librseq: a failed registration leaves cpu_id uninitialised. */
	ok(rseq_current_cpu_raw() == RSEQ_ABI_CPU_ID_UNINITIALIZED,
	   "%s: cpu_id stays RSEQ_ABI_CPU_ID_UNINITIALIZED (-1) after the failed registration (%d)", who,
	   (int)rseq_current_cpu_raw());
	ok(same_cpu(acc_current_cpu) && same_cpu(acc_fallback_cpu) && same_cpu(acc_percpu_cpu) && same_cpu(acc_cpu_op_cpu),
	   "%s: rseq_current_cpu, rseq_fallback_current_cpu, percpu_current_cpu, cpu_op_get_current_cpu agree with sched_getcpu",
	   who);

	cpus[0] = (int)rseq_cpu_start();
	cpus[1] = (int)rseq_current_cpu();
	cpus[2] = (int)rseq_current_cpu_raw();
	cpus[3] = (int)rseq_current_mm_cid();
	for (int i = 0; i < 4; i++) {
		bad += all_families(RSEQ_PERCPU_CPU_ID, cpus[i], &changed);
		bad += all_families(RSEQ_PERCPU_MM_CID, cpus[i], &changed);
		calls += 9 + 9 + 9;
	}
	ok(bad == 0 && changed == 0,
	   "%s: %d critical-section calls (every family, both API names, cpu_id and mm_cid, cpu = %d/%d/%d/%d): all return -1 "
	   "(%d did not), none committed (%d did)", who, calls, cpus[0], cpus[1], cpus[2], cpus[3], bad, changed);
	ok(rseq_current_cpu_raw() < 0 && rseq_size == 0, "%s: still not registered after the aborts", who);
	return NULL;
}

/* Every percpu_* family once on `cpu` in `mode`: each must complete. */
static int percpu_families(enum rseq_percpu_mode mode, int cpu, long *calls)
{
	int bad = 0;
	intptr_t v, v2, load;
	struct node n2 = { 2, NULL }, n1 = { 1, &n2 };
	intptr_t head = (intptr_t)&n1;
	char src[16] = "0123456789abcde", dst[16];
	off_t off = offsetof(struct node, next);

#define EXPECT(cond, what) do { (*calls)++; if (!(cond)) bad++, diag("percpu %s on %d: %s failed", \
	mode == RSEQ_PERCPU_MM_CID ? "mm_cid" : "cpu_id", cpu, what); } while (0)

	v = 1;
	EXPECT(percpu_cmpeqv_storev_mode(mode, &v, 1, 2, cpu) == 0 && v == 2, "cmpeqv_storev");
	EXPECT(percpu_cmpeqv_storev_mode(mode, &v, 1, 3, cpu) > 0 && v == 2, "cmpeqv_storev compare failure");
	load = 0;
	EXPECT(percpu_cmpnev_storeoffp_load_mode(mode, &head, 0, off, &load, cpu) == 0 && load == (intptr_t)&n1 &&
	       head == (intptr_t)&n2, "cmpnev_storeoffp_load pop");
	EXPECT(percpu_cmpnev_storeoffp_load_mode(mode, &head, 0, off, &load, cpu) == 0 && load == (intptr_t)&n2 &&
	       head == 0, "cmpnev_storeoffp_load pop last");
	EXPECT(percpu_cmpnev_storeoffp_load_mode(mode, &head, 0, off, &load, cpu) > 0 && head == 0,
	       "cmpnev_storeoffp_load empty");
	v = 10;
	EXPECT(percpu_addv_mode(mode, &v, 5, cpu) == 0 && v == 15, "addv");
	v = 1, v2 = 0;
	EXPECT(percpu_cmpeqv_storev_storev_mode(mode, &v, 1, &v2, 22, 2, cpu) == 0 && v == 2 && v2 == 22, "storev_storev");
	EXPECT(percpu_cmpeqv_storev_storev_mode(mode, &v, 1, &v2, 33, 3, cpu) > 0 && v == 2 && v2 == 22,
	       "storev_storev compare failure");
	EXPECT(percpu_cmpeqv_storev_storev_release_mode(mode, &v, 2, &v2, 44, 4, cpu) == 0 && v == 4 && v2 == 44,
	       "storev_storev_release");
	v = 1, v2 = 2;
	EXPECT(percpu_cmpeqv_cmpeqv_storev_mode(mode, &v, 1, &v2, 2, 9, cpu) == 0 && v == 9, "cmpeqv_cmpeqv_storev");
	EXPECT(percpu_cmpeqv_cmpeqv_storev_mode(mode, &v, 9, &v2, 3, 10, cpu) > 0 && v == 9,
	       "cmpeqv_cmpeqv_storev second compare failure");
	v = 1;
	memset(dst, 0, sizeof(dst));
	EXPECT(percpu_cmpeqv_memcpy_storev_mode(mode, &v, 1, dst, src, sizeof(dst), 2, cpu) == 0 && v == 2 &&
	       !memcmp(dst, src, sizeof(dst)), "memcpy_storev");
	memset(dst, 0, sizeof(dst));
	EXPECT(percpu_cmpeqv_memcpy_storev_mode(mode, &v, 1, dst, src, sizeof(dst), 3, cpu) > 0 && v == 2 && dst[0] == 0,
	       "memcpy_storev compare failure");
	EXPECT(percpu_cmpeqv_memcpy_storev_release_mode(mode, &v, 2, dst, src, 7, 5, cpu) == 0 && v == 5 &&
	       !memcmp(dst, src, 7) && dst[7] == 0, "memcpy_storev_release");
#undef EXPECT
	return bad;
}

static void check_percpu_and_cpu_ops(void)
{
	int cur = percpu_current_cpu(), other = (cur + 1) % nr_cpus, bad = 0, ret;
	long calls = 0;
	uint64_t f0 = fallbacks(), f1;
	intptr_t v = 0, a = 3, b = 3, old = 0, n = 8;
	uint32_t w = 0;
	struct cpu_op ops[2];

	bad += percpu_families(RSEQ_PERCPU_CPU_ID, cur, &calls);
	bad += percpu_families(RSEQ_PERCPU_CPU_ID, other, &calls);
	bad += percpu_families(RSEQ_PERCPU_MM_CID, 0, &calls);
	f1 = fallbacks();
	ok(bad == 0, "%ld percpu_* calls (every family; current cpu %d, other cpu %d, mm_cid 0) complete with exact results",
	   calls, cur, other);
	ok(f1 - f0 == (uint64_t)calls, "each percpu_* call fell back to a cpu-op exactly once (%llu of %ld)",
	   (unsigned long long)(f1 - f0), calls);

	ok(cpu_op_available() == 1 && percpu_op_available() == 1, "cpu_op_available() and percpu_op_available() say yes");
	ok(cpu_op_fence(cur) == 0 && cpu_op_fence(other) == 0, "cpu_op_fence on the current and another CPU succeeds");
	ret = cpu_op_cmpxchg(&a, &b, &old, &n, sizeof(a), other);
	ok(ret == 0 && a == 8 && old == 3, "cpu_op_cmpxchg swaps (ret %d, a %ld, old %ld)", ret, (long)a, (long)old);
	ret = cpu_op_add(&w, 7, sizeof(w), cur);
	ok(ret == 0 && w == 7, "cpu_op_add on a 4-byte word (ret %d, w %u)", ret, w);
	memset(ops, 0, sizeof(ops));
	ops[0].op = CPU_ADD_OP;
	ops[0].len = sizeof(v);
	ops[0].u.arithmetic_op.p = (uintptr_t)&v;
	ops[0].u.arithmetic_op.count = 40;
	ops[1].op = CPU_ADD_OP;
	ops[1].len = sizeof(v);
	ops[1].u.arithmetic_op.p = (uintptr_t)&v;
	ops[1].u.arithmetic_op.count = 2;
	ret = cpu_opv(ops, 2, other, 0);
	ok(ret == 0 && v == 42, "cpu_opv: a two-operation vector on cpu %d (ret %d, v %ld)", other, ret, (long)v);
	errno = 0;
	ret = cpu_opv(ops, 2, -5, 0);
	ok(ret == -1 && errno == EINVAL && v == 42, "cpu_opv on an invalid cpu: EINVAL, nothing done");
}

/* ------------------------------------------------------------------ */
/* Threads */

struct slot {
	intptr_t counter;	/* MM_CID percpu_addv */
	intptr_t lock;		/* spinlock word */
	intptr_t locked_count;	/* plain counter under the lock */
	intptr_t top;		/* memcpy stack: number of items */
	struct { intptr_t a, b; } items[STACK_CAP];
} __attribute__((aligned(128)));

static struct slot *slots;

struct worker {
	pthread_t t;
	long adds, locked, pushed, popped, errors;
	intptr_t pushed_sum, popped_sum;
	int id;
};

static void *worker(void *arg)
{
	struct worker *w = arg;

	for (long i = 0; i < REPS; i++) {
		int c, ret;

		/* MM_CID mode add (id = cpu number: any id below nr_cpus). */
		c = percpu_current_cpu();
		if (percpu_addv_mode(RSEQ_PERCPU_MM_CID, &slots[c].counter, 1, c) == 0)
			w->adds++;
		else
			w->errors++;

		/* Spinlock: take with cmpeqv_storev 0 -> 1, unlock while
		 * publishing the incremented counter. */
		c = percpu_current_cpu();
		for (long spins = 0;; spins++) {
			ret = percpu_cmpeqv_storev(&slots[c].lock, 0, 1, c);
			if (ret == 0)
				break;
			if (ret < 0 || spins > 100000000L) {
				w->errors++;
				goto next;
			}
			sched_yield();
		}
		ret = percpu_cmpeqv_storev_storev_release(&slots[c].lock, 1, &slots[c].locked_count,
							  READ_ONCE(slots[c].locked_count) + 1, 0, c);
		if (ret == 0)
			w->locked++;
		else
			w->errors++;
next:
		/* memcpy stack: push one item, pop one item. */
		for (;;) {
			intptr_t item[2] = { (intptr_t)w->id * REPS + i + 1, 0 };
			intptr_t top;

			item[1] = ~item[0];
			c = percpu_current_cpu();
			top = READ_ONCE(slots[c].top);
			if (top >= STACK_CAP)
				break;
			ret = percpu_cmpeqv_memcpy_storev(&slots[c].top, top, &slots[c].items[top], item, sizeof(item),
							  top + 1, c);
			if (ret == 0) {
				w->pushed++;
				w->pushed_sum += item[0];
				break;
			}
			if (ret < 0) {
				w->errors++;
				break;
			}
		}
		for (;;) {
			intptr_t item[2] = { 0, 0 };
			intptr_t top;

			c = percpu_current_cpu();
			top = READ_ONCE(slots[c].top);
			if (top <= 0)
				break;
			ret = percpu_cmpeqv_memcpy_storev(&slots[c].top, top, item, &slots[c].items[top - 1], sizeof(item),
							  top - 1, c);
			if (ret == 0) {
				w->popped++;
				w->popped_sum += item[0];
				if (item[1] != ~item[0])
					w->errors++;	/* torn item */
				break;
			}
			if (ret < 0) {
				w->errors++;
				break;
			}
		}
	}
	return NULL;
}

static void check_threads(void)
{
	int nproc = (int)sysconf(_SC_NPROCESSORS_ONLN), n;
	struct worker *ws;
	long adds = 0, locked = 0, pushed = 0, popped = 0, errors = 0;
	intptr_t counter = 0, locked_count = 0, pushed_sum = 0, popped_sum = 0, left = 0, left_sum = 0;
	int held = 0;

	n = 4 * (nproc > 0 ? nproc : 1);
	slots = aligned_alloc(128, (size_t)nr_cpus * sizeof(*slots));
	ws = calloc((size_t)n, sizeof(*ws));
	if (!slots || !ws)
		bail_out("out of memory");
	memset(slots, 0, (size_t)nr_cpus * sizeof(*slots));
	for (int i = 0; i < n; i++) {
		ws[i].id = i;
		if (pthread_create(&ws[i].t, NULL, worker, &ws[i]))
			bail_out("pthread_create");
	}
	for (int i = 0; i < n; i++) {
		pthread_join(ws[i].t, NULL);
		adds += ws[i].adds;
		locked += ws[i].locked;
		pushed += ws[i].pushed;
		popped += ws[i].popped;
		pushed_sum += ws[i].pushed_sum;
		popped_sum += ws[i].popped_sum;
		errors += ws[i].errors;
	}
	for (int c = 0; c < nr_cpus; c++) {
		counter += slots[c].counter;
		locked_count += slots[c].locked_count;
		if (slots[c].lock)
			held++;
		for (intptr_t k = 0; k < slots[c].top; k++) {
			left++;
			left_sum += slots[c].items[k].a;
		}
	}
	diag("%d threads x %d: %ld adds, %ld locked increments, %ld pushed, %ld popped, %ld left", n, REPS, adds, locked,
	     pushed, popped, (long)left);
	ok(errors == 0 && held == 0, "threads: no operation failed (%ld), no spinlock left held (%d)", errors, held);
	ok(counter == (intptr_t)n * REPS && adds == (long)n * REPS, "MM_CID percpu_addv: exact total %ld (expected %ld)",
	   (long)counter, (long)n * REPS);
	ok(locked_count == (intptr_t)n * REPS && locked == (long)n * REPS,
	   "spinlock-protected counter: exact total %ld (expected %ld)", (long)locked_count, (long)n * REPS);
	ok(pushed == (long)n * REPS && popped + left == pushed && popped_sum + left_sum == pushed_sum,
	   "memcpy stack: %ld pushed = %ld popped + %ld left, item sums match (%ld = %ld + %ld)", pushed, popped, (long)left,
	   (long)pushed_sum, (long)popped_sum, (long)left_sum);
	free(ws);
	free(slots);
}

int main(int argc, char **argv)
{
	pthread_t t;

	if (argc < 2 || (strcmp(argv[1], "ENOSYS") && strcmp(argv[1], "EPERM")))
		bail_out("usage: seccomp_api ENOSYS|EPERM (under seccomp_exec)");
	expect_name = argv[1];
	expect_err = !strcmp(argv[1], "EPERM") ? EPERM : ENOSYS;
	alarm(120);
	plan_no_plan();
	nr_cpus = rseq_get_max_nr_cpus();
	ok(nr_cpus > 0, "rseq_get_max_nr_cpus() = %d", nr_cpus);
	diag("rseq_offset %td, rseq_size %u, build %s", rseq_offset, rseq_size,
#ifdef RSEQ_NO_INLINE
	     "noinline"
#else
	     "inline"
#endif
	     );
	check_thread_api((void *)"main thread");
	if (pthread_create(&t, NULL, check_thread_api, (void *)"pthread_create thread"))
		bail_out("pthread_create");
	pthread_join(t, NULL);
	if (glibc_pthread_create(&t, NULL, check_thread_api, (void *)"glibc pthread_create thread"))
		bail_out("glibc pthread_create");
	pthread_join(t, NULL);
	check_percpu_and_cpu_ops();
	check_threads();
	return exit_status();
}
