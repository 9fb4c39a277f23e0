/* SPDX-License-Identifier: MIT */
/*
 * Every critical-section family, under both API generations: success,
 * compare failure, abort on a wrong CPU number and abort while the thread
 * is unregistered, in CPU_ID and MM_CID mode, RELAXED and RELEASE, and
 * EINVAL for orders or modes a family does not accept.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <rseq/rseq.h>

#include "tap.h"

#define RETRIES 100000

/* The CPU number (or mm_cid) the thread is on now, for the given mode. */
static int current(enum rseq_percpu_mode mode)
{
	return mode == RSEQ_PERCPU_MM_CID ? (int)rseq_current_mm_cid() : (int)rseq_cpu_start();
}

/* A number the thread is certainly not on. */
static int wrong(enum rseq_percpu_mode mode)
{
	return current(mode) + 1;
}

static const char *mode_name(enum rseq_percpu_mode mode)
{
	return mode == RSEQ_PERCPU_MM_CID ? "mm_cid" : "cpu_id";
}

static const char *mo_name(enum rseq_mo mo)
{
	return mo == RSEQ_MO_RELEASE ? "release" : "relaxed";
}

/*
 * Unregistering the calling thread, whoever registered it: through the
 * library when it owns registration, else with the raw system call on
 * glibc's area (and back).
 */
static void unregister_thread(void)
{
	if (rseq_current_cpu_raw() < 0)
		return;
	if (rseq_available(RSEQ_AVAILABLE_QUERY_LIBC)) {
		if (syscall(__NR_rseq, rseq_get_abi(), 32, RSEQ_ABI_FLAG_UNREGISTER, RSEQ_SIG))
			bail_out("raw unregister: %s", strerror(errno));
	} else if (rseq_unregister_current_thread()) {
		bail_out("rseq_unregister_current_thread: %s", strerror(errno));
	}
}

static void reregister_thread(void)
{
	if (rseq_available(RSEQ_AVAILABLE_QUERY_LIBC)) {
		if (syscall(__NR_rseq, rseq_get_abi(), 32, 0, RSEQ_SIG))
			bail_out("raw register: %s", strerror(errno));
	} else if (rseq_register_current_thread()) {
		bail_out("rseq_register_current_thread: %s", strerror(errno));
	}
	if (rseq_current_cpu_raw() < 0)
		bail_out("thread not registered again");
}

/* Retries an operation until it does not abort: returns its result. */
#define UNTIL_NOT_ABORTED(ret, mode, expr) do {				\
	int __i;							\
	for (__i = 0; __i < RETRIES; __i++) {				\
		int cpu = current(mode);				\
		(void)cpu;						\
		ret = (expr);						\
		if (ret != -1)						\
			break;						\
	}								\
} while (0)

struct node {
	intptr_t payload;
	struct node *next;
};

static void test_family_cbne_store(enum rseq_percpu_mode mode)
{
	intptr_t v = 10;
	int ret;

	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 10, 11, cpu));
	ok(ret == 0 && v == 11, "load_cbne_store %s: commits (ret %d, v %ld)", mode_name(mode), ret, (long)v);
	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 10, 12, cpu));
	ok(ret == 1 && v == 11, "load_cbne_store %s: compare failure returns 1, stores nothing", mode_name(mode));
	ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 11, 13, wrong(mode));
	ok(ret == -1 && v == 11, "load_cbne_store %s: wrong cpu aborts", mode_name(mode));
	if (mode == RSEQ_PERCPU_CPU_ID) {
		UNTIL_NOT_ABORTED(ret, mode, rseq_cmpeqv_storev(&v, 11, 14, cpu));
		ok(ret == 0 && v == 14, "rseq_cmpeqv_storev commits");
		UNTIL_NOT_ABORTED(ret, mode, rseq_cmpeqv_storev(&v, 11, 15, cpu));
		ok(ret == 1 && v == 14, "rseq_cmpeqv_storev compare failure");
		ok(rseq_cmpeqv_storev(&v, 14, 15, wrong(mode)) == -1 && v == 14, "rseq_cmpeqv_storev wrong cpu aborts");
	}
	errno = 0;
	ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELEASE, mode, &v, 14, 16, current(mode));
	ok(ret == -1 && errno == EINVAL && v == (mode == RSEQ_PERCPU_CPU_ID ? 14 : 11),
	   "load_cbne_store %s: RELEASE rejected with EINVAL", mode_name(mode));
}

