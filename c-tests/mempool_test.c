/* SPDX-License-Identifier: MIT */
/*
 * Every function of <rseq/mempool.h>, through the public header only
 * (also built as C++: mempool_cxx_test): per-CPU and global pools,
 * strides, max_nr_cpus, the init callback, max_nr_ranges, poison, the
 * populate policies (copy-on-write checked through RssAnon), pool sets,
 * rseq_mempool_range_init_numa, robust mode (misuse aborts, checked in
 * forked children) and bad input (clear errors, nothing lost).
 */
#ifndef _GNU_SOURCE /* g++ defines it */
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rseq/mempool.h>
#include <rseq/rseq.h>

#include "tap.h"

#define KIB 1024UL
#define MIB (1024UL * 1024UL)

struct init_log {
	int calls;
	int cpus_seen[64];
	size_t len;
	int fail_errno;
};

static int record_init(void *priv, void *addr, size_t len, int cpu)
{
	struct init_log *log = (struct init_log *)priv;

	if (log->fail_errno) {
		errno = log->fail_errno;
		return -1;
	}
	if (log->calls < 64)
		log->cpus_seen[log->calls] = cpu;
	log->calls++;
	log->len = len;
	return rseq_mempool_range_init_numa(addr, len, cpu, 0);
}

static long rss_anon_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld kB", &v) == 1)
			break;
	fclose(f);
	return v;
}

static int under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "vgpreload");
}

static void test_attrs(void)
{
	struct rseq_mempool_attr *attr = rseq_mempool_attr_create();

	ok(attr != NULL, "rseq_mempool_attr_create");
	errno = 0;
	ok(rseq_mempool_attr_set_robust(NULL) == -1 && errno == EINVAL, "set_robust(NULL): -1 EINVAL");
	errno = 0;
	ok(rseq_mempool_attr_set_percpu(NULL, 0, 0) == -1 && errno == EINVAL, "set_percpu(NULL): -1 EINVAL");
	errno = 0;
	ok(rseq_mempool_attr_set_global(NULL, 0) == -1 && errno == EINVAL, "set_global(NULL): -1 EINVAL");
	errno = 0;
	ok(rseq_mempool_attr_set_max_nr_ranges(NULL, 1) == -1 && errno == EINVAL, "set_max_nr_ranges(NULL): -1 EINVAL");
	errno = 0;
	ok(rseq_mempool_attr_set_poison(NULL, 1) == -1 && errno == EINVAL, "set_poison(NULL): -1 EINVAL");
	errno = 0;
	ok(rseq_mempool_attr_set_init(NULL, record_init, NULL) == -1 && errno == EINVAL, "set_init(NULL): -1 EINVAL");
	errno = 0;
	ok(rseq_mempool_attr_set_populate_policy(NULL, RSEQ_MEMPOOL_POPULATE_COW_ZERO) == -1 && errno == EINVAL,
	   "set_populate_policy(NULL): -1 EINVAL");
	errno = 0;
	ok(rseq_mempool_attr_set_populate_policy(attr, (enum rseq_mempool_populate_policy)7) == -1 && errno == EINVAL,
	   "set_populate_policy(7): -1 EINVAL");
	ok(rseq_mempool_attr_set_populate_policy(attr, RSEQ_MEMPOOL_POPULATE_COW_ZERO) == 0 &&
	   rseq_mempool_attr_set_populate_policy(attr, RSEQ_MEMPOOL_POPULATE_COW_INIT) == 0,
	   "set_populate_policy(COW_ZERO, COW_INIT): 0");
	rseq_mempool_attr_destroy(attr);
	rseq_mempool_attr_destroy(NULL);
}

