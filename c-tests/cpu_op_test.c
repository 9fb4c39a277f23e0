/* SPDX-License-Identifier: MIT */
/*
 * cpu-op conformance: every expectation of API.md section 4.3 (the 2017
 * series' own test, one assertion each), the argument checks, EFAULT on a
 * read-only destination with nothing applied, the named helpers, the
 * percpu_* wrappers on the right and on a wrong CPU, other CPUs, mm_cid
 * targets, fences and counters.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/cpu_opv.h>	/* through pkg-config libcpu-op */
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rseq/cpu-op.h>
#include <rseq/percpu-op.h>

#include "tap.h"

static int cpu;

static struct cpu_op op_compare(int eq, const void *a, const void *b, uint32_t len)
{
	struct cpu_op op = { .op = eq ? CPU_COMPARE_EQ_OP : CPU_COMPARE_NE_OP, .len = len };

	op.u.compare_op.a = (uintptr_t)a;
	op.u.compare_op.b = (uintptr_t)b;
	return op;
}

static struct cpu_op op_memcpy(void *dst, const void *src, uint32_t len)
{
	struct cpu_op op = { .op = CPU_MEMCPY_OP, .len = len };

	op.u.memcpy_op.dst = (uintptr_t)dst;
	op.u.memcpy_op.src = (uintptr_t)src;
	return op;
}

static struct cpu_op op_arith(int type, void *p, uint64_t arg, uint32_t len)
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

static struct cpu_op op_mb(void)
{
	struct cpu_op op = { .op = CPU_MB_OP, .len = 0 };

	return op;
}

static int run(struct cpu_op *ops, int n)
{
	return cpu_opv(ops, n, cpu, 0);
}

#define EXPECT_ERR(expr, err, what) do {					\
	int __r;								\
	errno = 0;								\
	__r = (expr);								\
	ok(__r == -1 && errno == (err), "%s (ret %d, errno %d)", what, __r, errno); \
} while (0)