static void test_family_pop(enum rseq_percpu_mode mode)
{
	struct node n2 = { 2, NULL }, n1 = { 1, &n2 };
	intptr_t head = (intptr_t)&n1, load = 0;
	long off = offsetof(struct node, next);
	int ret;

	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, &head, 0, off, &load, cpu));
	ok(ret == 0 && load == (intptr_t)&n1 && head == (intptr_t)&n2, "list pop %s: pops the head", mode_name(mode));
	ret = rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, &head, 0, off, &load, wrong(mode));
	ok(ret == -1 && head == (intptr_t)&n2, "list pop %s: wrong cpu aborts", mode_name(mode));
	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, &head, 0, off, &load, cpu));
	ok(ret == 0 && load == (intptr_t)&n2 && head == 0, "list pop %s: pops the last node", mode_name(mode));
	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, &head, 0, off, &load, cpu));
	ok(ret == 1 && head == 0, "list pop %s: empty list returns 1", mode_name(mode));
	if (mode == RSEQ_PERCPU_CPU_ID) {
		head = (intptr_t)&n1;
		UNTIL_NOT_ABORTED(ret, mode, rseq_cmpnev_storeoffp_load(&head, 0, off, &load, cpu));
		ok(ret == 0 && load == (intptr_t)&n1 && head == (intptr_t)&n2, "rseq_cmpnev_storeoffp_load pops");
	}
}

static void test_family_add(enum rseq_percpu_mode mode)
{
	intptr_t v = 100;
	int ret;

	UNTIL_NOT_ABORTED(ret, mode, rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &v, 5, cpu));
	ok(ret == 0 && v == 105, "load_add_store %s: adds", mode_name(mode));
	ret = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &v, 5, wrong(mode));
	ok(ret == -1 && v == 105, "load_add_store %s: wrong cpu aborts", mode_name(mode));
	if (mode == RSEQ_PERCPU_CPU_ID) {
		UNTIL_NOT_ABORTED(ret, mode, rseq_addv(&v, -6, cpu));
		ok(ret == 0 && v == 99, "rseq_addv adds");
	}
}

static void test_family_deref_add(enum rseq_percpu_mode mode)
{
	intptr_t counter = 7;
	struct { intptr_t pad; intptr_t *slot; } obj = { 0, &counter };
	intptr_t base = (intptr_t)&obj;
	long off = offsetof(__typeof__(obj), slot);
	int ret;

	UNTIL_NOT_ABORTED(ret, mode, rseq_load_add_load_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &base, off, 3, cpu));
	ok(ret == 0 && counter == 10, "load_add_load_load_add_store %s: adds through the pointer", mode_name(mode));
	ret = rseq_load_add_load_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &base, off, 3, wrong(mode));
	ok(ret == -1 && counter == 10, "load_add_load_load_add_store %s: wrong cpu aborts", mode_name(mode));
	if (mode == RSEQ_PERCPU_CPU_ID) {
		UNTIL_NOT_ABORTED(ret, mode, rseq_offset_deref_addv(&base, off, 2, cpu));
		ok(ret == 0 && counter == 12, "rseq_offset_deref_addv adds");
	}
}

static void test_family_store_store(enum rseq_percpu_mode mode, enum rseq_mo mo)
{
	intptr_t v = 1, v2 = 0;
	int ret;

	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbne_store_store__ptr(mo, mode, &v, 1, &v2, 22, 2, cpu));
	ok(ret == 0 && v == 2 && v2 == 22, "load_cbne_store_store %s %s: commits both", mode_name(mode), mo_name(mo));
	v2 = 0;
	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbne_store_store__ptr(mo, mode, &v, 1, &v2, 33, 3, cpu));
	ok(ret == 1 && v == 2 && v2 == 0, "load_cbne_store_store %s %s: compare failure stores nothing", mode_name(mode), mo_name(mo));
	ret = rseq_load_cbne_store_store__ptr(mo, mode, &v, 2, &v2, 44, 4, wrong(mode));
	ok(ret == -1 && v == 2 && v2 == 0, "load_cbne_store_store %s %s: wrong cpu aborts", mode_name(mode), mo_name(mo));
	if (mode == RSEQ_PERCPU_CPU_ID) {
		UNTIL_NOT_ABORTED(ret, mode, mo == RSEQ_MO_RELEASE ?
			rseq_cmpeqv_trystorev_storev_release(&v, 2, &v2, 55, 5, cpu) :
			rseq_cmpeqv_trystorev_storev(&v, 2, &v2, 55, 5, cpu));
		ok(ret == 0 && v == 5 && v2 == 55, "rseq_cmpeqv_trystorev_storev%s commits", mo == RSEQ_MO_RELEASE ? "_release" : "");
	}
}