static void test_default_pool(void)
{
	struct rseq_mempool *pool = rseq_mempool_create("default", sizeof(intptr_t), NULL);
	int n = rseq_get_max_nr_cpus(), cpu, good = 1;
	intptr_t __rseq_percpu *p, *q;
	intptr_t init = 77;

	if (!ok(pool != NULL, "rseq_mempool_create(NULL attr): per-CPU pool with the defaults")) {
		return;
	}
	ok(rseq_mempool_get_max_nr_cpus(pool) == n, "get_max_nr_cpus is rseq_get_max_nr_cpus() (%d, %d)",
	   rseq_mempool_get_max_nr_cpus(pool), n);
	p = (intptr_t *)rseq_mempool_percpu_zmalloc(pool);
	q = (intptr_t *)rseq_mempool_percpu_malloc_init(pool, &init, sizeof(init));
	ok(p && q && p != q, "zmalloc and malloc_init return distinct items");
	for (cpu = 0; cpu < n; cpu++) {
		intptr_t *pc = rseq_percpu_ptr(p, cpu), *qc = rseq_percpu_ptr(q, cpu, RSEQ_MEMPOOL_STRIDE);

		if ((uintptr_t)pc != (uintptr_t)p + (uintptr_t)cpu * RSEQ_MEMPOOL_STRIDE || *pc != 0 || *qc != 77)
			good = 0;
		*pc = cpu + 1;
	}
	for (cpu = 0; cpu < n; cpu++)
		if (*rseq_percpu_ptr(p, cpu) != cpu + 1 || *rseq_percpu_ptr(q, cpu) != 77)
			good = 0;
	ok(good, "CPU n's copy at ptr + n * RSEQ_MEMPOOL_STRIDE: zeroed / initialised, independent");
	errno = 0;
	rseq_mempool_percpu_free(p);
	rseq_mempool_percpu_free(q, RSEQ_MEMPOOL_STRIDE);
	rseq_mempool_percpu_free(NULL);
	ok(errno == 0, "rseq_mempool_percpu_free (default and explicit stride, NULL): no error");
	p = (intptr_t *)rseq_mempool_percpu_malloc(pool);
	ok(p == q, "malloc reuses the last freed item");
	rseq_mempool_percpu_free(p);
	ok(rseq_mempool_destroy(pool) == 0, "rseq_mempool_destroy");
	ok(rseq_mempool_destroy(NULL) == 0, "rseq_mempool_destroy(NULL): 0");
}

static void test_attr_pool(void)
{
	struct rseq_mempool_attr *attr = rseq_mempool_attr_create();
	struct init_log log;
	struct rseq_mempool *pool;
	void *items[64];
	int i, good = 1;
	char *p;

	memset(&log, 0, sizeof(log));
	ok(rseq_mempool_attr_set_percpu(attr, 4096, 4) == 0 && rseq_mempool_attr_set_init(attr, record_init, &log) == 0 &&
	   rseq_mempool_attr_set_max_nr_ranges(attr, 1) == 0, "set_percpu(4096, 4), set_init, set_max_nr_ranges(1)");
	pool = rseq_mempool_create("small", 100, attr);
	if (!ok(pool != NULL, "per-CPU pool of 100-byte items, stride 4096, 4 CPUs"))
		return;
	ok(log.calls == 4 && log.len == 4096 && log.cpus_seen[0] == 0 && log.cpus_seen[3] == 3,
	   "init callback: once per CPU of the first range (calls %d, len %zu)", log.calls, log.len);
	ok(rseq_mempool_get_max_nr_cpus(pool) == 4, "get_max_nr_cpus: 4");
	/* 100 rounds up to 128: 32 items per 4096-byte range. */
	for (i = 0; i < 32; i++) {
		items[i] = rseq_mempool_percpu_malloc(pool);
		if (!items[i] || (i && (uintptr_t)items[i] - (uintptr_t)items[i - 1] != 128))
			good = 0;
	}
	ok(good, "32 items of 128 bytes fill one range");
	errno = 0;
	ok(rseq_mempool_percpu_malloc(pool) == NULL && errno == ENOMEM, "max_nr_ranges 1: the 33rd malloc fails with ENOMEM");
	ok(log.calls == 4, "no second range was initialised");
	rseq_mempool_percpu_free(items[5], 4096);
	p = (char *)rseq_mempool_percpu_malloc(pool);
	ok(p == items[5], "a freed item serves the next malloc");
	p[3 * 4096] = 1;
	ok(p[0] == 0 && p[4096] == 0, "copies of CPUs 0, 1 and 3 are independent");
	ok(rseq_mempool_destroy(pool) == 0, "destroy with items still allocated (not robust): 0");
	rseq_mempool_attr_destroy(attr);
}