static void test_conformance(void)
{
	char a[64], b[64];
	static char big_src[4096], big_dst[4096];
	uint32_t u32_src = 0xa5a5a5a5, u32_dst = 0;
	uint64_t x;
	struct cpu_op ops[17];
	int i;

	memset(a, 1, sizeof(a));
	memset(b, 1, sizeof(b));
	ops[0] = op_compare(1, a, b, sizeof(a));
	ok(run(ops, 1) == 0, "compare EQ of equal buffers returns 0");
	b[63] = 2;
	ok(run(ops, 1) > 0, "compare EQ of different buffers returns > 0");
	ops[0] = op_compare(0, a, b, sizeof(a));
	ok(run(ops, 1) == 0, "compare NE of different buffers returns 0");
	b[63] = 1;
	ok(run(ops, 1) > 0, "compare NE of equal buffers returns > 0");

	ops[0] = op_compare(1, a, b, sizeof(a));
	ops[1] = op_compare(1, a, b, sizeof(a));
	b[0] = 3;
	ok(run(ops, 2) == 1, "two compares: the first fails -> 1");
	b[0] = 1;
	ops[1] = op_compare(0, a, b, sizeof(a));
	ok(run(ops, 2) == 2, "two compares: the second fails -> 2");

	for (i = 0; i < 4096; i++)
		big_src[i] = (char)(i * 13);
	ops[0] = op_memcpy(big_dst, big_src, 4096);
	ok(run(ops, 1) == 0 && !memcmp(big_dst, big_src, 4096), "4096-byte memcpy");
	ops[0] = op_memcpy(&u32_dst, &u32_src, sizeof(u32_dst));
	ok(run(ops, 1) == 0 && u32_dst == 0xa5a5a5a5, "u32 memcpy");

	{
		uint64_t s = 0x1122334455667788ULL, mid = 0, end = 0;

		ops[0] = op_memcpy(&mid, &s, 8);
		ops[1] = op_mb();
		ops[2] = op_memcpy(&end, &mid, 8);
		ok(run(ops, 3) == 0 && end == s, "memcpy, MB, memcpy: a later op sees an earlier op's result");
	}

	{
		uint32_t v32 = 0;
		uint64_t v64 = 99;

		ops[0] = op_arith(CPU_ADD_OP, &v32, 42, 4);
		ok(run(ops, 1) == 0 && v32 == 42, "add with len 4");
		ops[0] = op_arith(CPU_ADD_OP, &v64, 123, 8);
		ops[1] = op_arith(CPU_ADD_OP, &v64, 0, 8);
		v64 = 99;
		ops[1] = op_arith(CPU_ADD_OP, &v64, (uint64_t)-1, 8);
		ok(run(ops, 2) == 0 && v64 == 99 + 123 - 1, "two adds in one vector (99 + 123 - 1)");
		v32 = UINT32_MAX;
		ops[0] = op_arith(CPU_ADD_OP, &v32, 1, 4);
		ok(run(ops, 1) == 0 && v32 == 0, "add wraps around modulo 2^32");
	}

	x = 0xF0F0;
	ops[0] = op_arith(CPU_OR_OP, &x, 0xFFF, 8);
	ok(run(ops, 1) == 0 && x == (0xF0F0 | 0xFFF), "or with 0xFFF");
	x = 0xF0F0;
	ops[0] = op_arith(CPU_AND_OP, &x, 0xFFF, 8);
	ok(run(ops, 1) == 0 && x == (0xF0F0 & 0xFFF), "and with 0xFFF");
	x = 0xF0F0;
	ops[0] = op_arith(CPU_XOR_OP, &x, 0xFFF, 8);
	ok(run(ops, 1) == 0 && x == (0xF0F0 ^ 0xFFF), "xor with 0xFFF");
	x = 0x123;
	ops[0] = op_arith(CPU_LSHIFT_OP, &x, 5, 8);
	ok(run(ops, 1) == 0 && x == (0x123ULL << 5), "lshift by 5");
	x = 0x123;
	ops[0] = op_arith(CPU_RSHIFT_OP, &x, 5, 8);
	ok(run(ops, 1) == 0 && x == (0x123ULL >> 5), "rshift by 5");
	{
		uint8_t b8 = 0x81;

		ops[0] = op_arith(CPU_RSHIFT_OP, &b8, 7, 1);
		ok(run(ops, 1) == 0 && b8 == 1, "rshift is logical on a 1-byte value");
	}

	{
		uint64_t v = 5, expect = 5, old = 0, n = 7;

		ok(cpu_op_cmpxchg(&v, &expect, &old, &n, 8, cpu) == 0 && v == 7 && old == 5, "cmpxchg success swaps and fills old");
		old = 0;
		ok(cpu_op_cmpxchg(&v, &expect, &old, &n, 8, cpu) == 2 && v == 7 && old == 7, "cmpxchg failure returns 2, leaves v, fills old");
	}

	ops[0] = op_memcpy(a, NULL, 8);
	EXPECT_ERR(run(ops, 1), EFAULT, "memcpy from NULL -> EFAULT");
	ops[0].u.memcpy_op.expect_fault_src = 1;
	EXPECT_ERR(run(ops, 1), EAGAIN, "memcpy from NULL with expect_fault_src -> EAGAIN");

	ops[0] = op_mb();
	ops[0].op = -1;
	EXPECT_ERR(run(ops, 1), EINVAL, "op -1 -> EINVAL");
	ops[0].op = 10;
	EXPECT_ERR(run(ops, 1), EINVAL, "op 10 -> EINVAL");
	for (i = 0; i < 17; i++)
		ops[i] = op_mb();
	ok(run(ops, 16) == 0, "16 MB ops accepted");
	EXPECT_ERR(run(ops, 17), EINVAL, "17 ops -> EINVAL");
	ops[0] = op_memcpy(big_dst, big_src, 65537);
	EXPECT_ERR(run(ops, 1), EINVAL, "one 65537-byte memcpy -> EINVAL");
	ops[0] = op_memcpy(big_dst, big_src, 4096);
	ops[1] = op_memcpy(big_dst, big_src, 4096);
	EXPECT_ERR(run(ops, 2), EINVAL, "two 4096-byte memcpys -> EINVAL");
	ops[0] = op_arith(CPU_ADD_OP, &x, 1, 3);
	EXPECT_ERR(run(ops, 1), EINVAL, "add with len 3 -> EINVAL");
	ops[0] = op_arith(CPU_LSHIFT_OP, &x, 64, 8);
	EXPECT_ERR(run(ops, 1), EINVAL, "lshift by 64 on 8 bytes -> EINVAL");
}