static void test_family_cbne_cbne(enum rseq_percpu_mode mode)
{
	intptr_t v = 1, v2 = 2;
	int ret;

	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, &v2, 2, 9, cpu));
	ok(ret == 0 && v == 9, "load_cbne_load_cbne_store %s: commits", mode_name(mode));
	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, &v2, 2, 10, cpu));
	ok(ret == 1 && v == 9, "load_cbne_load_cbne_store %s: first compare fails", mode_name(mode));
	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 9, &v2, 3, 10, cpu));
	ok(ret == 1 && v == 9, "load_cbne_load_cbne_store %s: second compare fails", mode_name(mode));
	ret = rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 9, &v2, 2, 10, wrong(mode));
	ok(ret == -1 && v == 9, "load_cbne_load_cbne_store %s: wrong cpu aborts", mode_name(mode));
	if (mode == RSEQ_PERCPU_CPU_ID) {
		UNTIL_NOT_ABORTED(ret, mode, rseq_cmpeqv_cmpeqv_storev(&v, 9, &v2, 2, 11, cpu));
		ok(ret == 0 && v == 11, "rseq_cmpeqv_cmpeqv_storev commits");
	}
}

static void test_family_memcpy(enum rseq_percpu_mode mode, enum rseq_mo mo)
{
	char src[37], dst[37];
	intptr_t v = 1;
	int ret;
	size_t len;

	for (len = 0; len <= sizeof(src); len += 9) {
		memset(dst, 0, sizeof(dst));
		for (size_t i = 0; i < sizeof(src); i++)
			src[i] = (char)(i * 7 + len);
		v = 1;
		UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbne_memcpy_store__ptr(mo, mode, &v, 1, dst, src, len, 2, cpu));
		ok(ret == 0 && v == 2 && !memcmp(dst, src, len) && (len == sizeof(dst) || dst[len] == 0),
		   "load_cbne_memcpy_store %s %s: copies exactly %zu bytes", mode_name(mode), mo_name(mo), len);
	}
	memset(dst, 0, sizeof(dst));
	UNTIL_NOT_ABORTED(ret, mode, rseq_load_cbne_memcpy_store__ptr(mo, mode, &v, 1, dst, src, 8, 3, cpu));
	ok(ret == 1 && v == 2 && dst[0] == 0, "load_cbne_memcpy_store %s %s: compare failure copies nothing", mode_name(mode), mo_name(mo));
	ret = rseq_load_cbne_memcpy_store__ptr(mo, mode, &v, 2, dst, src, 8, 3, wrong(mode));
	ok(ret == -1 && v == 2, "load_cbne_memcpy_store %s %s: wrong cpu aborts", mode_name(mode), mo_name(mo));
	if (mode == RSEQ_PERCPU_CPU_ID) {
		UNTIL_NOT_ABORTED(ret, mode, mo == RSEQ_MO_RELEASE ?
			rseq_cmpeqv_trymemcpy_storev_release(&v, 2, dst, src, 16, 4, cpu) :
			rseq_cmpeqv_trymemcpy_storev(&v, 2, dst, src, 16, 4, cpu));
		ok(ret == 0 && v == 4 && !memcmp(dst, src, 16), "rseq_cmpeqv_trymemcpy_storev%s commits", mo == RSEQ_MO_RELEASE ? "_release" : "");
	}
}

/* While unregistered, every family aborts and commits nothing, even when
 * passed the CPU number an unregistered thread reads (-1). Each call
 * starts unregistered: when the library owns registration, the abort's
 * slow path registers the thread again (automatic registration). */
#define UNREGISTERED(expr) (unregister_thread(), (expr))