static void test_global_pool(void)
{
	struct rseq_mempool_attr *attr = rseq_mempool_attr_create();
	struct rseq_mempool *pool;
	uintptr_t *a, *b;
	uintptr_t v = 5;
	int good = 1, i;

	ok(rseq_mempool_attr_set_global(attr, 0) == 0 && rseq_mempool_attr_set_poison(attr, 0xabcd) == 0,
	   "set_global(0), set_poison(0xabcd)");
	pool = rseq_mempool_create("global", 32, attr);
	if (!ok(pool != NULL, "global pool"))
		return;
	errno = 0;
	ok(rseq_mempool_get_max_nr_cpus(pool) == -1 && errno == EINVAL, "get_max_nr_cpus of a global pool: -1 EINVAL");
	a = (uintptr_t *)rseq_mempool_malloc(pool);
	for (i = 0; i < 4; i++)
		if (a[i] != 0xabcd)
			good = 0;
	ok(good, "malloc in a poisoned pool: the item holds the poison");
	b = (uintptr_t *)rseq_mempool_zmalloc(pool);
	ok(b && b[0] == 0 && b[3] == 0, "zmalloc: zeroed");
	rseq_mempool_free(b);
	ok(b[0] == 0xabcd && b[3] == 0xabcd, "free: the item is poisoned again");
	b = (uintptr_t *)rseq_mempool_malloc_init(pool, &v, sizeof(v));
	ok(b && b[0] == 5 && b[1] == 0xabcd, "malloc_init writes init_len bytes");
	rseq_mempool_free(a);
	rseq_mempool_free(b, RSEQ_MEMPOOL_STRIDE);
	ok(rseq_mempool_destroy(pool) == 0, "destroy the global pool");
	rseq_mempool_attr_destroy(attr);
}

static void test_set(void)
{
	struct rseq_mempool_set *set = rseq_mempool_set_create();
	struct rseq_mempool *p16 = rseq_mempool_create("16", 16, NULL);
	struct rseq_mempool *p64 = rseq_mempool_create("64", 64, NULL);
	struct rseq_mempool *dup = rseq_mempool_create("16 again", 9, NULL);
	char init[40];
	char *a, *b, *c;

	memset(init, 'x', sizeof(init));
	ok(set && p16 && p64 && dup, "set_create and three pools");
	ok(rseq_mempool_set_add_pool(set, p16) == 0 && rseq_mempool_set_add_pool(set, p64) == 0,
	   "set_add_pool: 16- and 64-byte pools");
	errno = 0;
	ok(rseq_mempool_set_add_pool(set, dup) == -1 && errno == EBUSY, "a second 16-byte pool: -1 EBUSY");
	errno = 0;
	ok(rseq_mempool_set_add_pool(NULL, dup) == -1 && errno == EINVAL, "set_add_pool(NULL set): -1 EINVAL");
	rseq_mempool_destroy(dup);
	a = (char *)rseq_mempool_set_percpu_zmalloc(set, 10);
	b = (char *)rseq_mempool_set_percpu_malloc_init(set, init, sizeof(init));
	c = (char *)rseq_mempool_set_percpu_malloc(set, 64);
	ok(a && b && c && a[9] == 0 && rseq_percpu_ptr(b, 1)[39] == 'x', "set zmalloc(10), malloc_init(40), malloc(64)");
	errno = 0;
	ok(rseq_mempool_set_percpu_malloc(set, 65) == NULL && errno == ENOMEM, "set malloc(65): no pool fits, ENOMEM");
	ok(rseq_mempool_set_malloc(set, 1) != NULL && rseq_mempool_set_zmalloc(set, 2) != NULL &&
	   rseq_mempool_set_malloc_init(set, init, 3) != NULL, "the single-copy set wrappers allocate");
	rseq_mempool_percpu_free(a);
	rseq_mempool_percpu_free(b);
	rseq_mempool_percpu_free(c);
	ok(rseq_mempool_set_destroy(set) == 0 && rseq_mempool_set_destroy(NULL) == 0,
	   "set_destroy destroys its pools; set_destroy(NULL): 0");
}

