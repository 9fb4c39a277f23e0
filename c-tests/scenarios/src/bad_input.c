/* SPDX-License-Identifier: MIT */
/*
 * Bad input: every invalid argument of the C API returns the documented
 * error and changes nothing.
 *
 * Every operation works on buffers inside one arena of known content;
 * after each rejected call the whole arena (every buffer and the bytes
 * around it) is compared with a snapshot taken before the call. The
 * arguments that are not under test are valid and chosen so that the
 * call would change memory if it were not rejected (compares that would
 * succeed, the current CPU), and positive controls show that the same
 * call with the bad argument fixed does change memory.
 *
 *   rseq ops (7 families, librseq and 2017 names): cpu out of range
 *     -> -1, nothing committed; in an unregistered thread (library-owned
 *     registration) also cpu -1 (= its cpu_id) and mm_cid 0;
 *     bad enum rseq_mo / rseq_percpu_mode -> -1/EINVAL
 *   percpu_*: bad cpu, bad mode -> -1/EINVAL
 *   cpu_op_* helpers: bad cpu, bad mode, bad lengths -> -1/EINVAL
 *   cpu_opv: bad cpu, flags, counts, NULL vector (EFAULT), unknown ops,
 *     bad lengths, shifts >= width, total data too large (EINVAL),
 *     NULL / PROT_NONE / read-only / wrapping addresses (EFAULT, EAGAIN
 *     with expect_fault), an invalid op after valid ones (nothing applied)
 *   cpu_op_get_counters(NULL) -> EINVAL; rseq_available(bad query)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/cpu_opv.h>
#include <rseq/rseq.h>
#include <rseq/cpu-op.h>
#include <rseq/percpu-op.h>

#include "glibc_thread.h"
#include "tap.h"

#define E1 ((intptr_t)0x1111)
#define E2 ((intptr_t)0x2222)
#define NEWV ((intptr_t)0x7777)

/* The arena: 4 pages of data, then a PROT_NONE page, then a read-only
 * page. Offsets of the buffers (bytes). */
#define ARENA_DATA (4 * 4096)
enum {
	OFF_V = 128,		/* intptr_t v = E1 */
	OFF_V2 = 256,		/* intptr_t v2 = E2 */
	OFF_HEAD = 384,		/* list head -> node */
	OFF_NODE = 512,		/* node: next at 0 */
	OFF_NODE2 = 640,
	OFF_LOAD = 768,		/* pop result */
	OFF_PTR = 896,		/* deref: *ptr = arena + OFF_TABLE */
	OFF_TABLE = 1024,	/* table + 8 -> counter */
	OFF_CNT = 1152,		/* the deref'ed counter */
	OFF_DST = 1280,		/* small memcpy dst (64) */
	OFF_SRC = 1408,		/* small memcpy src (64) */
	OFF_OLD = 1536,		/* cmpxchg old */
	OFF_NEW = 1664,		/* cmpxchg new */
	OFF_EXP = 1792,		/* cmpxchg expect (= contents of v) */
	OFF_U8 = 1920,		/* small ints for the vector ops */
	OFF_BIGDST = 4096 + 64,	/* 4097+ bytes */
	OFF_BIGSRC = 8192 + 128,
};

static unsigned char *arena, *snapshot, *noaccess, *readonly;
static size_t page;
static int cpu, max_cpus;
static int libc_owns;

#define AT(off) ((void *)(arena + (off)))
#define IP(off) ((intptr_t *)(arena + (off)))

static void arena_reset(void)
{
	for (size_t i = 0; i < ARENA_DATA; i++)
		arena[i] = (unsigned char)(i * 131 + 7);
	*IP(OFF_V) = E1;
	*IP(OFF_V2) = E2;
	*IP(OFF_HEAD) = (intptr_t)AT(OFF_NODE);
	*IP(OFF_NODE) = (intptr_t)AT(OFF_NODE2);
	*IP(OFF_NODE2) = 0;
	*IP(OFF_LOAD) = 0;
	*IP(OFF_PTR) = (intptr_t)AT(OFF_TABLE);
	*IP(OFF_TABLE + 8) = (intptr_t)AT(OFF_CNT);
	*IP(OFF_CNT) = 100;
	*IP(OFF_EXP) = E1;
	*IP(OFF_NEW) = NEWV;
	memcpy(snapshot, arena, ARENA_DATA);
}

/* First changed byte, or -1. */
static long arena_changed(void)
{
	for (size_t i = 0; i < ARENA_DATA; i++)
		if (arena[i] != snapshot[i])
			return (long)i;
	if (readonly[0] != 0x5a || readonly[page - 1] != 0x5a)
		return -2;
	return -1;
}

/* Checks a rejected call: its return value, errno (0: any) and that
 * nothing changed. */
static void check_rejected(long ret, int err, int expect_errno, const char *what)
{
	long at = arena_changed();

	ok(ret == -1 && (expect_errno == 0 || err == expect_errno) && at == -1,
	   "%s -> -1%s%s (ret %ld, errno %d%s)", what,
	   expect_errno == EINVAL ? "/EINVAL" : expect_errno == EFAULT ? "/EFAULT" :
	   expect_errno == EAGAIN ? "/EAGAIN" : "",
	   ", nothing changed", ret, err, at == -1 ? "" : ", MEMORY CHANGED");
	if (at >= 0)
		diag("first changed byte at arena offset %ld", at);
}

#define REJECT(expr, experr, ...) do {						\
	char __what[256];							\
	long __r;								\
	int __e;								\
	snprintf(__what, sizeof(__what), __VA_ARGS__);				\
	arena_reset();								\
	errno = 0;								\
	__r = (long)(expr);							\
	__e = errno;								\
	check_rejected(__r, __e, (experr), __what);				\
} while (0)

/* A positive control: the call returns `want` and changes the arena. */
#define ACCEPT(expr, want, ...) do {						\
	char __what[256];							\
	long __r;								\
	snprintf(__what, sizeof(__what), __VA_ARGS__);				\
	arena_reset();								\
	errno = 0;								\
	__r = (long)(expr);							\
	ok(__r == (want) && arena_changed() != -1,				\
	   "control: %s -> %ld and memory changed (ret %ld, errno %d)",	\
	   __what, (long)(want), __r, errno);					\
} while (0)