static void test_unregistered(enum rseq_percpu_mode mode)
{
	intptr_t v = 1, v2 = 2, load = 0;
	char buf[8] = { 0 };
	int cpu = current(mode);
	struct node n1 = { 1, NULL };
	intptr_t head = (intptr_t)&n1;
	int r[9], reregistered;

	r[0] = UNREGISTERED(rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, 5, cpu));
	reregistered = rseq_current_cpu_raw() >= 0;
	r[1] = UNREGISTERED(rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, &head, 0, offsetof(struct node, next), &load, cpu));
	r[2] = UNREGISTERED(rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, cpu));
	r[3] = UNREGISTERED(rseq_load_cbne_store_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, &v2, 3, 5, cpu));
	r[4] = UNREGISTERED(rseq_load_cbne_store_store__ptr(RSEQ_MO_RELEASE, mode, &v, 1, &v2, 3, 5, cpu));
	r[5] = UNREGISTERED(rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, &v2, 2, 5, cpu));
	r[6] = UNREGISTERED(rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, buf, "abcdefg", 8, 5, cpu));
	r[7] = UNREGISTERED(rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, rseq_current_cpu_raw()));
	r[8] = UNREGISTERED(rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, -2));
	reregister_thread();
	ok(r[0] == -1 && r[1] == -1 && r[2] == -1 && r[3] == -1 && r[4] == -1 && r[5] == -1 && r[6] == -1,
	   "unregistered %s: every family aborts (%d %d %d %d %d %d %d)", mode_name(mode), r[0], r[1], r[2], r[3], r[4], r[5], r[6]);
	ok(r[7] == -1 && r[8] == -1, "unregistered %s: aborts even with cpu = cpu_id = -1 or -2", mode_name(mode));
	ok(v == 1 && head == (intptr_t)&n1 && load == 0, "unregistered %s: nothing committed", mode_name(mode));
	if (rseq_available(RSEQ_AVAILABLE_QUERY_LIBC))
		skip(1, "glibc owns registration: no automatic registration to test");
	else
		ok(reregistered, "unregistered %s: the abort registered the thread again", mode_name(mode));
}

static void test_invalid_arguments(void)
{
	intptr_t v = 1;
	int cpu = (int)rseq_cpu_start();

	errno = 0;
	ok(rseq_load_add_store__ptr((enum rseq_mo)RSEQ_MO_ACQUIRE, RSEQ_PERCPU_CPU_ID, &v, 1, cpu) == -1 && errno == EINVAL && v == 1,
	   "ACQUIRE is rejected with EINVAL");
	errno = 0;
	ok(rseq_load_add_store__ptr((enum rseq_mo)42, RSEQ_PERCPU_CPU_ID, &v, 1, cpu) == -1 && errno == EINVAL && v == 1,
	   "an unknown order is rejected with EINVAL");
	errno = 0;
	ok(rseq_load_add_store__ptr(RSEQ_MO_RELAXED, (enum rseq_percpu_mode)7, &v, 1, cpu) == -1 && errno == EINVAL && v == 1,
	   "an unknown percpu mode is rejected with EINVAL");
	errno = 0;
	ok(rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_SEQ_CST, RSEQ_PERCPU_CPU_ID, &v, 1, &v, &v, 0, 2, cpu) == -1 && errno == EINVAL && v == 1,
	   "SEQ_CST memcpy is rejected with EINVAL");
}

int main(void)
{
	enum rseq_percpu_mode modes[2] = { RSEQ_PERCPU_CPU_ID, RSEQ_PERCPU_MM_CID };
	int nmodes = rseq_mm_cid_available() ? 2 : 1;

	plan_no_plan();
	diag("rseq_size %u, glibc owns registration: %d, mm_cid: %d", rseq_size,
	     rseq_available(RSEQ_AVAILABLE_QUERY_LIBC), rseq_mm_cid_available());
	if (!rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL))
		bail_out("this kernel has no rseq");
	for (int m = 0; m < nmodes; m++) {
		enum rseq_percpu_mode mode = modes[m];

		test_family_cbne_store(mode);
		test_family_pop(mode);
		test_family_add(mode);
		test_family_deref_add(mode);
		test_family_store_store(mode, RSEQ_MO_RELAXED);
		test_family_store_store(mode, RSEQ_MO_RELEASE);
		test_family_cbne_cbne(mode);
		test_family_memcpy(mode, RSEQ_MO_RELAXED);
		test_family_memcpy(mode, RSEQ_MO_RELEASE);
		test_unregistered(mode);
	}
	if (nmodes == 1)
		skip(1, "kernel without mm_cid: MM_CID mode not tested");
	test_invalid_arguments();
	return exit_status();
}