static void test_arguments(void)
{
	struct cpu_op op = op_mb();
	int max = rseq_get_max_nr_cpus();

	EXPECT_ERR(cpu_opv(&op, 1, cpu, 4), EINVAL, "unknown flag -> EINVAL");
	EXPECT_ERR(cpu_opv(&op, 1, -1, 0), EINVAL, "cpu -1 -> EINVAL");
	EXPECT_ERR(cpu_opv(&op, 1, max, 0), EINVAL, "cpu = number of possible CPUs -> EINVAL");
	EXPECT_ERR(cpu_opv(&op, -1, cpu, 0), EINVAL, "cpuopcnt -1 -> EINVAL");
	ok(cpu_opv(&op, 0, cpu, 0) == 0, "cpuopcnt 0 -> 0");
	EXPECT_ERR(cpu_opv(NULL, 1, cpu, 0), EFAULT, "NULL vector -> EFAULT");
	EXPECT_ERR(cpu_op_add(&op, 1, 3, cpu), EINVAL, "cpu_op_add with len 3 -> EINVAL");
	EXPECT_ERR(cpu_op_addv((intptr_t *)&op, 1, -5), EINVAL, "cpu_op_addv on cpu -5 -> EINVAL");
	{
		intptr_t v = 0;
		char buf[8];

		EXPECT_ERR(cpu_op_cmpeqv_memcpy_storev(&v, 0, buf, buf, 4097, 1, cpu), EINVAL,
			   "cpu_op_cmpeqv_memcpy_storev with len 4097 -> EINVAL");
		ok(v == 0, "... and nothing stored");
	}
}

/* A read-only destination fails with EFAULT and leaves everything as it
 * was, including operations before the bad one. */
static void test_readonly_destination(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *ro = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t v = 10, src = 0x77;
	struct cpu_op ops[2];

	if (ro == MAP_FAILED)
		bail_out("mmap");
	memset(ro, 0x5a, (size_t)page);
	mprotect(ro, (size_t)page, PROT_READ);
	ops[0] = op_arith(CPU_ADD_OP, &v, 5, 8);
	ops[1] = op_memcpy(ro + 8, &src, 8);
	EXPECT_ERR(cpu_opv(ops, 2, cpu, 0), EFAULT, "memcpy into a read-only page -> EFAULT");
	ok(v == 10 && ro[8] == 0x5a && ro[15] == 0x5a, "... nothing applied: earlier add not done, page unchanged");
	ops[1].u.memcpy_op.expect_fault_dst = 1;
	EXPECT_ERR(cpu_opv(ops, 2, cpu, 0), EAGAIN, "... EAGAIN with expect_fault_dst");
	ops[0] = op_arith(CPU_XOR_OP, ro, 1, 4);
	EXPECT_ERR(cpu_opv(ops, 1, cpu, 0), EFAULT, "xor into a read-only page -> EFAULT");
	ops[0] = op_compare(1, &v, ro + page - 4, 8);
	munmap(ro, (size_t)page);
	EXPECT_ERR(cpu_opv(ops, 1, cpu, 0), EFAULT, "compare reading an unmapped page -> EFAULT");
}

struct node {
	struct node *next;
	intptr_t data;
};