static void test_bad_input(void)
{
	struct rseq_mempool_attr *attr = rseq_mempool_attr_create();
	struct rseq_mempool *pool;
	struct init_log log;
	intptr_t local = 1, big[100];
	void *p, *q;

	errno = 0;
	ok(rseq_mempool_create("zero", 0, NULL) == NULL && errno == EINVAL, "item_len 0: NULL EINVAL");
	errno = 0;
	ok(rseq_mempool_create("huge", RSEQ_MEMPOOL_STRIDE + 1, NULL) == NULL && errno == EINVAL,
	   "item_len > stride: NULL EINVAL");
	rseq_mempool_attr_set_percpu(attr, 3 * 4096, 2);
	errno = 0;
	ok(rseq_mempool_create("odd stride", 8, attr) == NULL && errno == EINVAL, "stride not a power of two: NULL EINVAL");
	rseq_mempool_attr_set_percpu(attr, 0, -1);
	errno = 0;
	ok(rseq_mempool_create("neg cpus", 8, attr) == NULL && errno == EINVAL, "max_nr_cpus -1: NULL EINVAL");
	memset(&log, 0, sizeof(log));
	log.fail_errno = EPERM;
	rseq_mempool_attr_set_percpu(attr, 0, 2);
	rseq_mempool_attr_set_init(attr, record_init, &log);
	errno = 0;
	ok(rseq_mempool_create("init fails", 8, attr) == NULL && errno == EPERM, "init callback fails: NULL, its errno");
	errno = 0;
	ok(rseq_mempool_percpu_malloc(NULL) == NULL && errno == EINVAL, "malloc(NULL pool): NULL EINVAL");
	errno = 0;
	ok(rseq_mempool_get_max_nr_cpus(NULL) == -1 && errno == EINVAL, "get_max_nr_cpus(NULL): -1 EINVAL");

	pool = rseq_mempool_create("bad input", 16, NULL);
	errno = 0;
	ok(rseq_mempool_percpu_malloc_init(pool, big, sizeof(big)) == NULL && errno == EINVAL,
	   "malloc_init longer than an item: NULL EINVAL");
	p = rseq_mempool_percpu_malloc(pool);
	fprintf(stderr, "# the next four lines of librseq errors are expected\n");
	errno = 0;
	rseq_mempool_percpu_free(&local);
	ok(errno == EINVAL && local == 1, "free of a foreign pointer: errno EINVAL, nothing touched");
	errno = 0;
	rseq_mempool_percpu_free(p, 2 * RSEQ_MEMPOOL_STRIDE);
	ok(errno == EINVAL, "free with the wrong stride: errno EINVAL");
	errno = 0;
	rseq_mempool_percpu_free((char *)p + 8);
	ok(errno == EINVAL, "free of an interior pointer: errno EINVAL");
	errno = 0;
	rseq_mempool_percpu_free(p);
	ok(errno == 0, "the item was not lost: the proper free works");
	errno = 0;
	rseq_mempool_percpu_free(p);
	ok(errno == EINVAL, "double free: errno EINVAL");
	q = rseq_mempool_percpu_malloc(pool);
	ok(q == p && rseq_mempool_percpu_malloc(pool) != p, "after the double free the item is handed out once");
	errno = 0;
	ok(rseq_mempool_range_init_numa(p, 4096, 0, 1 << 10) == -1 && errno == EINVAL,
	   "range_init_numa with unknown flags: -1 EINVAL");
	ok(rseq_mempool_range_init_numa((void *)((uintptr_t)p & ~(uintptr_t)4095), 4096, 0, 0) == 0 &&
	   rseq_mempool_range_init_numa(p, 4096, -1, 0) == 0, "range_init_numa(cpu 0), (cpu -1): 0");
	rseq_mempool_destroy(pool);
	rseq_mempool_attr_destroy(attr);
}

/* Runs `fn` in a child; passes when it dies of SIGABRT with `expect` on stderr. */
static void expect_abort(const char *what, void (*fn)(void), const char *expect)
{
	int fds[2], status = 0;
	char buf[4096];
	ssize_t n, len = 0;
	pid_t pid;

	if (pipe(fds))
		bail_out("pipe");
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 2);
		close(fds[0]);
		fn();
		_exit(0);
	}
	close(fds[1]);
	while (len < (ssize_t)sizeof(buf) - 1 && (n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
		len += n;
	buf[len] = 0;
	close(fds[0]);
	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(buf, expect) != NULL,
	   "robust: %s aborts with \"%s\" (status %#x)", what, expect, status);
	if (!strstr(buf, expect))
		diag("child stderr: %s", buf);
}

static struct rseq_mempool *robust_pool(void)
{
	struct rseq_mempool_attr *attr = rseq_mempool_attr_create();
	struct rseq_mempool *pool;

	rseq_mempool_attr_set_robust(attr);
	rseq_mempool_attr_set_percpu(attr, 0, 2);
	pool = rseq_mempool_create("robust", 32, attr);
	rseq_mempool_attr_destroy(attr);
	if (!pool)
		_exit(3);
	return pool;
}

static void robust_double_free(void)
{
	struct rseq_mempool *pool = robust_pool();
	void *p = rseq_mempool_percpu_malloc(pool);

	rseq_mempool_percpu_free(p);
	rseq_mempool_percpu_free(p);
}

static void robust_write_after_free(void)
{
	struct rseq_mempool *pool = robust_pool();
	char *p = (char *)rseq_mempool_percpu_zmalloc(pool);

	rseq_mempool_percpu_free(p);
	rseq_percpu_ptr(p, 1)[5] = 9;
	rseq_mempool_percpu_malloc(pool);
}

static void robust_leak(void)
{
	struct rseq_mempool *pool = robust_pool();

	rseq_mempool_percpu_malloc(pool);
	rseq_mempool_destroy(pool);
}

static void robust_wrong_stride(void)
{
	struct rseq_mempool *pool = robust_pool();

	rseq_mempool_percpu_free(rseq_mempool_percpu_malloc(pool), 4096);
}