/* ---- rseq operations -------------------------------------------------- */

#define NFAM 7
static const char *const fam_name[NFAM] = {
	"load_cbne_store", "load_cbeq_store_add_load_store", "load_add_store",
	"load_add_load_load_add_store", "load_cbne_store_store",
	"load_cbne_load_cbne_store", "load_cbne_memcpy_store",
};

static int call_family(int fam, enum rseq_mo mo, enum rseq_percpu_mode mode, int c)
{
	switch (fam) {
	case 0:
		return rseq_load_cbne_store__ptr(mo, mode, IP(OFF_V), E1, NEWV, c);
	case 1:
		return rseq_load_cbeq_store_add_load_store__ptr(mo, mode, IP(OFF_HEAD), 0, 0, IP(OFF_LOAD), c);
	case 2:
		return rseq_load_add_store__ptr(mo, mode, IP(OFF_V), 5, c);
	case 3:
		return rseq_load_add_load_load_add_store__ptr(mo, mode, IP(OFF_PTR), 8, 5, c);
	case 4:
		return rseq_load_cbne_store_store__ptr(mo, mode, IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 5:
		return rseq_load_cbne_load_cbne_store__ptr(mo, mode, IP(OFF_V), E1, IP(OFF_V2), E2, NEWV, c);
	default:
		return rseq_load_cbne_memcpy_store__ptr(mo, mode, IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	}
}

/* The 2017 names (CPU_ID mode). */
#define N2017 9
static const char *const name2017[N2017] = {
	"rseq_cmpeqv_storev", "rseq_cmpnev_storeoffp_load", "rseq_addv",
	"rseq_offset_deref_addv", "rseq_cmpeqv_trystorev_storev",
	"rseq_cmpeqv_trystorev_storev_release", "rseq_cmpeqv_cmpeqv_storev",
	"rseq_cmpeqv_trymemcpy_storev", "rseq_cmpeqv_trymemcpy_storev_release",
};

static int call_2017(int i, int c)
{
	switch (i) {
	case 0: return rseq_cmpeqv_storev(IP(OFF_V), E1, NEWV, c);
	case 1: return rseq_cmpnev_storeoffp_load(IP(OFF_HEAD), 0, 0, IP(OFF_LOAD), c);
	case 2: return rseq_addv(IP(OFF_V), 5, c);
	case 3: return rseq_offset_deref_addv(IP(OFF_PTR), 8, 5, c);
	case 4: return rseq_cmpeqv_trystorev_storev(IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 5: return rseq_cmpeqv_trystorev_storev_release(IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 6: return rseq_cmpeqv_cmpeqv_storev(IP(OFF_V), E1, IP(OFF_V2), E2, NEWV, c);
	case 7: return rseq_cmpeqv_trymemcpy_storev(IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	default: return rseq_cmpeqv_trymemcpy_storev_release(IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	}
}

/* Runs a call that should commit on the current CPU: retries aborts. */
static int committed(int fam, enum rseq_mo mo, enum rseq_percpu_mode mode)
{
	for (int i = 0; i < 100000; i++) {
		int c = mode == RSEQ_PERCPU_MM_CID ? (int)rseq_current_mm_cid() : (int)rseq_cpu_start();
		int r;

		arena_reset();
		r = call_family(fam, mo, mode, c);
		if (r >= 0)
			return r;
	}
	return -1;
}

static const int bad_cpus[] = { -1, -2, -3, INT_MIN, INT_MIN + 1, 0 /* = max */, 0 /* = max + 1 */,
				4095, 4096, 4097, 1 << 20, INT_MAX };
#define NBAD_CPUS ((int)(sizeof(bad_cpus) / sizeof(bad_cpus[0])))

static int bad_cpu(int i)
{
	if (i == 5)
		return max_cpus;
	if (i == 6)
		return max_cpus + 1;
	return bad_cpus[i];
}

static void test_rseq_ops(void)
{
	static const unsigned int bad_mo[] = { 1, 2, 4, 5, 6, 100, UINT_MAX, 0x80000000u };
	static const unsigned int bad_mode[] = { 2, 3, 100, UINT_MAX, 0x80000000u };
	int mm = rseq_mm_cid_available();

	for (int fam = 0; fam < NFAM; fam++) {
		int release_ok = fam == 4 || fam == 6;

		ok(committed(fam, RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID) == 0 && arena_changed() != -1,
		   "control: %s RELAXED CPU_ID on the current cpu commits", fam_name[fam]);
		if (release_ok)
			ok(committed(fam, RSEQ_MO_RELEASE, RSEQ_PERCPU_CPU_ID) == 0 && arena_changed() != -1,
			   "control: %s RELEASE CPU_ID on the current cpu commits", fam_name[fam]);
		if (mm)
			ok(committed(fam, RSEQ_MO_RELAXED, RSEQ_PERCPU_MM_CID) == 0 && arena_changed() != -1,
			   "control: %s RELAXED MM_CID on the current mm_cid commits", fam_name[fam]);
		for (int i = 0; i < NBAD_CPUS; i++)
			REJECT(call_family(fam, RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, bad_cpu(i)), 0,
			       "%s CPU_ID cpu %d", fam_name[fam], bad_cpu(i));
		for (int i = 0; i < NBAD_CPUS; i++)
			REJECT(call_family(fam, RSEQ_MO_RELAXED, RSEQ_PERCPU_MM_CID, bad_cpu(i)), 0,
			       "%s MM_CID id %d", fam_name[fam], bad_cpu(i));
		for (size_t i = 0; i < sizeof(bad_mo) / sizeof(bad_mo[0]); i++)
			REJECT(call_family(fam, (enum rseq_mo)bad_mo[i], RSEQ_PERCPU_CPU_ID, (int)rseq_cpu_start()), EINVAL,
			       "%s rseq_mo %d", fam_name[fam], (int)bad_mo[i]);
		if (!release_ok)
			REJECT(call_family(fam, RSEQ_MO_RELEASE, RSEQ_PERCPU_CPU_ID, (int)rseq_cpu_start()), EINVAL,
			       "%s rseq_mo RELEASE (not accepted by this family)", fam_name[fam]);
		for (size_t i = 0; i < sizeof(bad_mode) / sizeof(bad_mode[0]); i++)
			REJECT(call_family(fam, RSEQ_MO_RELAXED, (enum rseq_percpu_mode)bad_mode[i], (int)rseq_cpu_start()), EINVAL,
			       "%s percpu_mode %d", fam_name[fam], (int)bad_mode[i]);
		REJECT(call_family(fam, (enum rseq_mo)100, (enum rseq_percpu_mode)100, (int)rseq_cpu_start()), EINVAL,
		       "%s rseq_mo 100 and percpu_mode 100", fam_name[fam]);
	}
	for (int i = 0; i < N2017; i++) {
		for (int j = 0; j < NBAD_CPUS; j++)
			REJECT(call_2017(i, bad_cpu(j)), 0, "%s cpu %d", name2017[i], bad_cpu(j));
	}
}

/* In a thread without an rseq registration (library-owned registration
 * only), cpu_id is -1 and mm_cid 0: a matching cpu argument must still
 * not commit. */
static void unregister_now(void)
{
	if (!libc_owns)
		rseq_unregister_current_thread();
}

static void *unregistered_thread(void *arg)
{
	(void)arg;
	diag("unregistered thread: cpu_id %d", rseq_current_cpu_raw());
	ok(rseq_current_cpu_raw() < 0, "a thread started behind the library's back has no registration (cpu_id %d)",
	   rseq_current_cpu_raw());
	REJECT(rseq_cmpeqv_storev(IP(OFF_V), E1, NEWV, -1), 0, "unregistered thread (fresh): rseq_cmpeqv_storev cpu -1");
	return NULL;
}

static void test_unregistered(void)
{
	pthread_t t;

	if (libc_owns) {
		skip(2 * NFAM + N2017 + 4, "glibc owns registration: threads are always registered");
		return;
	}
	for (int fam = 0; fam < NFAM; fam++) {
		unregister_now();
		REJECT(call_family(fam, RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, -1), 0,
		       "unregistered: %s CPU_ID cpu -1 (= cpu_id)", fam_name[fam]);
		unregister_now();
		REJECT(call_family(fam, RSEQ_MO_RELAXED, RSEQ_PERCPU_MM_CID, 0), 0,
		       "unregistered: %s MM_CID id 0 (= mm_cid)", fam_name[fam]);
	}
	for (int i = 0; i < N2017; i++) {
		unregister_now();
		REJECT(call_2017(i, -1), 0, "unregistered: %s cpu -1", name2017[i]);
	}
	unregister_now();
	ok(rseq_current_cpu_raw() < 0, "after explicit unregistration cpu_id is %d", rseq_current_cpu_raw());
	REJECT(rseq_unregister_current_thread(), EINVAL, "rseq_unregister_current_thread() when not registered");
	/* Registered again on the next slow path. */
	(void)rseq_current_cpu();
	if (glibc_pthread_create(&t, NULL, unregistered_thread, NULL) == 0)
		pthread_join(t, NULL);
	else
		skip(2, "glibc_pthread_create failed");
}

/* ---- percpu_* --------------------------------------------------------- */

static int call_percpu(int i, int mode, int c)
{
	enum rseq_percpu_mode m = (enum rseq_percpu_mode)mode;

	switch (i) {
	case 0: return percpu_cmpeqv_storev_mode(m, IP(OFF_V), E1, NEWV, c);
	case 1: return percpu_cmpnev_storeoffp_load_mode(m, IP(OFF_HEAD), 0, 0, IP(OFF_LOAD), c);
	case 2: return percpu_addv_mode(m, IP(OFF_V), 5, c);
	case 3: return percpu_cmpeqv_storev_storev_mode(m, IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 4: return percpu_cmpeqv_storev_storev_release_mode(m, IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 5: return percpu_cmpeqv_cmpeqv_storev_mode(m, IP(OFF_V), E1, IP(OFF_V2), E2, NEWV, c);
	case 6: return percpu_cmpeqv_memcpy_storev_mode(m, IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	default: return percpu_cmpeqv_memcpy_storev_release_mode(m, IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	}
}

static int call_percpu_plain(int i, int c)
{
	switch (i) {
	case 0: return percpu_cmpeqv_storev(IP(OFF_V), E1, NEWV, c);
	case 1: return percpu_cmpnev_storeoffp_load(IP(OFF_HEAD), 0, 0, IP(OFF_LOAD), c);
	case 2: return percpu_addv(IP(OFF_V), 5, c);
	case 3: return percpu_cmpeqv_storev_storev(IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 4: return percpu_cmpeqv_storev_storev_release(IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 5: return percpu_cmpeqv_cmpeqv_storev(IP(OFF_V), E1, IP(OFF_V2), E2, NEWV, c);
	case 6: return percpu_cmpeqv_memcpy_storev(IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	default: return percpu_cmpeqv_memcpy_storev_release(IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	}
}

#define NPERCPU 8
static const char *const percpu_name[NPERCPU] = {
	"percpu_cmpeqv_storev", "percpu_cmpnev_storeoffp_load", "percpu_addv",
	"percpu_cmpeqv_storev_storev", "percpu_cmpeqv_storev_storev_release",
	"percpu_cmpeqv_cmpeqv_storev", "percpu_cmpeqv_memcpy_storev",
	"percpu_cmpeqv_memcpy_storev_release",
};

static void test_percpu(void)
{
	static const int bad_mode[] = { 2, 3, -1, 100, INT_MIN };
	int other = max_cpus > 1 ? (cpu + 1) % max_cpus : 0;

	for (int i = 0; i < NPERCPU; i++) {
		ACCEPT(call_percpu_plain(i, other), 0, "%s on cpu %d", percpu_name[i], other);
		for (int j = 0; j < NBAD_CPUS; j++)
			REJECT(call_percpu_plain(i, bad_cpu(j)), EINVAL, "%s cpu %d", percpu_name[i], bad_cpu(j));
		REJECT(call_percpu(i, RSEQ_PERCPU_MM_CID, max_cpus), EINVAL, "%s_mode MM_CID id %d", percpu_name[i], max_cpus);
		REJECT(call_percpu(i, RSEQ_PERCPU_MM_CID, -1), EINVAL, "%s_mode MM_CID id -1", percpu_name[i]);
		for (size_t j = 0; j < sizeof(bad_mode) / sizeof(bad_mode[0]); j++)
			REJECT(call_percpu(i, bad_mode[j], cpu), EINVAL, "%s_mode mode %d", percpu_name[i], bad_mode[j]);
	}
	/* The rseq attempt of the memcpy wrappers has no length limit; the
	 * fallback has (4096). Another CPU forces the fallback, as long as
	 * the thread does not run on it: pinned away from it (a thread that
	 * migrated there committed the 4097-byte copy, and then a SIZE_MAX
	 * one). */
	cpu_set_t saved, away;
	bool pinned = false;

	if (max_cpus > 1 && sched_getaffinity(0, sizeof(saved), &saved) == 0) {
		away = saved;
		CPU_CLR(other, &away);
		pinned = CPU_COUNT(&away) > 0 && sched_setaffinity(0, sizeof(away), &away) == 0;
	}
	if (pinned) {
		REJECT(percpu_cmpeqv_memcpy_storev(IP(OFF_V), E1, AT(OFF_BIGDST), AT(OFF_BIGSRC), 4097, NEWV, other), EINVAL,
		       "percpu_cmpeqv_memcpy_storev len 4097 on another cpu");
		REJECT(percpu_cmpeqv_memcpy_storev_release(IP(OFF_V), E1, AT(OFF_BIGDST), AT(OFF_BIGSRC), SIZE_MAX, NEWV, other),
		       EINVAL, "percpu_cmpeqv_memcpy_storev_release len SIZE_MAX on another cpu");
		sched_setaffinity(0, sizeof(saved), &saved);
	} else {
		skip(2, "one possible CPU, or none to run on but the target");
	}
}

/* ---- cpu_op_* helpers ------------------------------------------------- */

#define NHELPER 15
static const char *const helper_name[NHELPER] = {
	"cpu_op_cmpxchg", "cpu_op_add", "cpu_op_add_release", "cpu_op_addv",
	"cpu_op_cmpeqv_storev", "cpu_op_cmpnev_storeoffp_load",
	"cpu_op_cmpeqv_storev_storev", "cpu_op_cmpeqv_storev_mb_storev",
	"cpu_op_cmpeqv_storev_storev_release", "cpu_op_cmpeqv_cmpeqv_storev",
	"cpu_op_cmpeqv_memcpy_storev", "cpu_op_cmpeqv_memcpy_mb_storev",
	"cpu_op_cmpeqv_memcpy_storev_release", "cpu_op_fence (control only)", "cpu_opv add",
};

static int call_helper(int i, int c)
{
	struct cpu_op op = { .op = CPU_ADD_OP, .len = 8 };

	switch (i) {
	case 0: return cpu_op_cmpxchg(AT(OFF_V), AT(OFF_EXP), AT(OFF_OLD), AT(OFF_NEW), 8, c);
	case 1: return cpu_op_add(AT(OFF_V), 5, 8, c);
	case 2: return cpu_op_add_release(AT(OFF_V), 5, 8, c);
	case 3: return cpu_op_addv(IP(OFF_V), 5, c);
	case 4: return cpu_op_cmpeqv_storev(IP(OFF_V), E1, NEWV, c);
	case 5: return cpu_op_cmpnev_storeoffp_load(IP(OFF_HEAD), 0, 0, IP(OFF_LOAD), c);
	case 6: return cpu_op_cmpeqv_storev_storev(IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 7: return cpu_op_cmpeqv_storev_mb_storev(IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 8: return cpu_op_cmpeqv_storev_storev_release(IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 9: return cpu_op_cmpeqv_cmpeqv_storev(IP(OFF_V), E1, IP(OFF_V2), E2, NEWV, c);
	case 10: return cpu_op_cmpeqv_memcpy_storev(IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	case 11: return cpu_op_cmpeqv_memcpy_mb_storev(IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	case 12: return cpu_op_cmpeqv_memcpy_storev_release(IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	case 13: return cpu_op_fence(c);
	default:
		op.u.arithmetic_op.p = (uintptr_t)IP(OFF_V);
		op.u.arithmetic_op.count = 5;
		return cpu_opv(&op, 1, c, 0);
	}
}

static int call_helper_mode(int i, int mode, int c)
{
	enum rseq_percpu_mode m = (enum rseq_percpu_mode)mode;

	switch (i) {
	case 0: return cpu_op_cmpxchg_mode(m, AT(OFF_V), AT(OFF_EXP), AT(OFF_OLD), AT(OFF_NEW), 8, c);
	case 1: return cpu_op_add_mode(m, AT(OFF_V), 5, 8, c);
	case 2: return cpu_op_add_release_mode(m, AT(OFF_V), 5, 8, c);
	case 3: return cpu_op_addv_mode(m, IP(OFF_V), 5, c);
	case 4: return cpu_op_cmpeqv_storev_mode(m, IP(OFF_V), E1, NEWV, c);
	case 5: return cpu_op_cmpnev_storeoffp_load_mode(m, IP(OFF_HEAD), 0, 0, IP(OFF_LOAD), c);
	case 6: return cpu_op_cmpeqv_storev_storev_mode(m, IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 7: /* no _mode variant of the v12 name */
	case 8: return cpu_op_cmpeqv_storev_storev_release_mode(m, IP(OFF_V), E1, IP(OFF_V2), NEWV, NEWV, c);
	case 9: return cpu_op_cmpeqv_cmpeqv_storev_mode(m, IP(OFF_V), E1, IP(OFF_V2), E2, NEWV, c);
	case 10: return cpu_op_cmpeqv_memcpy_storev_mode(m, IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	case 11: /* no _mode variant of the v12 name */
	case 12: return cpu_op_cmpeqv_memcpy_storev_release_mode(m, IP(OFF_V), E1, AT(OFF_DST), AT(OFF_SRC), 64, NEWV, c);
	case 13: return cpu_op_fence_mode(m, c);
	default: {
		struct cpu_op op = { .op = CPU_ADD_OP, .len = 8 };

		op.u.arithmetic_op.p = (uintptr_t)IP(OFF_V);
		op.u.arithmetic_op.count = 5;
		return cpu_opv(&op, 1, c, mode == RSEQ_PERCPU_MM_CID ? CPU_OP_VEC_FLAG_MM_CID : 0);
	}
	}
}

static void test_helpers(void)
{
	static const int bad_mode[] = { 2, 3, -1, 100, INT_MIN };
	/* 2^32 + 8 and 2^32 + 16 would be valid if truncated to 32 bits. */
	static const size_t add_lens[] = { 0, 3, 5, 6, 7, 9, 16, 4096, ((size_t)1 << 32) + 8, (size_t)-8, SIZE_MAX };
	static const size_t big_lens[] = { 4097, 65536, (size_t)INT_MAX + 1, ((size_t)1 << 32) + 16, SIZE_MAX };

	for (int i = 0; i < NHELPER; i++) {
		if (i != 13)
			ACCEPT(call_helper(i, cpu), 0, "%s on cpu %d", helper_name[i], cpu);
		else
			ok(cpu_op_fence(cpu) == 0, "control: cpu_op_fence on cpu %d -> 0", cpu);
		for (int j = 0; j < NBAD_CPUS; j++)
			REJECT(call_helper(i, bad_cpu(j)), EINVAL, "%s cpu %d", helper_name[i], bad_cpu(j));
		REJECT(call_helper_mode(i, RSEQ_PERCPU_MM_CID, max_cpus), EINVAL, "%s MM_CID id %d", helper_name[i], max_cpus);
		REJECT(call_helper_mode(i, RSEQ_PERCPU_MM_CID, -1), EINVAL, "%s MM_CID id -1", helper_name[i]);
		if (i == 7 || i == 11 || i == 14)
			continue;	/* no _mode variant, or no mode argument */
		for (size_t j = 0; j < sizeof(bad_mode) / sizeof(bad_mode[0]); j++)
			REJECT(call_helper_mode(i, bad_mode[j], cpu), EINVAL, "%s_mode mode %d", helper_name[i], bad_mode[j]);
	}
	for (size_t j = 0; j < sizeof(add_lens) / sizeof(add_lens[0]); j++) {
		REJECT(cpu_op_add(AT(OFF_V), 5, add_lens[j], cpu), EINVAL, "cpu_op_add len %zu", add_lens[j]);
		REJECT(cpu_op_add_release(AT(OFF_V), 5, add_lens[j], cpu), EINVAL, "cpu_op_add_release len %zu", add_lens[j]);
		REJECT(cpu_op_add_mode(RSEQ_PERCPU_CPU_ID, AT(OFF_V), 5, add_lens[j], cpu), EINVAL,
		       "cpu_op_add_mode len %zu", add_lens[j]);
		REJECT(cpu_op_add_release_mode(RSEQ_PERCPU_CPU_ID, AT(OFF_V), 5, add_lens[j], cpu), EINVAL,
		       "cpu_op_add_release_mode len %zu", add_lens[j]);
	}
	for (size_t len = 1; len <= 8; len *= 2)
		ACCEPT(cpu_op_add(AT(OFF_V), 5, len, cpu), 0, "cpu_op_add len %zu", len);
	ACCEPT(cpu_op_cmpxchg(AT(OFF_BIGDST), AT(OFF_BIGDST), AT(OFF_BIGSRC), AT(OFF_BIGDST), 4096, cpu), 0,
	       "cpu_op_cmpxchg len 4096");
	ACCEPT(cpu_op_cmpeqv_memcpy_storev(IP(OFF_V), E1, AT(OFF_BIGDST), AT(OFF_BIGSRC), 4096, NEWV, cpu), 0,
	       "cpu_op_cmpeqv_memcpy_storev len 4096");
	for (size_t j = 0; j < sizeof(big_lens) / sizeof(big_lens[0]); j++) {
		size_t len = big_lens[j];

		REJECT(cpu_op_cmpxchg(AT(OFF_BIGDST), AT(OFF_BIGDST), AT(OFF_BIGSRC), AT(OFF_BIGDST), len, cpu), EINVAL,
		       "cpu_op_cmpxchg len %zu", len);
		REJECT(cpu_op_cmpxchg_mode(RSEQ_PERCPU_CPU_ID, AT(OFF_BIGDST), AT(OFF_BIGDST), AT(OFF_BIGSRC), AT(OFF_BIGDST),
					   len, cpu), EINVAL, "cpu_op_cmpxchg_mode len %zu", len);
		REJECT(cpu_op_cmpeqv_memcpy_storev(IP(OFF_V), E1, AT(OFF_BIGDST), AT(OFF_BIGSRC), len, NEWV, cpu), EINVAL,
		       "cpu_op_cmpeqv_memcpy_storev len %zu", len);
		REJECT(cpu_op_cmpeqv_memcpy_mb_storev(IP(OFF_V), E1, AT(OFF_BIGDST), AT(OFF_BIGSRC), len, NEWV, cpu), EINVAL,
		       "cpu_op_cmpeqv_memcpy_mb_storev len %zu", len);
		REJECT(cpu_op_cmpeqv_memcpy_storev_release(IP(OFF_V), E1, AT(OFF_BIGDST), AT(OFF_BIGSRC), len, NEWV, cpu), EINVAL,
		       "cpu_op_cmpeqv_memcpy_storev_release len %zu", len);
		REJECT(cpu_op_cmpeqv_memcpy_storev_mode(RSEQ_PERCPU_CPU_ID, IP(OFF_V), E1, AT(OFF_BIGDST), AT(OFF_BIGSRC), len,
							NEWV, cpu), EINVAL, "cpu_op_cmpeqv_memcpy_storev_mode len %zu", len);
		REJECT(cpu_op_cmpeqv_memcpy_storev_release_mode(RSEQ_PERCPU_CPU_ID, IP(OFF_V), E1, AT(OFF_BIGDST),
								AT(OFF_BIGSRC), len, NEWV, cpu), EINVAL,
		       "cpu_op_cmpeqv_memcpy_storev_release_mode len %zu", len);
	}
}

/* ---- cpu_opv ---------------------------------------------------------- */

static struct cpu_op op_cmp(int eq, const void *a, const void *b, uint32_t len)
{
	struct cpu_op op = { .op = eq ? CPU_COMPARE_EQ_OP : CPU_COMPARE_NE_OP, .len = len };

	op.u.compare_op.a = (uintptr_t)a;
	op.u.compare_op.b = (uintptr_t)b;
	return op;
}

static struct cpu_op op_cpy(void *dst, const void *src, uint32_t len)
{
	struct cpu_op op = { .op = CPU_MEMCPY_OP, .len = len };

	op.u.memcpy_op.dst = (uintptr_t)dst;
	op.u.memcpy_op.src = (uintptr_t)src;
	return op;
}

static struct cpu_op op_ar(int type, void *p, uint64_t arg, uint32_t len)
{
	struct cpu_op op = { .op = type, .len = len };

	switch (type) {
	case CPU_ADD_OP:
		op.u.arithmetic_op.p = (uintptr_t)p;
		op.u.arithmetic_op.count = (int64_t)arg;
		break;
	case CPU_LSHIFT_OP:
	case CPU_RSHIFT_OP:
		op.u.shift_op.p = (uintptr_t)p;
		op.u.shift_op.bits = (uint32_t)arg;
		break;
	default:
		op.u.bitwise_op.p = (uintptr_t)p;
		op.u.bitwise_op.mask = arg;
	}
	return op;
}

static void set_expect_fault(struct cpu_op *op, int first, int second)
{
	switch (op->op) {
	case CPU_COMPARE_EQ_OP:
	case CPU_COMPARE_NE_OP:
		op->u.compare_op.expect_fault_a = (uint8_t)first;
		op->u.compare_op.expect_fault_b = (uint8_t)second;
		break;
	case CPU_MEMCPY_OP:
		op->u.memcpy_op.expect_fault_dst = (uint8_t)first;
		op->u.memcpy_op.expect_fault_src = (uint8_t)second;
		break;
	case CPU_ADD_OP:
		op->u.arithmetic_op.expect_fault_p = (uint8_t)first;
		break;
	case CPU_LSHIFT_OP:
	case CPU_RSHIFT_OP:
		op->u.shift_op.expect_fault_p = (uint8_t)first;
		break;
	default:
		op->u.bitwise_op.expect_fault_p = (uint8_t)first;
	}
}

/* The vector under test follows a valid add on v: if anything ran, v
 * changed. The vector array itself lives outside the arena. */
static struct cpu_op vec[20];

static int run_after_add(struct cpu_op bad, int cnt_extra)
{
	vec[0] = op_ar(CPU_ADD_OP, IP(OFF_V), 1, 8);
	vec[1] = bad;
	return cpu_opv(vec, 2 + cnt_extra, cpu, 0);
}

static void test_cpu_opv_args(void)
{
	static const int bad_flags[] = { 2, 3, 4, 0x100, -1, INT_MIN, INT_MAX };
	static const int bad_counts[] = { -1, -2, 17, 18, 1000, INT_MAX, INT_MIN };
	long counters_sentinel[32];
	struct cpu_op_counters c;

	for (int i = 0; i < 16; i++)
		vec[i] = op_ar(CPU_ADD_OP, IP(OFF_V), 1, 8);
	ACCEPT(cpu_opv(vec, 16, cpu, 0), 0, "cpu_opv 16 adds");
	for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++)
		REJECT(cpu_opv(vec, 16, cpu, bad_flags[i]), EINVAL, "cpu_opv flags %#x", (unsigned)bad_flags[i]);
	vec[16] = op_ar(CPU_ADD_OP, IP(OFF_V), 1, 8);
	for (size_t i = 0; i < sizeof(bad_counts) / sizeof(bad_counts[0]); i++)
		REJECT(cpu_opv(vec, bad_counts[i], cpu, 0), EINVAL, "cpu_opv count %d", bad_counts[i]);
	for (int j = 0; j < NBAD_CPUS; j++)
		REJECT(cpu_opv(vec, 16, bad_cpu(j), 0), EINVAL, "cpu_opv cpu %d", bad_cpu(j));
	REJECT(cpu_opv(vec, 16, max_cpus, CPU_OP_VEC_FLAG_MM_CID), EINVAL, "cpu_opv MM_CID id %d", max_cpus);
	REJECT(cpu_opv(vec, 16, -1, CPU_OP_VEC_FLAG_MM_CID), EINVAL, "cpu_opv MM_CID id -1");
	REJECT(cpu_opv(NULL, 1, cpu, 0), EFAULT, "cpu_opv NULL vector, count 1");
	REJECT(cpu_opv(NULL, 16, cpu, 0), EFAULT, "cpu_opv NULL vector, count 16");
	REJECT(cpu_opv((struct cpu_op *)noaccess, 1, cpu, 0), EFAULT, "cpu_opv vector in a PROT_NONE page");
	/* A vector whose third op lies in the PROT_NONE page after the arena. */
	{
		struct cpu_op *tail = (struct cpu_op *)(arena + ARENA_DATA - 2 * sizeof(struct cpu_op));

		REJECT(cpu_opv(tail, 3, cpu, 0), EFAULT, "cpu_opv vector running into a PROT_NONE page");
	}
	ok(cpu_opv(NULL, 0, cpu, 0) == 0, "cpu_opv NULL vector, count 0 -> 0");
	errno = 0;
	ok(cpu_op_get_counters(NULL, sizeof(c)) == -1 && errno == EINVAL, "cpu_op_get_counters(NULL) -> -1/EINVAL");
	errno = 0;
	ok(cpu_op_get_counters(NULL, 0) == -1 && errno == EINVAL, "cpu_op_get_counters(NULL, 0) -> -1/EINVAL");
	memset(counters_sentinel, 0x5a, sizeof(counters_sentinel));
	ok(cpu_op_get_counters((struct cpu_op_counters *)counters_sentinel, 8) == 0 &&
	   counters_sentinel[1] == 0x5a5a5a5a5a5a5a5aL,
	   "cpu_op_get_counters(size 8) writes 8 bytes only");
	errno = 0;
	ok(!rseq_available(2) && errno == EINVAL, "rseq_available(2) -> false/EINVAL");
	errno = 0;
	ok(!rseq_available(UINT_MAX) && errno == EINVAL, "rseq_available(UINT_MAX) -> false/EINVAL");
}

static void test_cpu_opv_vectors(void)
{
	static const int bad_ops[] = { -1, 10, 11, 100, INT_MAX, INT_MIN };
	static const uint32_t bad_arith_lens[] = { 0, 3, 5, 6, 7, 9, 16, 4096, UINT32_MAX };
	static const uint32_t bad_data_lens[] = { 4097, 8192, 65537, UINT32_MAX };
	static const int arith[] = { CPU_ADD_OP, CPU_OR_OP, CPU_AND_OP, CPU_XOR_OP, CPU_LSHIFT_OP, CPU_RSHIFT_OP };
	static const char *const arith_name[] = { "add", "or", "and", "xor", "lshift", "rshift" };

	for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		struct cpu_op op = op_ar(CPU_ADD_OP, IP(OFF_V2), 1, 8);

		op.op = bad_ops[i];
		REJECT(run_after_add(op, 0), EINVAL, "cpu_opv add, then op %d", bad_ops[i]);
	}
	for (size_t i = 0; i < sizeof(bad_data_lens) / sizeof(bad_data_lens[0]); i++) {
		uint32_t len = bad_data_lens[i];

		REJECT(run_after_add(op_cmp(1, AT(OFF_BIGDST), AT(OFF_BIGDST), len), 0), EINVAL, "cpu_opv add, compare_eq len %u", len);
		REJECT(run_after_add(op_cmp(0, AT(OFF_BIGDST), AT(OFF_BIGSRC), len), 0), EINVAL, "cpu_opv add, compare_ne len %u", len);
		REJECT(run_after_add(op_cpy(AT(OFF_BIGDST), AT(OFF_BIGSRC), len), 0), EINVAL, "cpu_opv add, memcpy len %u", len);
	}
	for (size_t k = 0; k < sizeof(arith) / sizeof(arith[0]); k++) {
		for (size_t i = 0; i < sizeof(bad_arith_lens) / sizeof(bad_arith_lens[0]); i++)
			REJECT(run_after_add(op_ar(arith[k], IP(OFF_V2), 1, bad_arith_lens[i]), 0), EINVAL,
			       "cpu_opv add, %s len %u", arith_name[k], bad_arith_lens[i]);
		for (uint32_t len = 1; len <= 8; len *= 2)
			ACCEPT(run_after_add(op_ar(arith[k], AT(OFF_U8), 1, len), 0), 0, "cpu_opv add, %s len %u", arith_name[k], len);
	}
	for (int s = 0; s < 2; s++) {
		int type = s ? CPU_RSHIFT_OP : CPU_LSHIFT_OP;

		for (uint32_t len = 1; len <= 8; len *= 2) {
			static const uint32_t extra[] = { 0, 1, 8, 31, 1000 };

			ACCEPT(run_after_add(op_ar(type, AT(OFF_U8), 8 * len - 1, len), 0), 0,
			       "cpu_opv add, %s len %u by %u", arith_name[4 + s], len, 8 * len - 1);
			for (size_t e = 0; e < sizeof(extra) / sizeof(extra[0]); e++)
				REJECT(run_after_add(op_ar(type, AT(OFF_U8), 8 * len + extra[e], len), 0), EINVAL,
				       "cpu_opv add, %s len %u by %u", arith_name[4 + s], len, 8 * len + extra[e]);
			REJECT(run_after_add(op_ar(type, AT(OFF_U8), UINT32_MAX, len), 0), EINVAL,
			       "cpu_opv add, %s len %u by UINT32_MAX", arith_name[4 + s], len);
		}
	}
	/* Total data length: 4096 + 15 * 8 = 4216 at most. */
	vec[0] = op_cpy(AT(OFF_BIGDST), AT(OFF_BIGSRC), 4096);
	vec[1] = op_cpy(AT(OFF_BIGDST), AT(OFF_BIGSRC), 120);
	ACCEPT(cpu_opv(vec, 2, cpu, 0), 0, "cpu_opv memcpy 4096 + memcpy 120 (total 4216)");
	vec[1] = op_cpy(AT(OFF_BIGDST), AT(OFF_BIGSRC), 121);
	REJECT(cpu_opv(vec, 2, cpu, 0), EINVAL, "cpu_opv memcpy 4096 + memcpy 121 (total 4217)");
	vec[1] = op_cpy(AT(OFF_BIGDST), AT(OFF_BIGSRC), 4096);
	REJECT(cpu_opv(vec, 2, cpu, 0), EINVAL, "cpu_opv two 4096-byte memcpys");
	vec[0] = op_ar(CPU_ADD_OP, IP(OFF_V), 1, 8);
	for (int i = 1; i < 16; i++)
		vec[i] = op_cpy(AT(OFF_BIGDST), AT(OFF_BIGSRC), 281);	/* 8 + 15 * 281 = 4223 */
	REJECT(cpu_opv(vec, 16, cpu, 0), EINVAL, "cpu_opv add 8 + 15 memcpys of 281 (total 4223)");
	for (int i = 1; i < 16; i++)
		vec[i] = op_cpy(AT(OFF_BIGDST), AT(OFF_BIGSRC), 280);	/* 8 + 15 * 280 = 4208 */
	ACCEPT(cpu_opv(vec, 16, cpu, 0), 0, "cpu_opv add 8 + 15 memcpys of 280 (total 4208)");
	/* An invalid op after 15 valid ones. */
	for (int i = 0; i < 15; i++)
		vec[i] = op_ar(CPU_ADD_OP, IP(OFF_V), 1, 8);
	vec[15] = op_ar(CPU_XOR_OP, IP(OFF_V2), 1, 3);
	REJECT(cpu_opv(vec, 16, cpu, 0), EINVAL, "cpu_opv 15 adds, then xor len 3");
}

/* Bad addresses: each op type with NULL, a PROT_NONE page, a read-only
 * page (for writes), a range running off the arena's last page into the
 * PROT_NONE page, and a range wrapping around the address space. */
static void test_cpu_opv_addresses(void)
{
	struct {
		void *p;
		const char *name;
		int writable_ok;	/* readable but not writable */
	} bad[] = {
		{ NULL, "NULL", 0 },
		{ (void *)8, "address 8", 0 },
		{ noaccess, "a PROT_NONE page", 0 },
		{ arena + ARENA_DATA - 4, "a range running into a PROT_NONE page", 0 },
		{ (void *)(UINTPTR_MAX - 3), "a range wrapping around", 0 },
		{ (void *)0xffff800000000000ULL, "a kernel address", 0 },
		{ readonly, "a read-only page", 1 },
	};
	void *good = AT(OFF_V2);
	uint32_t len = 8;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		void *p = bad[i].p;
		const char *n = bad[i].name;

		for (int ef = 0; ef < 2; ef++) {
			int err = ef ? EAGAIN : EFAULT;
			const char *efs = ef ? " with expect_fault" : "";
			struct cpu_op op;

			if (!bad[i].writable_ok) {
				op = op_cmp(1, p, good, len);
				set_expect_fault(&op, ef, 0);
				REJECT(run_after_add(op, 0), err, "cpu_opv add, compare a = %s%s", n, efs);
				op = op_cmp(0, good, p, len);
				set_expect_fault(&op, 0, ef);
				REJECT(run_after_add(op, 0), err, "cpu_opv add, compare b = %s%s", n, efs);
				op = op_cpy(good, p, len);
				set_expect_fault(&op, 0, ef);
				REJECT(run_after_add(op, 0), err, "cpu_opv add, memcpy src = %s%s", n, efs);
			}
			op = op_cpy(p, good, len);
			set_expect_fault(&op, ef, 0);
			REJECT(run_after_add(op, 0), err, "cpu_opv add, memcpy dst = %s%s", n, efs);
			for (int t = CPU_ADD_OP; t <= CPU_RSHIFT_OP; t++) {
				op = op_ar(t, p, 1, len);
				set_expect_fault(&op, ef, 0);
				REJECT(run_after_add(op, 0), err, "cpu_opv add, op %d p = %s%s", t, n, efs);
			}
		}
	}
	/* The expect_fault flag of the other address does not matter. */
	{
		struct cpu_op op = op_cpy(good, NULL, len);

		set_expect_fault(&op, 1, 0);
		REJECT(run_after_add(op, 0), EFAULT, "cpu_opv add, memcpy src NULL, expect_fault_dst only -> EFAULT");
	}
	/* Reading a read-only page is fine. */
	ACCEPT(run_after_add(op_cpy(good, readonly, 8), 0), 0, "cpu_opv add, memcpy from a read-only page");
	ACCEPT(run_after_add(op_cmp(1, readonly, readonly, 8), 0), 0, "cpu_opv add, compare on a read-only page");
	/* Empty ranges are not checked (the kernel pinned nothing). */
	ACCEPT(run_after_add(op_cpy(NULL, NULL, 0), 0), 0, "cpu_opv add, memcpy NULL <- NULL len 0");
	ACCEPT(run_after_add(op_cmp(1, NULL, noaccess, 0), 0), 0, "cpu_opv add, compare NULL, PROT_NONE len 0");
	/* A fault in any op of a full vector: nothing runs. */
	for (int i = 0; i < 15; i++)
		vec[i] = op_ar(CPU_ADD_OP, IP(OFF_V), 1, 8);
	vec[15] = op_cpy(readonly + 8, good, 8);
	REJECT(cpu_opv(vec, 16, cpu, 0), EFAULT, "cpu_opv 15 adds, then memcpy into a read-only page");
	/* A compare failure is not an error: earlier ops stay applied. */
	vec[0] = op_ar(CPU_ADD_OP, IP(OFF_V), 1, 8);
	vec[1] = op_cmp(1, IP(OFF_V), IP(OFF_V2), 8);
	vec[2] = op_ar(CPU_ADD_OP, IP(OFF_V2), 1, 8);
	arena_reset();
	ok(cpu_opv(vec, 3, cpu, 0) == 2 && *IP(OFF_V) == E1 + 1 && *IP(OFF_V2) == E2,
	   "control: add, failing compare, add -> 2, first add applied, last not");
}

static void watchdog(int sig)
{
	static const char msg[] = "Bail out! watchdog: bad_input did not finish in time (deadlock?)\n";

	(void)sig;
	if (write(1, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(3);
}

int main(void)
{
	unsigned char *map;

	signal(SIGALRM, watchdog);
	alarm(120);
	plan_no_plan();
	page = (size_t)sysconf(_SC_PAGESIZE);
	if (page != 4096)
		bail_out("this test assumes 4 KiB pages (got %zu)", page);
	map = mmap(NULL, ARENA_DATA + 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	snapshot = mmap(NULL, ARENA_DATA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED || snapshot == MAP_FAILED)
		bail_out("mmap");
	arena = map;
	noaccess = map + ARENA_DATA;
	readonly = map + ARENA_DATA + page;
	memset(readonly, 0x5a, page);
	if (mprotect(noaccess, page, PROT_NONE) || mprotect(readonly, page, PROT_READ))
		bail_out("mprotect");

	max_cpus = rseq_get_max_nr_cpus();
	cpu = cpu_op_get_current_cpu();
	libc_owns = rseq_available(RSEQ_AVAILABLE_QUERY_LIBC);
	diag("possible cpus %d, current cpu %d, glibc owns registration: %d, mm_cid: %d, inline: %s",
	     max_cpus, cpu, libc_owns, rseq_mm_cid_available(),
#ifdef RSEQ_NO_INLINE
	     "no"
#else
	     "yes"
#endif
	     );

	test_rseq_ops();
	test_unregistered();
	test_percpu();
	test_helpers();
	test_cpu_opv_args();
	test_cpu_opv_vectors();
	test_cpu_opv_addresses();
	return exit_status();
}