static void test_helpers(int target)
{
	intptr_t v = 1, v2 = 2, load = 0;
	char src[16] = "0123456789abcde", dst[16] = { 0 };
	struct node n2 = { NULL, 2 }, n1 = { &n2, 1 };
	intptr_t head = (intptr_t)&n1;
	uint16_t s16 = 0xfffe;

	ok(cpu_op_addv(&v, 41, target) == 0 && v == 42, "cpu %d: cpu_op_addv", target);
	ok(cpu_op_add(&s16, 3, 2, target) == 0 && s16 == 1, "cpu %d: cpu_op_add len 2 wraps", target);
	ok(cpu_op_add_release(&s16, 1, 2, target) == 0 && s16 == 2, "cpu %d: cpu_op_add_release", target);
	ok(cpu_op_cmpeqv_storev(&v, 42, 43, target) == 0 && v == 43, "cpu %d: cpu_op_cmpeqv_storev stores", target);
	ok(cpu_op_cmpeqv_storev(&v, 42, 44, target) == 1 && v == 43, "cpu %d: cpu_op_cmpeqv_storev compare failure", target);
	ok(cpu_op_cmpeqv_storev_storev(&v, 43, &v2, 20, 44, target) == 0 && v == 44 && v2 == 20, "cpu %d: cpu_op_cmpeqv_storev_storev", target);
	ok(cpu_op_cmpeqv_storev_mb_storev(&v, 44, &v2, 21, 45, target) == 0 && v == 45 && v2 == 21, "cpu %d: cpu_op_cmpeqv_storev_mb_storev", target);
	ok(cpu_op_cmpeqv_storev_storev_release(&v, 0, &v2, 22, 46, target) == 1 && v == 45 && v2 == 21, "cpu %d: cpu_op_cmpeqv_storev_storev_release compare failure", target);
	ok(cpu_op_cmpeqv_cmpeqv_storev(&v, 45, &v2, 21, 46, target) == 0 && v == 46, "cpu %d: cpu_op_cmpeqv_cmpeqv_storev", target);
	ok(cpu_op_cmpeqv_cmpeqv_storev(&v, 0, &v2, 21, 47, target) == 1, "cpu %d: cpu_op_cmpeqv_cmpeqv_storev first compare -> 1", target);
	ok(cpu_op_cmpeqv_cmpeqv_storev(&v, 46, &v2, 0, 47, target) == 2 && v == 46, "cpu %d: cpu_op_cmpeqv_cmpeqv_storev second compare -> 2", target);
	ok(cpu_op_cmpeqv_memcpy_storev(&v, 46, dst, src, 16, 47, target) == 0 && v == 47 && !memcmp(dst, src, 16), "cpu %d: cpu_op_cmpeqv_memcpy_storev", target);
	memset(dst, 0, sizeof(dst));
	ok(cpu_op_cmpeqv_memcpy_mb_storev(&v, 47, dst, src, 8, 48, target) == 0 && v == 48 && !memcmp(dst, src, 8), "cpu %d: cpu_op_cmpeqv_memcpy_mb_storev", target);
	ok(cpu_op_cmpeqv_memcpy_storev_release(&v, 0, dst, src, 8, 49, target) == 1 && v == 48, "cpu %d: cpu_op_cmpeqv_memcpy_storev_release compare failure", target);
	ok(cpu_op_cmpnev_storeoffp_load(&head, 0, offsetof(struct node, next), &load, target) == 0 &&
	   load == (intptr_t)&n1 && head == (intptr_t)&n2, "cpu %d: cpu_op_cmpnev_storeoffp_load pops", target);
	ok(cpu_op_cmpnev_storeoffp_load(&head, 0, offsetof(struct node, next), &load, target) == 0 &&
	   load == (intptr_t)&n2 && head == 0, "cpu %d: ... pops the last node", target);
	ok(cpu_op_cmpnev_storeoffp_load(&head, 0, offsetof(struct node, next), &load, target) == 1, "cpu %d: ... empty list -> 1", target);
	ok(cpu_op_fence(target) == 0, "cpu %d: cpu_op_fence", target);
}

static void test_percpu(void)
{
	intptr_t v = 0, v2 = 0, load = 0;
	char src[16] = "fedcba987654321", dst[16];
	struct node n1 = { NULL, 1 };
	intptr_t head = (intptr_t)&n1;
	struct cpu_op_counters before, after;
	cpu_set_t saved, here;
	int pinned, self, other, i;

	/*
	 * The "another CPU" assertions (and the fallback counters) need the
	 * thread to stay off `other`: pin it to the CPU it runs on now, and
	 * pick `other` as the next possible CPU. Without pinning (a cpuset
	 * that refuses it) the thread may migrate onto `other`, where the
	 * operation legitimately completes by rseq without a fallback, so
	 * only the values are asserted then, not the counters.
	 */
	self = sched_getcpu();
	pinned = self >= 0 && sched_getaffinity(0, sizeof(saved), &saved) == 0;
	if (pinned) {
		CPU_ZERO(&here);
		CPU_SET(self, &here);
		pinned = sched_setaffinity(0, sizeof(here), &here) == 0;
	}
	other = ((pinned ? self : cpu) + 1) % rseq_get_max_nr_cpus();
	diag("percpu: pinned %d to cpu %d, other cpu %d", pinned, self, other);

	cpu_op_get_counters(&before, sizeof(before));
	for (i = 0; i < 1000; i++) {
		int c = percpu_current_cpu();

		while (percpu_addv(&v, 1, c) < 0 && errno == EAGAIN)
			;
	}
	ok(v == 1000, "percpu_addv on the current CPU: exact total");
	ok(percpu_addv(&v, 5, other) == 0 && v == 1005, "percpu_addv on another CPU falls back and completes");
	ok(percpu_cmpeqv_storev(&v, 1005, 7, other) == 0 && v == 7, "percpu_cmpeqv_storev on another CPU");
	ok(percpu_cmpeqv_storev(&v, 1005, 8, other) == 1 && v == 7, "percpu_cmpeqv_storev compare failure -> 1");
	ok(percpu_cmpeqv_storev_storev(&v, 7, &v2, 3, 8, other) == 0 && v == 8 && v2 == 3, "percpu_cmpeqv_storev_storev on another CPU");
	ok(percpu_cmpeqv_storev_storev_release(&v, 8, &v2, 4, 9, other) == 0 && v == 9 && v2 == 4, "percpu_cmpeqv_storev_storev_release on another CPU");
	ok(percpu_cmpeqv_cmpeqv_storev(&v, 9, &v2, 4, 10, other) == 0 && v == 10, "percpu_cmpeqv_cmpeqv_storev on another CPU");
	ok(percpu_cmpeqv_memcpy_storev(&v, 10, dst, src, 16, 11, other) == 0 && v == 11 && !memcmp(dst, src, 16), "percpu_cmpeqv_memcpy_storev on another CPU");
	ok(percpu_cmpeqv_memcpy_storev_release(&v, 11, dst, src, 16, 12, other) == 0 && v == 12, "percpu_cmpeqv_memcpy_storev_release on another CPU");
	ok(percpu_cmpnev_storeoffp_load(&head, 0, offsetof(struct node, next), &load, other) == 0 && load == (intptr_t)&n1 && head == 0,
	   "percpu_cmpnev_storeoffp_load on another CPU");
	ok(percpu_cmpnev_storeoffp_load(&head, 0, offsetof(struct node, next), &load, other) == 1, "... empty -> 1");
	cpu_op_get_counters(&after, sizeof(after));
	if (pinned)
		sched_setaffinity(0, sizeof(saved), &saved);
	if (rseq_get_max_nr_cpus() > 1 && pinned && other != self)
		ok(after.fallbacks >= before.fallbacks + 10 && after.vectors >= before.vectors + 10,
		   "counters: %llu fallbacks, %llu vectors more",
		   (unsigned long long)(after.fallbacks - before.fallbacks), (unsigned long long)(after.vectors - before.vectors));
	else
		skip(1, "one possible CPU, or the thread cannot be pinned");
	ok(percpu_op_available() == 1, "percpu_op_available");
}