static void test_robust(void)
{
	struct rseq_mempool *pool = robust_pool();
	uintptr_t *p = (uintptr_t *)rseq_mempool_percpu_zmalloc(pool);
	uintptr_t poison;

	memset(&poison, 0x55, sizeof(poison));
	rseq_mempool_percpu_free(p);
	ok(p[0] == poison && rseq_percpu_ptr(p, 1)[3] == poison,
	   "robust: freed items get the default poison on every CPU");
	ok(rseq_mempool_percpu_malloc(pool) == p, "robust: an intact freed item is reused");
	rseq_mempool_percpu_free(p);
	ok(rseq_mempool_destroy(pool) == 0, "robust: destroy of an empty, intact pool");
	if (under_valgrind()) {
		/* A forked child would write into the parent's memcheck XML. */
		skip(4, "robust aborts are checked in forked children, not under valgrind");
		return;
	}
	expect_abort("double free", robust_double_free, "double free");
	expect_abort("write after free", robust_write_after_free, "corruption detected");
	expect_abort("destroy with allocated items", robust_leak, "memory leak");
	expect_abort("free with the wrong stride", robust_wrong_stride, "does not match the stride");
}

/* Copy-on-write: CPUs that never write keep no memory of their own. */
static void test_cow(enum rseq_mempool_populate_policy policy, const char *name)
{
	const int cpus = 128, items = 64;
	struct rseq_mempool_attr *attr = rseq_mempool_attr_create();
	struct rseq_mempool *pool;
	char *p[64], init[1024];
	long before, after_alloc, after_cpu0, after_all;
	int i, cpu, good = 1;

	memset(init, policy == RSEQ_MEMPOOL_POPULATE_COW_INIT ? 0x3c : 0, sizeof(init));
	rseq_mempool_attr_set_percpu(attr, 0, cpus);
	rseq_mempool_attr_set_populate_policy(attr, policy);
	before = rss_anon_kib();
	pool = rseq_mempool_create(name, sizeof(init), attr);
	rseq_mempool_attr_destroy(attr);
	if (!ok(pool != NULL, "%s: pool of %d CPUs x 64 KiB", name, cpus))
		return;
	for (i = 0; i < items; i++) {
		if (policy == RSEQ_MEMPOOL_POPULATE_COW_INIT)
			p[i] = (char *)rseq_mempool_percpu_malloc_init(pool, init, sizeof(init));
		else
			p[i] = (char *)rseq_mempool_percpu_zmalloc(pool);
		if (!p[i])
			bail_out("%s: malloc %d failed", name, i);
	}
	after_alloc = rss_anon_kib();
	for (i = 0; i < items; i++)
		p[i][1] = 1;
	after_cpu0 = rss_anon_kib();
	for (i = 0; i < items; i++)
		for (cpu = 1; cpu < cpus; cpu += 17)
			if (memcmp(rseq_percpu_ptr(p[i], cpu), init, sizeof(init)))
				good = 0;
	ok(good, "%s: untouched CPUs read the initial values", name);
	for (i = 0; i < items; i++)
		for (cpu = 0; cpu < cpus; cpu++)
			rseq_percpu_ptr(p[i], cpu)[0] = 2;
	after_all = rss_anon_kib();
	diag("%s: RssAnon %ld kB before, +%ld after %d allocations, +%ld after CPU 0 wrote, +%ld after every CPU wrote",
	     name, before, after_alloc - before, items, after_cpu0 - before, after_all - before);
	if (under_valgrind() || before < 0) {
		skip(2, "no meaningful RSS under valgrind");
	} else {
		ok(after_cpu0 - before < 2048, "%s: allocating and writing CPU 0's copies costs < 2 MiB (%ld kB), not %d x 64 KiB",
		   name, after_cpu0 - before, cpus);
		ok(after_all - before >= 6 * 1024, "%s: writing every CPU's copy populates them (%ld kB)", name,
		   after_all - before);
	}
	for (i = 0; i < items; i++)
		rseq_mempool_percpu_free(p[i]);
	rseq_mempool_destroy(pool);
}

int main(void)
{
	plan_no_plan();
	diag("rseq_size %u, max_nr_cpus %d", rseq_size, rseq_get_max_nr_cpus());
	test_attrs();
	test_default_pool();
	test_attr_pool();
	test_global_pool();
	test_set();
	test_bad_input();
	test_robust();
	test_cow(RSEQ_MEMPOOL_POPULATE_COW_INIT, "COW_INIT");
	test_cow(RSEQ_MEMPOOL_POPULATE_COW_ZERO, "COW_ZERO");
	return exit_status();
}