static void test_mm_cid(void)
{
	intptr_t v = 0;
	int max = rseq_get_max_nr_cpus();
	struct cpu_op op = op_arith(CPU_ADD_OP, &v, 3, sizeof(v));

	ok(cpu_opv(&op, 1, 0, CPU_OP_VEC_FLAG_MM_CID) == 0 && v == 3, "cpu_opv on mm_cid 0");
	ok(cpu_op_addv_mode(RSEQ_PERCPU_MM_CID, &v, 2, max - 1) == 0 && v == 5, "cpu_op_addv_mode on the last mm_cid");
	EXPECT_ERR(cpu_op_addv_mode(RSEQ_PERCPU_MM_CID, &v, 2, max), EINVAL, "mm_cid = number of possible CPUs -> EINVAL");
	EXPECT_ERR(cpu_op_addv_mode((enum rseq_percpu_mode)9, &v, 2, 0), EINVAL, "unknown percpu mode -> EINVAL");
	ok(percpu_addv_mode(RSEQ_PERCPU_MM_CID, &v, 1, (int)rseq_current_mm_cid()) == 0 && v == 6, "percpu_addv_mode MM_CID");
	ok(cpu_op_fence_mode(RSEQ_PERCPU_MM_CID, 0) == 0, "cpu_op_fence_mode MM_CID");
}

static void test_layout(void)
{
	ok(sizeof(struct cpu_op) == 32 && offsetof(struct cpu_op, u.compare_op.a) == 8 &&
	   offsetof(struct cpu_op, u.compare_op.b) == 16 && offsetof(struct cpu_op, u.compare_op.expect_fault_a) == 24 &&
	   offsetof(struct cpu_op, u.shift_op.bits) == 16 && offsetof(struct cpu_op, u.shift_op.expect_fault_p) == 20,
	   "struct cpu_op has the v12 layout");
	ok(CPU_MB_OP == 9 && CPU_RSHIFT_OP == 8 && CPU_MEMCPY_OP == 2, "v12 op numbering");
}

int main(void)
{
	int max = rseq_get_max_nr_cpus();

	plan_no_plan();
	cpu = cpu_op_get_current_cpu();
	diag("current cpu %d, possible cpus %d, cpu_op_available %d", cpu, max, cpu_op_available());
	test_layout();
	test_conformance();
	test_arguments();
	test_readonly_destination();
	for (int c = 0; c < max; c++)
		test_helpers(c);
	test_percpu();
	if (rseq_mm_cid_available())
		test_mm_cid();
	else
		skip(6, "no mm_cid on this kernel");
	return exit_status();
}
