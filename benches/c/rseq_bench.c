/* SPDX-License-Identifier: MIT */
/*
 * C benchmark of librseq, built through pkg-config against an installed
 * library. One source, built twice: with the inline critical sections of
 * <rseq/rseq.h> (bin/rseq_bench-inline) and with -DRSEQ_NO_INLINE, which
 * calls the library's exported functions instead (bin/rseq_bench-noinline).
 *
 * Every workload runs R runs (-r, default 11) of N iterations, N chosen by
 * calibration so that one run takes about T ms (-t, default 20). Each run
 * is timed with CLOCK_MONOTONIC; the result is ns/op, median, min and max
 * over the runs. With one thread per CPU (one worker pinned to each CPU of
 * the affinity mask, started together by a barrier), a run's ns/op is the
 * slowest worker's elapsed time / its iterations.
 *
 * Output: '#' comment lines, then one line per workload:
 *
 *   workload variant threads mode median_ns min_ns max_ns iters runs aborts
 *
 * (tab separated). variant: "inline" or "noinline" (the library, as built),
 * or "baseline" (code that does not use the library's operations: the
 * thread-local counter, the minimal hand-written rseq sequences, atomics,
 * a mutex, raw system calls). mode: cpu_id / mm_cid for per-CPU workloads,
 * reg:glibc / reg:lib (who owns thread registration) for the registration
 * and thread rows, "-" otherwise. aborts: rseq aborts seen by the
 * workload's retry loops, over all its runs (calibration included).
 *
 * Workloads (groups for -w in brackets):
 *   [cpu]      rseq_current_cpu_raw(), rseq_cpu_start(), rseq_current_cpu(),
 *              rseq_current_mm_cid(); baseline sched_getcpu()
 *   [counter]  per-CPU increment, rseq_load_add_store__ptr; baselines: a
 *              thread-local counter (volatile load+store: the floor), the
 *              minimal rseq increment (the rseq limit), sched_getcpu() +
 *              atomic add on a padded per-CPU slot, one shared atomic, a
 *              pthread_mutex counter
 *   [spinlock] per-CPU lock: load_cbne_store 0 -> 1, plain increment of
 *              the protected counter, release-store unlock
 *   [list]     per-CPU linked list: pop (load_cbeq_store_add_load_store)
 *              then push (load_cbne_store) of the popped node
 *   [buffer]   per-CPU pointer array: pop (load_cbne_load_cbne_store: the
 *              offset and the top slot are both compared, so that an ABA
 *              on the offset cannot return a stale pointer) then push
 *              (load_cbne_store_store, RELEASE)
 *   [memcpy]   per-CPU array of 16-byte items: pop (load_cbne_memcpy_store,
 *              RELAXED) then push (the same, RELEASE)
 *              each of these in CPU_ID and MM_CID mode (index from
 *              rseq_cpu_start() / rseq_current_mm_cid()), 1 thread and one
 *              thread per CPU, and each also built on minimal sequences
 *   [cpuop]    cpu_op_addv() on the caller's CPU and on another CPU (the
 *              caller pinned to the first CPU of the mask, the other CPU
 *              the second); baseline: one
 *              membarrier(PRIVATE_EXPEDITED_RSEQ, FLAG_CPU, other CPU)
 *   [thread]   pthread_create + pthread_join of a thread doing one library
 *              increment (registered automatically when the library owns
 *              registration) vs an empty thread, runs alternating; the
 *              added_by_rseq_op row is the median of per-run differences
 *   [reg]      rseq_unregister_current_thread() + rseq_register_current_thread()
 *              (no system call when glibc owns registration: run with
 *              GLIBC_TUNABLES=glibc.pthread.rseq=0 to measure the library's);
 *              baseline: the raw rseq system calls (register + unregister)
 *              on a private 32-byte aligned area
 *
 * Every workload checks its result at the end (per-CPU sums equal the
 * number of increments, lists and buffers hold every node exactly once,
 * intact); a failed check prints "# CHECK FAILED" on stderr and makes the
 * exit status 1.
 *
 * The minimal sequences ("*.minimal_rseq" rows) are what the library's
 * inline sections would be without the cpu-op ownership check and without
 * the library's slow path: the __rseq_cs descriptor, the rseq_cs store,
 * the cpu_id (or mm_cid) check, the operation, and an abort handler behind
 * the signature in __rseq_failure (the shape of upstream librseq's x86_64
 * sections). They need a registered thread; the benchmark asserts that
 * before running them.
 *
 * Options:
 *   -r RUNS    runs per workload (default 11)
 *   -t MS      target duration of one run in ms (default 20)
 *   -w LIST    comma-separated groups: cpu,counter,spinlock,list,buffer,
 *              memcpy,cpuop,thread,reg (default: all)
 *   -B         skip the baselines (library rows only)
 *   -1         one thread only (no thread-per-CPU rows)
 *   -M         CPU_ID mode only (no MM_CID rows)
 *   -p         pin the single-thread runs to the first CPU of the mask
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>

#if !defined(__x86_64__)
#error "the minimal hand-written baselines are x86_64 assembly"
#endif

#ifdef RSEQ_NO_INLINE
#define VARIANT "noinline"
#else
#define VARIANT "inline"
#endif

#ifndef __NR_membarrier
#define __NR_membarrier 324
#endif
#ifndef __NR_rseq
#define __NR_rseq 334
#endif
#define MB_CMD_PRIVATE_EXPEDITED_RSEQ		(1 << 7)
#define MB_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ	(1 << 8)
#define MB_CMD_FLAG_CPU				(1 << 0)
#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27
#endif

#define CACHELINE	128
#define NODES_PER_IDX	8
#define MAX_TRIES	10000000L	/* consecutive failed attempts of one op */

#define noinline	__attribute__((noinline))
#define always_inline	inline __attribute__((always_inline))

/* ------------------------------------------------------------------ */
/* Options, environment, results. */

static int opt_runs = 11;
static double opt_target_ms = 20.0;
static bool opt_no_baselines;
static bool opt_single_only;
static bool opt_cpu_id_only;
static bool opt_pin_single;
static const char *opt_groups;

static int max_nr_cpus;			/* rseq_get_max_nr_cpus() */
static int nr_allowed;			/* CPUs in the affinity mask */
static int *allowed;			/* their numbers */
static cpu_set_t start_mask;
static bool have_rseq;
static bool have_mm_cid;
static bool glibc_owns;
static const char *reg_mode;		/* "reg:glibc" / "reg:lib" */
static int check_failures;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "rseq_bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (!ok) {
		check_failures++;
		fprintf(stderr, "# CHECK FAILED: ");
		vfprintf(stderr, fmt, ap);
		fprintf(stderr, "\n");
		printf("# CHECK FAILED: ");
		va_end(ap);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		printf("\n");
	}
	va_end(ap);
}

static bool group_enabled(const char *g)
{
	const char *p = opt_groups;
	size_t n = strlen(g);

	if (!p)
		return true;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len == n && !strncmp(p, g, n))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

static void *xaligned_calloc(size_t n, size_t size)
{
	size_t bytes = n * size;
	void *p;

	if (!bytes)
		bytes = 1;

	if (posix_memalign(&p, CACHELINE, bytes))
		die("out of memory");
	memset(p, 0, bytes);
	return p;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity(CPU %d): %s", cpu, strerror(errno));
}

static void unpin(void)
{
	if (sched_setaffinity(0, sizeof(start_mask), &start_mask))
		die("sched_setaffinity(restore): %s", strerror(errno));
}

/* Back to the single-thread placement after a pinned group. */
static void restore_placement(void)
{
	if (opt_pin_single)
		pin_to(allowed[0]);
	else
		unpin();
}

/* Per-thread statistics, one cache line each. */
struct tstat {
	long aborts;		/* rseq aborts seen by retry loops */
	long empty;		/* pops that found an empty structure */
	long bad;		/* failed pushes, bad lock states, ... */
	long tls_total;		/* thread-local counter increments */
} __attribute__((aligned(CACHELINE)));

static struct tstat *tstats;	/* [nr_allowed] */

static void reset_tstats(void)
{
	memset(tstats, 0, sizeof(*tstats) * (size_t)(nr_allowed > 0 ? nr_allowed : 1));
}

static long sum_tstat(size_t off)
{
	long s = 0;

	for (int i = 0; i < (nr_allowed > 0 ? nr_allowed : 1); i++)
		s += *(long *)((char *)&tstats[i] + off);
	return s;
}

/* ------------------------------------------------------------------ */
/* Minimal hand-written x86_64 rseq sequences: no ownership check, no
 * library slow path. Same descriptor, rseq_cs store, cpu check and abort
 * handler as the library's sections (asm/x86_64.rseq). `off` is
 * rseq_offset; `cpu` the cpu_id_start (or mm_cid) the caller read. */

#define MIN_PROLOGUE \
	"	.pushsection __rseq_cs, \"aw\"\n" \
	"	.balign 32\n" \
	"3:\n" \
	"	.long 0x0, 0x0\n" \
	"	.quad 4f, (5f - 4f), 6f\n" \
	"	.popsection\n" \
	"	.pushsection __rseq_cs_ptr_array, \"aw\"\n" \
	"	.quad 3b\n" \
	"	.popsection\n" \
	"	leaq 3b(%%rip), %%rax\n" \
	"	movq %%rax, %%fs:8(%[off])\n" \
	"4:\n"

/* cpu_id at offset 4 of the area, mm_cid at offset 24. */
#define MIN_CHECK_cpu_id	"	cmpl %k[cpu], %%fs:4(%[off])\n	jnz 6f\n"
#define MIN_CHECK_mm_cid	"	cmpl %k[cpu], %%fs:24(%[off])\n	jnz 6f\n"

#define MIN_EPILOGUE \
	"5:\n" \
	"	.pushsection __rseq_failure, \"ax\"\n" \
	"	.byte 0x0f, 0xb9, 0x3d\n" \
	"	.long 0x53053053\n" \
	"6:\n" \
	"	jmp %l[abort]\n" \
	"	.popsection\n"

/* Operand constraints of the minimal sequences. Built with
 * -DRSEQ_BENCH_LIBRSEQ_EQUIV (bin/rseq_bench-librseq) they take them as
 * upstream librseq's x86_64 inline code (rseq-x86-bits.h) does: the data
 * words as memory operands ("m" (*v)), the increment and the list's node
 * offset as register-or-immediate ("er"), every other word a register.
 * That binary's minimal rows are the "librseq-equivalent" baseline: a
 * reconstruction of librseq's sequences (same descriptor, rseq_cs store,
 * cpu_id / mm_cid check, commit and abort handler; rseq_cpu_start() and
 * rseq_current_mm_cid() as plain loads at thread pointer + rseq_offset),
 * not librseq's binary, which is not installable here. */
#ifdef RSEQ_BENCH_LIBRSEQ_EQUIV
#define MREF(x)	"%[" #x "]"
#define MCON(x)	"m" (*(x))
#define ICON(x)	"er" (x)
#else
#define MREF(x)	"(%[" #x "])"
#define MCON(x)	"r" (x)
#define ICON(x)	"r" (x)
#endif

#define DEFINE_MIN_SEQUENCES(M) \
static always_inline int min_add_##M(intptr_t off, int cpu, intptr_t *v, intptr_t count) \
{ \
	__asm__ __volatile__ goto (MIN_PROLOGUE MIN_CHECK_##M \
		"	addq %[count], " MREF(v) "\n" \
		MIN_EPILOGUE \
		: : [off] "r" (off), [cpu] "r" (cpu), [v] MCON(v), [count] ICON(count) \
		: "memory", "cc", "rax" : abort); \
	return 0; \
abort: \
	return -1; \
} \
static always_inline int min_cbne_store_##M(intptr_t off, int cpu, intptr_t *v, intptr_t expect, intptr_t newv) \
{ \
	__asm__ __volatile__ goto (MIN_PROLOGUE MIN_CHECK_##M \
		"	cmpq " MREF(v) ", %[expect]\n" \
		"	jnz %l[ne]\n" \
		"	movq %[newv], " MREF(v) "\n" \
		MIN_EPILOGUE \
		: : [off] "r" (off), [cpu] "r" (cpu), [v] MCON(v), [expect] "r" (expect), \
		    [newv] "r" (newv) \
		: "memory", "cc", "rax" : ne, abort); \
	return 0; \
ne: \
	return 1; \
abort: \
	return -1; \
} \
static always_inline int min_cbeq_store_add_load_store_##M(intptr_t off, int cpu, intptr_t *v, intptr_t expectnot, long voffp, intptr_t *load) \
{ \
	__asm__ __volatile__ goto (MIN_PROLOGUE MIN_CHECK_##M \
		"	movq " MREF(v) ", %%rcx\n" \
		"	cmpq %%rcx, %[expectnot]\n" \
		"	je %l[eq]\n" \
		"	movq %%rcx, " MREF(load) "\n" \
		"	addq %[voffp], %%rcx\n" \
		"	movq (%%rcx), %%rcx\n" \
		"	movq %%rcx, " MREF(v) "\n" \
		MIN_EPILOGUE \
		: : [off] "r" (off), [cpu] "r" (cpu), [v] MCON(v), [expectnot] "r" (expectnot), \
		    [voffp] ICON(voffp), [load] MCON(load) \
		: "memory", "cc", "rax", "rcx" : eq, abort); \
	return 0; \
eq: \
	return 1; \
abort: \
	return -1; \
} \
static always_inline int min_cbne_store_store_##M(intptr_t off, int cpu, intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t newv2, intptr_t newv) \
{ \
	__asm__ __volatile__ goto (MIN_PROLOGUE MIN_CHECK_##M \
		"	cmpq " MREF(v) ", %[expect]\n" \
		"	jnz %l[ne]\n" \
		"	movq %[newv2], " MREF(v2) "\n" \
		"	movq %[newv], " MREF(v) "\n" \
		MIN_EPILOGUE \
		: : [off] "r" (off), [cpu] "r" (cpu), [v] MCON(v), [expect] "r" (expect), \
		    [v2] MCON(v2), [newv2] "r" (newv2), [newv] "r" (newv) \
		: "memory", "cc", "rax" : ne, abort); \
	return 0; \
ne: \
	return 1; \
abort: \
	return -1; \
} \
static always_inline int min_cbne_load_cbne_store_##M(intptr_t off, int cpu, intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t expect2, intptr_t newv) \
{ \
	__asm__ __volatile__ goto (MIN_PROLOGUE MIN_CHECK_##M \
		"	cmpq " MREF(v) ", %[expect]\n" \
		"	jnz %l[ne]\n" \
		"	cmpq " MREF(v2) ", %[expect2]\n" \
		"	jnz %l[ne]\n" \
		"	movq %[newv], " MREF(v) "\n" \
		MIN_EPILOGUE \
		: : [off] "r" (off), [cpu] "r" (cpu), [v] MCON(v), [expect] "r" (expect), \
		    [v2] MCON(v2), [expect2] "r" (expect2), [newv] "r" (newv) \
		: "memory", "cc", "rax" : ne, abort); \
	return 0; \
ne: \
	return 1; \
abort: \
	return -1; \
} \
/* The same copy loop as the library's section (8-byte words, then bytes). */ \
static always_inline int min_cbne_memcpy_store_##M(intptr_t off, int cpu, intptr_t *v, intptr_t expect, void *dst, void *src, size_t len, intptr_t newv) \
{ \
	__asm__ __volatile__ goto (MIN_PROLOGUE MIN_CHECK_##M \
		"	cmpq " MREF(v) ", %[expect]\n" \
		"	jnz %l[ne]\n" \
		"	movq %[src], %%rsi\n" \
		"	movq %[dst], %%rdi\n" \
		"	movq %[len], %%rcx\n" \
		"	cmpq $8, %%rcx\n" \
		"	jb 8f\n" \
		"7:\n" \
		"	movq (%%rsi), %%rax\n" \
		"	movq %%rax, (%%rdi)\n" \
		"	addq $8, %%rsi\n" \
		"	addq $8, %%rdi\n" \
		"	subq $8, %%rcx\n" \
		"	cmpq $8, %%rcx\n" \
		"	jae 7b\n" \
		"8:\n" \
		"	testq %%rcx, %%rcx\n" \
		"	jz 9f\n" \
		"22:\n" \
		"	movb (%%rsi), %%al\n" \
		"	movb %%al, (%%rdi)\n" \
		"	incq %%rsi\n" \
		"	incq %%rdi\n" \
		"	decq %%rcx\n" \
		"	jnz 22b\n" \
		"9:\n" \
		"	movq %[newv], " MREF(v) "\n" \
		MIN_EPILOGUE \
		: : [off] "r" (off), [cpu] "r" (cpu), [v] MCON(v), [expect] "r" (expect), \
		    [src] "r" (src), [dst] "r" (dst), [len] "r" (len), [newv] "r" (newv) \
		: "memory", "cc", "rax", "rcx", "rsi", "rdi" : ne, abort); \
	return 0; \
ne: \
	return 1; \
abort: \
	return -1; \
}

DEFINE_MIN_SEQUENCES(cpu_id)
DEFINE_MIN_SEQUENCES(mm_cid)

/* Diagnostic: the minimal increment plus the library's ownership check
 * (the two instructions of the generated section), to tell the cost of
 * the check from the rest of the library's inline path. */
static always_inline int min_add_owner_cpu_id(intptr_t off, int cpu, const uint32_t *owner, intptr_t *v,
					      intptr_t count)
{
	__asm__ __volatile__ goto (MIN_PROLOGUE MIN_CHECK_cpu_id
		"	cmpl $0, (%[owner])\n"
		"	jnz 6f\n"
		"	addq %[count], (%[v])\n"
		MIN_EPILOGUE
		: : [off] "r" (off), [cpu] "r" (cpu), [owner] "r" (owner), [v] "r" (v), [count] "r" (count)
		: "memory", "cc", "rax" : abort);
	return 0;
abort:
	return -1;
}

/* The minimal sequences' view of the area: rseq_offset from the data
 * symbol (as upstream librseq's inline code reads it), the fields read
 * directly, never through the library. */
static always_inline struct rseq_abi *min_area(intptr_t off)
{
	return (struct rseq_abi *)((uintptr_t)rseq_thread_pointer() + (uintptr_t)off);
}

static always_inline int min_index(int mode, intptr_t off)
{
	return mode == RSEQ_PERCPU_MM_CID ? (int)RSEQ_READ_ONCE(min_area(off)->mm_cid) :
		(int)RSEQ_READ_ONCE(min_area(off)->cpu_id_start);
}

/* Dispatch on a compile-time constant mode. */
#define MIN_OP(mode, op, ...) \
	((mode) == RSEQ_PERCPU_MM_CID ? min_##op##_mm_cid(__VA_ARGS__) : min_##op##_cpu_id(__VA_ARGS__))

/* Library per-CPU index (inline in the inline build, calls otherwise). */
static always_inline int lib_index(int mode)
{
	return mode == RSEQ_PERCPU_MM_CID ? (int)rseq_current_mm_cid() : (int)rseq_cpu_start();
}

static void registered_or_die(const char *who)
{
	(void)rseq_current_cpu();	/* registers the thread if the library owns registration */
	if (have_rseq && rseq_current_cpu_raw() < 0)
		die("%s: thread not registered with rseq (cpu_id %d)", who, (int)rseq_current_cpu_raw());
}

static noinline void too_many_tries(const char *what)
{
	die("%s: %ld consecutive failed attempts", what, MAX_TRIES);
}

/* ------------------------------------------------------------------ */
/* The measurement engine. */

typedef void (*loop_fn)(int tid, long iters);

struct pool {
	int n;
	pthread_t *th;
	pthread_barrier_t start, done;
	loop_fn fn;
	long iters;
	bool quit;
	uint64_t *ns;
};

static struct pool pool;

static void *pool_worker(void *arg)
{
	int tid = (int)(intptr_t)arg;

	pin_to(allowed[tid]);
	registered_or_die("pool worker");
	for (;;) {
		uint64_t t0, t1;

		pthread_barrier_wait(&pool.start);
		if (pool.quit)
			break;
		t0 = now_ns();
		pool.fn(tid, pool.iters);
		t1 = now_ns();
		pool.ns[tid] = t1 - t0;
		pthread_barrier_wait(&pool.done);
	}
	return NULL;
}

static void pool_start(void)
{
	pool.n = nr_allowed;
	pool.th = calloc((size_t)pool.n, sizeof(*pool.th));
	pool.ns = calloc((size_t)pool.n, sizeof(*pool.ns));
	if (!pool.th || !pool.ns)
		die("out of memory");
	pthread_barrier_init(&pool.start, NULL, (unsigned)pool.n + 1);
	pthread_barrier_init(&pool.done, NULL, (unsigned)pool.n + 1);
	for (int i = 0; i < pool.n; i++)
		if (pthread_create(&pool.th[i], NULL, pool_worker, (void *)(intptr_t)i))
			die("pthread_create failed");
}

static void pool_stop(void)
{
	if (!pool.n)
		return;
	pool.quit = true;
	pthread_barrier_wait(&pool.start);
	for (int i = 0; i < pool.n; i++)
		pthread_join(pool.th[i], NULL);
	pool.n = 0;
}

/* Runs one run; returns the elapsed ns (the slowest thread's). */
static uint64_t run_once(int nthreads, loop_fn fn, long iters)
{
	if (nthreads == 1) {
		uint64_t t0 = now_ns();

		fn(0, iters);
		return now_ns() - t0;
	}
	pool.fn = fn;
	pool.iters = iters;
	pthread_barrier_wait(&pool.start);
	pthread_barrier_wait(&pool.done);
	uint64_t max = 0;
	for (int i = 0; i < pool.n; i++)
		if (pool.ns[i] > max)
			max = pool.ns[i];
	return max;
}

struct result {
	double median, min, max;
	long iters;
	long long total_ops;	/* all threads, all runs, calibration included */
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The shortest of k runs of `iters` (calibration: robust to preemption). */
static uint64_t min_of_runs(int nthreads, loop_fn fn, long iters, int k, long long *total_ops)
{
	uint64_t best = UINT64_MAX;

	for (int i = 0; i < k; i++) {
		uint64_t el = run_once(nthreads, fn, iters);

		*total_ops += (long long)iters * nthreads;
		if (el < best)
			best = el;
	}
	return best ? best : 1;
}

/* Calibration (doubles as warm-up): grows N until the shorter of two runs
 * takes >= T/16, then sizes N from the shortest of three runs, so that a
 * preempted calibration run does not shrink N. */
static long calibrate(int nthreads, loop_fn fn, long long *total_ops)
{
	double target = opt_target_ms * 1e6;
	long iters = 1;
	uint64_t el;

	for (;;) {
		el = min_of_runs(nthreads, fn, iters, 2, total_ops);
		if (el >= target / 16 || iters >= (1L << 40))
			break;
		iters *= el < target / 512 ? 8 : 2;
	}
	el = min_of_runs(nthreads, fn, iters, 3, total_ops);
	iters = (long)((double)iters * target / (double)el);
	return iters < 1 ? 1 : iters;
}

/* Median, min and max of n values (sorts them). */
static void summarize(double *v, int n, struct result *r)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	r->min = v[0];
	r->max = v[n - 1];
	r->median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static struct result measure(int nthreads, loop_fn fn)
{
	struct result r = { 0 };
	double *v = calloc((size_t)opt_runs, sizeof(*v));

	if (!v)
		die("out of memory");
	r.iters = calibrate(nthreads, fn, &r.total_ops);
	for (int i = 0; i < opt_runs; i++) {
		uint64_t el = run_once(nthreads, fn, r.iters);

		r.total_ops += (long long)r.iters * nthreads;
		v[i] = (double)el / (double)r.iters;
	}
	summarize(v, opt_runs, &r);
	free(v);
	return r;
}

static void emit(const char *workload, const char *variant, int nthreads, const char *mode,
		 const struct result *r)
{
	printf("%s\t%s\t%d\t%s\t%.3f\t%.3f\t%.3f\t%ld\t%d\t%ld\n", workload, variant, nthreads, mode,
	       r->median, r->min, r->max, r->iters, opt_runs, sum_tstat(offsetof(struct tstat, aborts)));
	fflush(stdout);
}

/* Measures fn, then emits the row. Returns the result for checks. */
static struct result bench(const char *workload, const char *variant, int nthreads,
			   const char *mode, loop_fn fn)
{
	struct result r;

	reset_tstats();
	r = measure(nthreads, fn);
	emit(workload, variant, nthreads, mode, &r);
	return r;
}

/* The thread counts to run: 1, and one per CPU. */
static int nthreads_list[2];
static int nr_nthreads;

static bool want_baselines(void)
{
	return !opt_no_baselines;
}

/* ------------------------------------------------------------------ */
/* CPU-number reads. */

static volatile long sink;

static noinline void loop_cpu_raw(int tid, long iters)
{
	long s = 0;

	(void)tid;
	for (long i = 0; i < iters; i++)
		s += rseq_current_cpu_raw();
	sink = s;
}

static noinline void loop_cpu_start(int tid, long iters)
{
	long s = 0;

	(void)tid;
	for (long i = 0; i < iters; i++)
		s += rseq_cpu_start();
	sink = s;
}

static noinline void loop_current_cpu(int tid, long iters)
{
	long s = 0;

	(void)tid;
	for (long i = 0; i < iters; i++)
		s += rseq_current_cpu();
	sink = s;
}

static noinline void loop_mm_cid(int tid, long iters)
{
	long s = 0;

	(void)tid;
	for (long i = 0; i < iters; i++)
		s += rseq_current_mm_cid();
	sink = s;
}

static noinline void loop_sched_getcpu(int tid, long iters)
{
	long s = 0;

	(void)tid;
	for (long i = 0; i < iters; i++)
		s += sched_getcpu();
	sink = s;
}

/* The floor of any exported-function path: a call through the PLT into
 * librseq.so of a function that only returns a constant. */
static noinline void loop_empty_call(int tid, long iters)
{
	long s = 0;

	(void)tid;
	for (long i = 0; i < iters; i++)
		s += percpu_op_available();
	sink = s;
}

static void group_cpu(void)
{
	bench("cpu_read.rseq_current_cpu_raw", VARIANT, 1, "-", loop_cpu_raw);
	bench("cpu_read.rseq_cpu_start", VARIANT, 1, "-", loop_cpu_start);
	bench("cpu_read.rseq_current_cpu", VARIANT, 1, "-", loop_current_cpu);
	if (have_mm_cid)
		bench("cpu_read.rseq_current_mm_cid", VARIANT, 1, "-", loop_mm_cid);
	if (want_baselines()) {
		bench("cpu_read.sched_getcpu", "baseline", 1, "-", loop_sched_getcpu);
		bench("call.empty_exported_function", "baseline", 1, "-", loop_empty_call);
	}
}

/* ------------------------------------------------------------------ */
/* Counters. */

struct slot {
	intptr_t v;
	intptr_t count;		/* spinlock: the counter the lock protects */
} __attribute__((aligned(CACHELINE)));

static struct slot *slots;	/* [max_nr_cpus] */

static long long slots_sum(void)
{
	long long s = 0;

	for (int i = 0; i < max_nr_cpus; i++)
		s += slots[i].v;
	return s;
}

static always_inline void lib_inc(struct slot *s, int mode, struct tstat *st)
{
	for (long tries = 0;; tries++) {
		int cpu = lib_index(mode);

		if (rseq_likely(rseq_load_add_store__ptr(RSEQ_MO_RELAXED, (enum rseq_percpu_mode)mode,
							  &s[cpu].v, 1, cpu) == 0))
			return;
		st->aborts++;
		if (rseq_unlikely(tries > MAX_TRIES))
			too_many_tries("rseq_load_add_store__ptr");
	}
}

static always_inline void min_inc(struct slot *s, int mode, struct tstat *st)
{
	for (long tries = 0;; tries++) {
		intptr_t off = RSEQ_READ_ONCE(rseq_offset);
		int cpu = min_index(mode, off);

		if (rseq_likely(MIN_OP(mode, add, off, cpu, &s[cpu].v, 1) == 0))
			return;
		st->aborts++;
		if (rseq_unlikely(tries > MAX_TRIES))
			too_many_tries("minimal add");
	}
}

#define DEFINE_COUNTER_LOOPS(M, MODE) \
static noinline void loop_counter_lib_##M(int tid, long iters) \
{ \
	struct slot *s = slots; \
	struct tstat *st = &tstats[tid]; \
	for (long i = 0; i < iters; i++) \
		lib_inc(s, MODE, st); \
} \
static noinline void loop_counter_min_##M(int tid, long iters) \
{ \
	struct slot *s = slots; \
	struct tstat *st = &tstats[tid]; \
	for (long i = 0; i < iters; i++) \
		min_inc(s, MODE, st); \
}

DEFINE_COUNTER_LOOPS(cpu_id, RSEQ_PERCPU_CPU_ID)
DEFINE_COUNTER_LOOPS(mm_cid, RSEQ_PERCPU_MM_CID)

/* Diagnostic row: minimal increment + ownership check (cpu_id). */
static noinline void loop_counter_min_owner_cpu_id(int tid, long iters)
{
	struct slot *s = slots;
	struct tstat *st = &tstats[tid];

	for (long i = 0; i < iters; i++) {
		for (long tries = 0;; tries++) {
			intptr_t off = RSEQ_READ_ONCE(rseq_offset);
			int cpu = min_index(RSEQ_PERCPU_CPU_ID, off);
			const uint32_t *owner = (const uint32_t *)(rseq_cpu_op_owners + (intptr_t)cpu * 128);

			if (rseq_likely(min_add_owner_cpu_id(off, cpu, owner, &s[cpu].v, 1) == 0))
				break;
			st->aborts++;
			if (rseq_unlikely(tries > MAX_TRIES))
				too_many_tries("minimal add + ownership check");
		}
	}
}

static __thread intptr_t tls_counter;

static noinline void loop_counter_tls(int tid, long iters)
{
	intptr_t start = tls_counter;

	for (long i = 0; i < iters; i++)
		RSEQ_WRITE_ONCE(tls_counter, RSEQ_READ_ONCE(tls_counter) + 1);
	tstats[tid].tls_total += tls_counter - start;
}

static noinline void loop_counter_getcpu_atomic(int tid, long iters)
{
	struct slot *s = slots;

	(void)tid;
	for (long i = 0; i < iters; i++)
		__atomic_fetch_add(&s[sched_getcpu()].v, 1, __ATOMIC_RELAXED);
}

static struct slot shared;

static noinline void loop_counter_shared_atomic(int tid, long iters)
{
	(void)tid;
	for (long i = 0; i < iters; i++)
		__atomic_fetch_add(&shared.v, 1, __ATOMIC_RELAXED);
}

static pthread_mutex_t counter_mutex = PTHREAD_MUTEX_INITIALIZER;

static noinline void loop_counter_mutex(int tid, long iters)
{
	(void)tid;
	for (long i = 0; i < iters; i++) {
		pthread_mutex_lock(&counter_mutex);
		shared.v++;
		pthread_mutex_unlock(&counter_mutex);
	}
}

static void run_counter(const char *name, const char *variant, int nt, const char *mode, loop_fn fn)
{
	struct result r;

	memset(slots, 0, sizeof(*slots) * (size_t)max_nr_cpus);
	r = bench(name, variant, nt, mode, fn);
	check(slots_sum() == r.total_ops, "%s/%d/%s: per-CPU sum %lld != %lld increments", name, nt, mode,
	      slots_sum(), r.total_ops);
}

static void group_counter(void)
{
	for (int k = 0; k < nr_nthreads; k++) {
		int nt = nthreads_list[k];
		struct result r;

		if (want_baselines()) {
			reset_tstats();
			r = measure(nt, loop_counter_tls);
			emit("counter.thread_local", "baseline", nt, "-", &r);
			check(sum_tstat(offsetof(struct tstat, tls_total)) == r.total_ops,
			      "thread-local counter: %ld != %lld", sum_tstat(offsetof(struct tstat, tls_total)),
			      r.total_ops);
			run_counter("counter.minimal_rseq", "baseline", nt, "cpu_id", loop_counter_min_cpu_id);
			run_counter("counter.minimal_rseq+owner_check", "baseline", nt, "cpu_id",
				    loop_counter_min_owner_cpu_id);
		}
		run_counter("counter", VARIANT, nt, "cpu_id", loop_counter_lib_cpu_id);
		if (have_mm_cid && !opt_cpu_id_only) {
			if (want_baselines())
				run_counter("counter.minimal_rseq", "baseline", nt, "mm_cid", loop_counter_min_mm_cid);
			run_counter("counter", VARIANT, nt, "mm_cid", loop_counter_lib_mm_cid);
		}
		if (want_baselines()) {
			run_counter("counter.sched_getcpu_atomic", "baseline", nt, "cpu_id", loop_counter_getcpu_atomic);
			shared.v = 0;
			r = bench("counter.shared_atomic", "baseline", nt, "-", loop_counter_shared_atomic);
			check(shared.v == r.total_ops, "shared atomic: %ld != %lld", (long)shared.v, r.total_ops);
			shared.v = 0;
			r = bench("counter.mutex", "baseline", nt, "-", loop_counter_mutex);
			check(shared.v == r.total_ops, "mutex counter: %ld != %lld", (long)shared.v, r.total_ops);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Per-CPU spinlocks: lock with cbne_store 0 -> 1, a plain increment of the
 * protected counter, unlock with a release store. */

#define DEFINE_SPINLOCK_LOOPS(M, MODE) \
static noinline void loop_spinlock_lib_##M(int tid, long iters) \
{ \
	struct slot *s = slots; \
	struct tstat *st = &tstats[tid]; \
	for (long i = 0; i < iters; i++) { \
		int cpu; \
		for (long tries = 0;; tries++) { \
			int ret; \
			cpu = lib_index(MODE); \
			ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, MODE, &s[cpu].v, 0, 1, cpu); \
			if (rseq_likely(ret == 0)) \
				break; \
			if (ret < 0) \
				st->aborts++; \
			if (rseq_unlikely(tries > MAX_TRIES)) \
				too_many_tries("spinlock lock"); \
		} \
		rseq_smp_acquire__after_ctrl_dep(); \
		RSEQ_WRITE_ONCE(s[cpu].count, RSEQ_READ_ONCE(s[cpu].count) + 1); \
		rseq_smp_store_release(&s[cpu].v, 0); \
	} \
} \
static noinline void loop_spinlock_min_##M(int tid, long iters) \
{ \
	struct slot *s = slots; \
	struct tstat *st = &tstats[tid]; \
	for (long i = 0; i < iters; i++) { \
		int cpu; \
		for (long tries = 0;; tries++) { \
			intptr_t off = RSEQ_READ_ONCE(rseq_offset); \
			int ret; \
			cpu = min_index(MODE, off); \
			ret = min_cbne_store_##M(off, cpu, &s[cpu].v, 0, 1); \
			if (rseq_likely(ret == 0)) \
				break; \
			if (ret < 0) \
				st->aborts++; \
			if (rseq_unlikely(tries > MAX_TRIES)) \
				too_many_tries("minimal spinlock lock"); \
		} \
		rseq_smp_acquire__after_ctrl_dep(); \
		RSEQ_WRITE_ONCE(s[cpu].count, RSEQ_READ_ONCE(s[cpu].count) + 1); \
		rseq_smp_store_release(&s[cpu].v, 0); \
	} \
}

DEFINE_SPINLOCK_LOOPS(cpu_id, RSEQ_PERCPU_CPU_ID)
DEFINE_SPINLOCK_LOOPS(mm_cid, RSEQ_PERCPU_MM_CID)

static void run_spinlock(const char *name, const char *variant, int nt, const char *mode, loop_fn fn)
{
	struct result r;
	long long sum = 0;
	int held = 0;

	memset(slots, 0, sizeof(*slots) * (size_t)max_nr_cpus);
	r = bench(name, variant, nt, mode, fn);
	for (int i = 0; i < max_nr_cpus; i++) {
		sum += slots[i].count;
		held += slots[i].v != 0;
	}
	check(sum == r.total_ops && held == 0, "%s/%d/%s: counted %lld != %lld, %d locks held", name, nt,
	      mode, sum, r.total_ops, held);
}

static void group_spinlock(void)
{
	for (int k = 0; k < nr_nthreads; k++) {
		int nt = nthreads_list[k];

		if (want_baselines())
			run_spinlock("spinlock.minimal_rseq", "baseline", nt, "cpu_id", loop_spinlock_min_cpu_id);
		run_spinlock("spinlock", VARIANT, nt, "cpu_id", loop_spinlock_lib_cpu_id);
		if (have_mm_cid && !opt_cpu_id_only) {
			if (want_baselines())
				run_spinlock("spinlock.minimal_rseq", "baseline", nt, "mm_cid", loop_spinlock_min_mm_cid);
			run_spinlock("spinlock", VARIANT, nt, "mm_cid", loop_spinlock_lib_mm_cid);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Nodes shared by the list and buffer workloads: NODES_PER_IDX per
 * possible index, each with an id and a check value. */

struct node {
	intptr_t data;
	struct node *next;
	intptr_t id;
};

static struct node *nodes;
static int nr_nodes;

static intptr_t node_data(intptr_t id)
{
	return id * 7 + 3;
}

static void make_nodes(void)
{
	nr_nodes = max_nr_cpus * NODES_PER_IDX;
	nodes = calloc((size_t)nr_nodes, sizeof(*nodes));
	if (!nodes)
		die("out of memory");
	for (int i = 0; i < nr_nodes; i++) {
		nodes[i].id = i;
		nodes[i].data = node_data(i);
	}
}

/* Verifies a set of node pointers: every node exactly once, intact. */
struct node_census {
	int count, dup, corrupt;
	unsigned char *seen;
};

static void census_init(struct node_census *c)
{
	c->count = c->dup = c->corrupt = 0;
	c->seen = calloc((size_t)nr_nodes, 1);
	if (!c->seen)
		die("out of memory");
}

static void census_see(struct node_census *c, const struct node *n)
{
	if (n < nodes || n >= nodes + nr_nodes) {
		c->corrupt++;
		return;
	}
	if (n->data != node_data(n->id) || n->id != n - nodes)
		c->corrupt++;
	if (c->seen[n->id]++)
		c->dup++;
	c->count++;
}

static bool census_done(struct node_census *c, const char *what)
{
	bool ok = c->count == nr_nodes && !c->dup && !c->corrupt;

	check(ok, "%s: %d nodes of %d, %d duplicated, %d corrupt", what, c->count, nr_nodes, c->dup,
	      c->corrupt);
	free(c->seen);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Per-CPU linked lists: pop (load_cbeq_store_add_load_store) then push
 * (load_cbne_store) of the popped node; one op = one pop + one push. */

struct list_head {
	struct node *head;
} __attribute__((aligned(CACHELINE)));

static struct list_head *lists;

static always_inline struct node *lib_list_pop(struct list_head *l, int mode, struct tstat *st)
{
	for (long tries = 0;; tries++) {
		int cpu = lib_index(mode);
		intptr_t head = 0;
		int ret = rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, (enum rseq_percpu_mode)mode,
				(intptr_t *)&l[cpu].head, 0, offsetof(struct node, next), &head, cpu);

		if (rseq_likely(ret == 0))
			return (struct node *)head;
		if (ret > 0)
			return NULL;
		st->aborts++;
		if (rseq_unlikely(tries > MAX_TRIES))
			too_many_tries("list pop");
	}
}

static always_inline void lib_list_push(struct list_head *l, struct node *n, int mode, struct tstat *st)
{
	for (long tries = 0;; tries++) {
		int cpu = lib_index(mode);
		intptr_t expect = (intptr_t)RSEQ_READ_ONCE(l[cpu].head);
		int ret;

		n->next = (struct node *)expect;
		ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, (enum rseq_percpu_mode)mode,
						(intptr_t *)&l[cpu].head, expect, (intptr_t)n, cpu);
		if (rseq_likely(ret == 0))
			return;
		if (ret < 0)
			st->aborts++;
		if (rseq_unlikely(tries > MAX_TRIES))
			too_many_tries("list push");
	}
}

#define DEFINE_LIST_LOOPS(M, MODE) \
static noinline void loop_list_lib_##M(int tid, long iters) \
{ \
	struct list_head *l = lists; \
	struct tstat *st = &tstats[tid]; \
	for (long i = 0; i < iters; i++) { \
		struct node *n = lib_list_pop(l, MODE, st); \
		if (rseq_likely(n != NULL)) \
			lib_list_push(l, n, MODE, st); \
		else \
			st->empty++; \
	} \
} \
static always_inline struct node *min_list_pop_##M(struct list_head *l, struct tstat *st) \
{ \
	for (long tries = 0;; tries++) { \
		intptr_t off = RSEQ_READ_ONCE(rseq_offset); \
		int cpu = min_index(MODE, off); \
		intptr_t head = 0; \
		int ret = min_cbeq_store_add_load_store_##M(off, cpu, (intptr_t *)&l[cpu].head, 0, \
				offsetof(struct node, next), &head); \
		if (rseq_likely(ret == 0)) \
			return (struct node *)head; \
		if (ret > 0) \
			return NULL; \
		st->aborts++; \
		if (rseq_unlikely(tries > MAX_TRIES)) \
			too_many_tries("minimal list pop"); \
	} \
} \
static always_inline void min_list_push_##M(struct list_head *l, struct node *n, struct tstat *st) \
{ \
	for (long tries = 0;; tries++) { \
		intptr_t off = RSEQ_READ_ONCE(rseq_offset); \
		int cpu = min_index(MODE, off); \
		intptr_t expect = (intptr_t)RSEQ_READ_ONCE(l[cpu].head); \
		int ret; \
		n->next = (struct node *)expect; \
		ret = min_cbne_store_##M(off, cpu, (intptr_t *)&l[cpu].head, expect, (intptr_t)n); \
		if (rseq_likely(ret == 0)) \
			return; \
		if (ret < 0) \
			st->aborts++; \
		if (rseq_unlikely(tries > MAX_TRIES)) \
			too_many_tries("minimal list push"); \
	} \
} \
static noinline void loop_list_min_##M(int tid, long iters) \
{ \
	struct list_head *l = lists; \
	struct tstat *st = &tstats[tid]; \
	for (long i = 0; i < iters; i++) { \
		struct node *n = min_list_pop_##M(l, st); \
		if (rseq_likely(n != NULL)) \
			min_list_push_##M(l, n, st); \
		else \
			st->empty++; \
	} \
}

DEFINE_LIST_LOOPS(cpu_id, RSEQ_PERCPU_CPU_ID)
DEFINE_LIST_LOOPS(mm_cid, RSEQ_PERCPU_MM_CID)

static void run_list(const char *name, const char *variant, int nt, const char *mode, loop_fn fn)
{
	struct node_census c;
	char what[128];
	int n = 0;

	make_nodes();
	lists = xaligned_calloc((size_t)max_nr_cpus, sizeof(*lists));
	for (int i = 0; i < max_nr_cpus; i++)
		for (int j = 0; j < NODES_PER_IDX; j++, n++) {
			nodes[n].next = lists[i].head;
			lists[i].head = &nodes[n];
		}
	bench(name, variant, nt, mode, fn);
	census_init(&c);
	for (int i = 0; i < max_nr_cpus && c.count <= nr_nodes && !c.corrupt; i++)
		for (struct node *p = lists[i].head; p && c.count <= nr_nodes; p = p->next) {
			census_see(&c, p);
			if (c.corrupt)
				break;
		}
	snprintf(what, sizeof(what), "%s/%d/%s", name, nt, mode);
	census_done(&c, what);
	if (sum_tstat(offsetof(struct tstat, empty)))
		printf("# %s: %ld pops found an empty list\n", what, sum_tstat(offsetof(struct tstat, empty)));
	free(lists);
	free(nodes);
}

static void group_list(void)
{
	for (int k = 0; k < nr_nthreads; k++) {
		int nt = nthreads_list[k];

		if (want_baselines())
			run_list("list.minimal_rseq", "baseline", nt, "cpu_id", loop_list_min_cpu_id);
		run_list("list", VARIANT, nt, "cpu_id", loop_list_lib_cpu_id);
		if (have_mm_cid && !opt_cpu_id_only) {
			if (want_baselines())
				run_list("list.minimal_rseq", "baseline", nt, "mm_cid", loop_list_min_mm_cid);
			run_list("list", VARIANT, nt, "mm_cid", loop_list_lib_mm_cid);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Per-CPU buffers of node pointers: pop (offset and top slot compared,
 * load_cbne_load_cbne_store) then push (load_cbne_store_store, RELEASE);
 * one op = one pop + one push. */

struct buffer {
	intptr_t offset;
	intptr_t buflen;
	struct node **array;
} __attribute__((aligned(CACHELINE)));

static struct buffer *buffers;

static always_inline struct node *lib_buffer_pop(struct buffer *b, int mode, struct tstat *st)
{
	for (long tries = 0;; tries++) {
		int cpu = lib_index(mode);
		intptr_t offset = RSEQ_READ_ONCE(b[cpu].offset);
		intptr_t *slot;
		struct node *head;
		int ret;

		if (rseq_unlikely(offset == 0))
			return NULL;
		slot = (intptr_t *)&b[cpu].array[offset - 1];
		head = (struct node *)RSEQ_READ_ONCE(*slot);
		ret = rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, (enum rseq_percpu_mode)mode,
							  &b[cpu].offset, offset, slot, (intptr_t)head,
							  offset - 1, cpu);
		if (rseq_likely(ret == 0))
			return head;
		if (ret < 0)
			st->aborts++;
		if (rseq_unlikely(tries > MAX_TRIES))
			too_many_tries("buffer pop");
	}
}

static always_inline bool lib_buffer_push(struct buffer *b, struct node *n, int mode, struct tstat *st)
{
	for (long tries = 0;; tries++) {
		int cpu = lib_index(mode);
		intptr_t offset = RSEQ_READ_ONCE(b[cpu].offset);
		int ret;

		if (rseq_unlikely(offset == b[cpu].buflen))
			return false;
		ret = rseq_load_cbne_store_store__ptr(RSEQ_MO_RELEASE, (enum rseq_percpu_mode)mode,
						      &b[cpu].offset, offset, (intptr_t *)&b[cpu].array[offset],
						      (intptr_t)n, offset + 1, cpu);
		if (rseq_likely(ret == 0))
			return true;
		if (ret < 0)
			st->aborts++;
		if (rseq_unlikely(tries > MAX_TRIES))
			too_many_tries("buffer push");
	}
}

#define DEFINE_BUFFER_LOOPS(M, MODE) \
static noinline void loop_buffer_lib_##M(int tid, long iters) \
{ \
	struct buffer *b = buffers; \
	struct tstat *st = &tstats[tid]; \
	for (long i = 0; i < iters; i++) { \
		struct node *n = lib_buffer_pop(b, MODE, st); \
		if (rseq_unlikely(n == NULL)) \
			st->empty++; \
		else if (rseq_unlikely(!lib_buffer_push(b, n, MODE, st))) \
			st->bad++; \
	} \
} \
static always_inline struct node *min_buffer_pop_##M(struct buffer *b, struct tstat *st) \
{ \
	for (long tries = 0;; tries++) { \
		intptr_t off = RSEQ_READ_ONCE(rseq_offset); \
		int cpu = min_index(MODE, off); \
		intptr_t offset = RSEQ_READ_ONCE(b[cpu].offset); \
		intptr_t *slot; \
		struct node *head; \
		int ret; \
		if (rseq_unlikely(offset == 0)) \
			return NULL; \
		slot = (intptr_t *)&b[cpu].array[offset - 1]; \
		head = (struct node *)RSEQ_READ_ONCE(*slot); \
		ret = min_cbne_load_cbne_store_##M(off, cpu, &b[cpu].offset, offset, slot, \
						   (intptr_t)head, offset - 1); \
		if (rseq_likely(ret == 0)) \
			return head; \
		if (ret < 0) \
			st->aborts++; \
		if (rseq_unlikely(tries > MAX_TRIES)) \
			too_many_tries("minimal buffer pop"); \
	} \
} \
static always_inline bool min_buffer_push_##M(struct buffer *b, struct node *n, struct tstat *st) \
{ \
	for (long tries = 0;; tries++) { \
		intptr_t off = RSEQ_READ_ONCE(rseq_offset); \
		int cpu = min_index(MODE, off); \
		intptr_t offset = RSEQ_READ_ONCE(b[cpu].offset); \
		int ret; \
		if (rseq_unlikely(offset == b[cpu].buflen)) \
			return false; \
		ret = min_cbne_store_store_##M(off, cpu, &b[cpu].offset, offset, \
					       (intptr_t *)&b[cpu].array[offset], (intptr_t)n, offset + 1); \
		if (rseq_likely(ret == 0)) \
			return true; \
		if (ret < 0) \
			st->aborts++; \
		if (rseq_unlikely(tries > MAX_TRIES)) \
			too_many_tries("minimal buffer push"); \
	} \
} \
static noinline void loop_buffer_min_##M(int tid, long iters) \
{ \
	struct buffer *b = buffers; \
	struct tstat *st = &tstats[tid]; \
	for (long i = 0; i < iters; i++) { \
		struct node *n = min_buffer_pop_##M(b, st); \
		if (rseq_unlikely(n == NULL)) \
			st->empty++; \
		else if (rseq_unlikely(!min_buffer_push_##M(b, n, st))) \
			st->bad++; \
	} \
}

DEFINE_BUFFER_LOOPS(cpu_id, RSEQ_PERCPU_CPU_ID)
DEFINE_BUFFER_LOOPS(mm_cid, RSEQ_PERCPU_MM_CID)

static void run_buffer(const char *name, const char *variant, int nt, const char *mode, loop_fn fn)
{
	struct node_census c;
	char what[128];
	int n = 0, bad_offsets = 0;

	make_nodes();
	buffers = xaligned_calloc((size_t)max_nr_cpus, sizeof(*buffers));
	for (int i = 0; i < max_nr_cpus; i++) {
		buffers[i].buflen = nr_nodes;
		buffers[i].array = calloc((size_t)nr_nodes, sizeof(*buffers[i].array));
		if (!buffers[i].array)
			die("out of memory");
		for (int j = 0; j < NODES_PER_IDX; j++, n++)
			buffers[i].array[buffers[i].offset++] = &nodes[n];
	}
	bench(name, variant, nt, mode, fn);
	snprintf(what, sizeof(what), "%s/%d/%s", name, nt, mode);
	census_init(&c);
	for (int i = 0; i < max_nr_cpus; i++) {
		if (buffers[i].offset < 0 || buffers[i].offset > buffers[i].buflen)
			bad_offsets++;
		else
			for (intptr_t j = 0; j < buffers[i].offset; j++)
				census_see(&c, buffers[i].array[j]);
		free(buffers[i].array);
	}
	census_done(&c, what);
	check(!bad_offsets && !sum_tstat(offsetof(struct tstat, bad)), "%s: %d bad offsets, %ld failed pushes",
	      what, bad_offsets, sum_tstat(offsetof(struct tstat, bad)));
	if (sum_tstat(offsetof(struct tstat, empty)))
		printf("# %s: %ld pops found an empty buffer\n", what, sum_tstat(offsetof(struct tstat, empty)));
	free(buffers);
	free(nodes);
}

static void group_buffer(void)
{
	for (int k = 0; k < nr_nthreads; k++) {
		int nt = nthreads_list[k];

		if (want_baselines())
			run_buffer("buffer.minimal_rseq", "baseline", nt, "cpu_id", loop_buffer_min_cpu_id);
		run_buffer("buffer", VARIANT, nt, "cpu_id", loop_buffer_lib_cpu_id);
		if (have_mm_cid && !opt_cpu_id_only) {
			if (want_baselines())
				run_buffer("buffer.minimal_rseq", "baseline", nt, "mm_cid", loop_buffer_min_mm_cid);
			run_buffer("buffer", VARIANT, nt, "mm_cid", loop_buffer_lib_mm_cid);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Per-CPU buffers of 16-byte items, copied in (load_cbne_memcpy_store,
 * RELEASE) and out (the same, RELAXED); one op = one pop + one push. */

struct item {
	intptr_t data1;		/* id + 1 */
	uint64_t data2;		/* item_check(data1) */
};

struct mbuffer {
	intptr_t offset;
	intptr_t buflen;
	struct item *array;
} __attribute__((aligned(CACHELINE)));

static struct mbuffer *mbuffers;

static uint64_t item_check(intptr_t data1)
{
	return (uint64_t)data1 * 0x9e3779b97f4a7c15ull ^ 0x5555aaaa5555aaaaull;
}

static always_inline bool lib_memcpy_pop(struct mbuffer *b, struct item *it, int mode, struct tstat *st)
{
	for (long tries = 0;; tries++) {
		int cpu = lib_index(mode);
		intptr_t offset = RSEQ_READ_ONCE(b[cpu].offset);
		int ret;

		if (rseq_unlikely(offset == 0))
			return false;
		ret = rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELAXED, (enum rseq_percpu_mode)mode,
						       &b[cpu].offset, offset, it, &b[cpu].array[offset - 1],
						       sizeof(*it), offset - 1, cpu);
		if (rseq_likely(ret == 0))
			return true;
		if (ret < 0)
			st->aborts++;
		if (rseq_unlikely(tries > MAX_TRIES))
			too_many_tries("memcpy pop");
	}
}

static always_inline bool lib_memcpy_push(struct mbuffer *b, struct item *it, int mode, struct tstat *st)
{
	for (long tries = 0;; tries++) {
		int cpu = lib_index(mode);
		intptr_t offset = RSEQ_READ_ONCE(b[cpu].offset);
		int ret;

		if (rseq_unlikely(offset == b[cpu].buflen))
			return false;
		ret = rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELEASE, (enum rseq_percpu_mode)mode,
						       &b[cpu].offset, offset, &b[cpu].array[offset], it,
						       sizeof(*it), offset + 1, cpu);
		if (rseq_likely(ret == 0))
			return true;
		if (ret < 0)
			st->aborts++;
		if (rseq_unlikely(tries > MAX_TRIES))
			too_many_tries("memcpy push");
	}
}

#define DEFINE_MEMCPY_LOOPS(M, MODE) \
static noinline void loop_memcpy_lib_##M(int tid, long iters) \
{ \
	struct mbuffer *b = mbuffers; \
	struct tstat *st = &tstats[tid]; \
	struct item it; \
	for (long i = 0; i < iters; i++) { \
		if (rseq_unlikely(!lib_memcpy_pop(b, &it, MODE, st))) \
			st->empty++; \
		else if (rseq_unlikely(!lib_memcpy_push(b, &it, MODE, st))) \
			st->bad++; \
	} \
} \
static always_inline bool min_memcpy_pop_##M(struct mbuffer *b, struct item *it, struct tstat *st) \
{ \
	for (long tries = 0;; tries++) { \
		intptr_t off = RSEQ_READ_ONCE(rseq_offset); \
		int cpu = min_index(MODE, off); \
		intptr_t offset = RSEQ_READ_ONCE(b[cpu].offset); \
		int ret; \
		if (rseq_unlikely(offset == 0)) \
			return false; \
		ret = min_cbne_memcpy_store_##M(off, cpu, &b[cpu].offset, offset, it, \
						&b[cpu].array[offset - 1], sizeof(*it), offset - 1); \
		if (rseq_likely(ret == 0)) \
			return true; \
		if (ret < 0) \
			st->aborts++; \
		if (rseq_unlikely(tries > MAX_TRIES)) \
			too_many_tries("minimal memcpy pop"); \
	} \
} \
static always_inline bool min_memcpy_push_##M(struct mbuffer *b, struct item *it, struct tstat *st) \
{ \
	for (long tries = 0;; tries++) { \
		intptr_t off = RSEQ_READ_ONCE(rseq_offset); \
		int cpu = min_index(MODE, off); \
		intptr_t offset = RSEQ_READ_ONCE(b[cpu].offset); \
		int ret; \
		if (rseq_unlikely(offset == b[cpu].buflen)) \
			return false; \
		ret = min_cbne_memcpy_store_##M(off, cpu, &b[cpu].offset, offset, \
						&b[cpu].array[offset], it, sizeof(*it), offset + 1); \
		if (rseq_likely(ret == 0)) \
			return true; \
		if (ret < 0) \
			st->aborts++; \
		if (rseq_unlikely(tries > MAX_TRIES)) \
			too_many_tries("minimal memcpy push"); \
	} \
} \
static noinline void loop_memcpy_min_##M(int tid, long iters) \
{ \
	struct mbuffer *b = mbuffers; \
	struct tstat *st = &tstats[tid]; \
	struct item it; \
	for (long i = 0; i < iters; i++) { \
		if (rseq_unlikely(!min_memcpy_pop_##M(b, &it, st))) \
			st->empty++; \
		else if (rseq_unlikely(!min_memcpy_push_##M(b, &it, st))) \
			st->bad++; \
	} \
}

DEFINE_MEMCPY_LOOPS(cpu_id, RSEQ_PERCPU_CPU_ID)
DEFINE_MEMCPY_LOOPS(mm_cid, RSEQ_PERCPU_MM_CID)

static void run_memcpy(const char *name, const char *variant, int nt, const char *mode, loop_fn fn)
{
	int nitems = max_nr_cpus * NODES_PER_IDX, n = 0, count = 0, dup = 0, corrupt = 0, bad_offsets = 0;
	unsigned char *seen = calloc((size_t)nitems, 1);
	char what[128];

	if (!seen)
		die("out of memory");
	mbuffers = xaligned_calloc((size_t)max_nr_cpus, sizeof(*mbuffers));
	for (int i = 0; i < max_nr_cpus; i++) {
		mbuffers[i].buflen = nitems;
		mbuffers[i].array = calloc((size_t)nitems, sizeof(*mbuffers[i].array));
		if (!mbuffers[i].array)
			die("out of memory");
		for (int j = 0; j < NODES_PER_IDX; j++, n++) {
			struct item *it = &mbuffers[i].array[mbuffers[i].offset++];

			it->data1 = n + 1;
			it->data2 = item_check(n + 1);
		}
	}
	bench(name, variant, nt, mode, fn);
	snprintf(what, sizeof(what), "%s/%d/%s", name, nt, mode);
	for (int i = 0; i < max_nr_cpus; i++) {
		if (mbuffers[i].offset < 0 || mbuffers[i].offset > mbuffers[i].buflen) {
			bad_offsets++;
		} else {
			for (intptr_t j = 0; j < mbuffers[i].offset; j++) {
				struct item *it = &mbuffers[i].array[j];

				if (it->data1 < 1 || it->data1 > nitems || it->data2 != item_check(it->data1)) {
					corrupt++;
					continue;
				}
				if (seen[it->data1 - 1]++)
					dup++;
				count++;
			}
		}
		free(mbuffers[i].array);
	}
	check(count == nitems && !dup && !corrupt && !bad_offsets && !sum_tstat(offsetof(struct tstat, bad)),
	      "%s: %d items of %d, %d duplicated, %d corrupt, %d bad offsets, %ld failed pushes", what, count,
	      nitems, dup, corrupt, bad_offsets, sum_tstat(offsetof(struct tstat, bad)));
	if (sum_tstat(offsetof(struct tstat, empty)))
		printf("# %s: %ld pops found an empty buffer\n", what, sum_tstat(offsetof(struct tstat, empty)));
	free(mbuffers);
	free(seen);
}

static void group_memcpy(void)
{
	for (int k = 0; k < nr_nthreads; k++) {
		int nt = nthreads_list[k];

		if (want_baselines())
			run_memcpy("memcpy_buffer.minimal_rseq", "baseline", nt, "cpu_id", loop_memcpy_min_cpu_id);
		run_memcpy("memcpy_buffer", VARIANT, nt, "cpu_id", loop_memcpy_lib_cpu_id);
		if (have_mm_cid && !opt_cpu_id_only) {
			if (want_baselines())
				run_memcpy("memcpy_buffer.minimal_rseq", "baseline", nt, "mm_cid", loop_memcpy_min_mm_cid);
			run_memcpy("memcpy_buffer", VARIANT, nt, "mm_cid", loop_memcpy_lib_mm_cid);
		}
	}
}

/* ------------------------------------------------------------------ */
/* cpu_op_addv on the caller's CPU and on another CPU, and one
 * membarrier(PRIVATE_EXPEDITED_RSEQ, FLAG_CPU) for comparison. */

static int cpuop_target;

static noinline void loop_cpu_op_addv(int tid, long iters)
{
	int cpu = cpuop_target;
	intptr_t *v = &slots[cpu].v;

	for (long i = 0; i < iters; i++)
		if (rseq_unlikely(cpu_op_addv(v, 1, cpu) != 0))
			tstats[tid].bad++;
}

/* One-operation cpu_opv() vector: the same addition (issue 14's target:
 * at most 3x cpu_op_addv on the caller's CPU). */
static noinline void loop_cpu_opv(int tid, long iters)
{
	int cpu = cpuop_target;
	struct cpu_op op;

	memset(&op, 0, sizeof(op));
	op.op = CPU_ADD_OP;
	op.len = sizeof(intptr_t);
	op.u.arithmetic_op.p = (uintptr_t)&slots[cpu].v;
	op.u.arithmetic_op.count = 1;
	for (long i = 0; i < iters; i++)
		if (rseq_unlikely(cpu_opv(&op, 1, cpu, 0) != 0))
			tstats[tid].bad++;
}

static noinline void loop_membarrier(int tid, long iters)
{
	int cpu = cpuop_target;

	for (long i = 0; i < iters; i++)
		if (rseq_unlikely(syscall(__NR_membarrier, MB_CMD_PRIVATE_EXPEDITED_RSEQ, MB_CMD_FLAG_CPU, cpu) != 0))
			tstats[tid].bad++;
}

static void print_counter_delta(const char *what, const struct cpu_op_counters *a,
				const struct cpu_op_counters *b)
{
	printf("# %s: cpu-op counters: vectors +%llu, fences own_cpu +%llu membarrier_cpu +%llu "
	       "membarrier_all +%llu migrate +%llu none +%llu, waits +%llu\n", what,
	       (unsigned long long)(b->vectors - a->vectors),
	       (unsigned long long)(b->fences_own_cpu - a->fences_own_cpu),
	       (unsigned long long)(b->fences_membarrier_cpu - a->fences_membarrier_cpu),
	       (unsigned long long)(b->fences_membarrier_all - a->fences_membarrier_all),
	       (unsigned long long)(b->fences_migrate - a->fences_migrate),
	       (unsigned long long)(b->fences_none - a->fences_none),
	       (unsigned long long)(b->waits - a->waits));
}

static void run_cpu_op_loop(const char *name, int target, void (*loop)(int, long))
{
	struct cpu_op_counters c0, c1;
	struct result r;
	char what[128];

	cpuop_target = target;
	memset(slots, 0, sizeof(*slots) * (size_t)max_nr_cpus);
	cpu_op_get_counters(&c0, sizeof(c0));
	r = bench(name, VARIANT, 1, "cpu_id", loop);
	cpu_op_get_counters(&c1, sizeof(c1));
	snprintf(what, sizeof(what), "%s (caller on CPU %d, target CPU %d)", name, allowed[0], target);
	print_counter_delta(what, &c0, &c1);
	check(!sum_tstat(offsetof(struct tstat, bad)) && slots[target].v == r.total_ops,
	      "%s: %ld failed calls, CPU %d slot %ld != %lld", name, sum_tstat(offsetof(struct tstat, bad)),
	      target, (long)slots[target].v, r.total_ops);
}

static void run_cpu_op(const char *name, int target)
{
	run_cpu_op_loop(name, target, loop_cpu_op_addv);
}

/* Remote cpu-op throughput with concurrent callers (issue 14): a thread
 * runs on the target CPU (so every fence interrupts it), and K callers on
 * other CPUs issue cpu_op_addv() to the target; the row's value is
 * wall-clock ns per operation over all callers (lower is more
 * throughput), median of the runs. */
static atomic_int busy_stop, busy_go, busy_ready;
static long busy_iters;

static void *busy_spinner(void *arg)
{
	pin_to((int)(intptr_t)arg);
	atomic_fetch_add(&busy_ready, 1);
	while (!atomic_load_explicit(&busy_stop, memory_order_relaxed))
		;
	return NULL;
}

/* Caller k runs on the k-th allowed CPU other than the target (all on
 * the first when only two are allowed). */
static void *busy_caller(void *arg)
{
	int cpu = cpuop_target;
	intptr_t *v = &slots[cpu].v;
	int k = (int)(intptr_t)arg;

	int j = nr_allowed > 2 ? k % (nr_allowed - 1) : 0;

	pin_to(allowed[j == 0 ? 0 : j + 1]);
	atomic_fetch_add(&busy_ready, 1);
	while (!atomic_load(&busy_go))
		;
	for (long i = 0; i < busy_iters; i++)
		if (cpu_op_addv(v, 1, cpu) != 0)
			__atomic_fetch_add(&tstats[0].bad, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void run_cpu_op_busy(int callers)
{
	pthread_t spin, th[8];
	double *v = calloc((size_t)opt_runs, sizeof(*v));
	long long total = 0;
	struct result r = { 0 };

	struct cpu_op_counters c0, c1;
	char what[128];

	if (!v)
		die("out of memory");
	reset_tstats();
	cpu_op_get_counters(&c0, sizeof(c0));
	cpuop_target = allowed[1];
	slots[allowed[1]].v = 0;
	atomic_store(&busy_stop, 0);
	atomic_store(&busy_ready, 0);
	pthread_create(&spin, NULL, busy_spinner, (void *)(intptr_t)allowed[1]);
	while (atomic_load(&busy_ready) < 1)
		;
	/* One remote cpu-op costs microseconds here: size the runs from the
	 * target time at 2 us per operation. */
	busy_iters = (long)(opt_target_ms * 1e6 / 2000.0 / callers);
	if (busy_iters < 100)
		busy_iters = 100;
	for (int run = 0; run < opt_runs; run++) {
		atomic_store(&busy_go, 0);
		atomic_store(&busy_ready, 1);
		for (int k = 0; k < callers; k++)
			pthread_create(&th[k], NULL, busy_caller, (void *)(intptr_t)k);
		while (atomic_load(&busy_ready) < 1 + callers)
			;
		uint64_t t0 = now_ns();

		atomic_store(&busy_go, 1);
		for (int k = 0; k < callers; k++)
			pthread_join(th[k], NULL);
		v[run] = (double)(now_ns() - t0) / (double)(busy_iters * callers);
		total += (long long)busy_iters * callers;
	}
	atomic_store(&busy_stop, 1);
	pthread_join(spin, NULL);
	summarize(v, opt_runs, &r);
	r.iters = busy_iters;
	emit("cpu_op_addv.other_cpu_busy", VARIANT, callers, "cpu_id", &r);
	cpu_op_get_counters(&c1, sizeof(c1));
	snprintf(what, sizeof(what), "cpu_op_addv.other_cpu_busy (%d callers, target CPU %d)", callers, allowed[1]);
	print_counter_delta(what, &c0, &c1);
	check(!sum_tstat(offsetof(struct tstat, bad)) && slots[allowed[1]].v == total,
	      "cpu_op_addv.other_cpu_busy: %ld failed calls, slot %ld != %lld", sum_tstat(offsetof(struct tstat, bad)),
	      (long)slots[allowed[1]].v, total);
	free(v);
}

static void group_cpuop(void)
{
	pin_to(allowed[0]);
	run_cpu_op("cpu_op_addv.own_cpu", allowed[0]);
	run_cpu_op_loop("cpu_op_addv.cpu_opv_own_cpu", allowed[0], loop_cpu_opv);
	if (nr_allowed > 1) {
		run_cpu_op("cpu_op_addv.other_cpu", allowed[1]);
		run_cpu_op_busy(1);
		run_cpu_op_busy(2);
		run_cpu_op_busy(4);
		if (want_baselines()) {
			long ret;

			syscall(__NR_membarrier, MB_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0);
			ret = syscall(__NR_membarrier, MB_CMD_PRIVATE_EXPEDITED_RSEQ, MB_CMD_FLAG_CPU, allowed[1]);
			if (ret) {
				printf("# membarrier(PRIVATE_EXPEDITED_RSEQ, FLAG_CPU): %s: row skipped\n",
				       strerror(errno));
			} else {
				cpuop_target = allowed[1];
				bench("membarrier_rseq_cpu", "baseline", 1, "-", loop_membarrier);
				check(!sum_tstat(offsetof(struct tstat, bad)), "membarrier: %ld failed calls",
				      sum_tstat(offsetof(struct tstat, bad)));
			}
		}
	} else {
		printf("# one CPU in the affinity mask: no other-CPU cpu-op\n");
	}
	restore_placement();
}

/* ------------------------------------------------------------------ */
/* Thread create + exit: a thread doing one library operation (with
 * automatic registration when the library owns it) vs an empty thread. */

static long thread_unregistered;	/* threads that found no registration after their op */

static void *thread_rseq_op(void *arg)
{
	struct tstat st = { 0 };

	lib_inc(slots, RSEQ_PERCPU_CPU_ID, &st);
	if (have_rseq && rseq_current_cpu_raw() < 0)
		__atomic_fetch_add(&thread_unregistered, 1, __ATOMIC_RELAXED);
	if (st.aborts)
		__atomic_fetch_add(&tstats[0].aborts, st.aborts, __ATOMIC_RELAXED);
	return arg;
}

static void *thread_empty(void *arg)
{
	return arg;
}

/* librseq's style: the thread registers explicitly, operates, and
 * unregisters before it exits. */
static void *thread_explicit_reg(void *arg)
{
	struct tstat st = { 0 };

	if (rseq_register_current_thread())
		__atomic_fetch_add(&thread_unregistered, 1, __ATOMIC_RELAXED);
	lib_inc(slots, RSEQ_PERCPU_CPU_ID, &st);
	if (have_rseq && rseq_current_cpu_raw() < 0)
		__atomic_fetch_add(&thread_unregistered, 1, __ATOMIC_RELAXED);
	if (rseq_unregister_current_thread())
		__atomic_fetch_add(&thread_unregistered, 1, __ATOMIC_RELAXED);
	if (st.aborts)
		__atomic_fetch_add(&tstats[0].aborts, st.aborts, __ATOMIC_RELAXED);
	return arg;
}

static void *(*volatile thread_body)(void *);

static noinline void loop_thread(int tid, long iters)
{
	(void)tid;
	for (long i = 0; i < iters; i++) {
		pthread_t t;

		if (pthread_create(&t, NULL, thread_body, NULL))
			die("pthread_create: %s", strerror(errno));
		pthread_join(t, NULL);
	}
}

static noinline void loop_thread_empty(int tid, long iters)
{
	thread_body = thread_empty;
	loop_thread(tid, iters);
}

static noinline void loop_thread_rseq(int tid, long iters)
{
	thread_body = thread_rseq_op;
	loop_thread(tid, iters);
}

static noinline void loop_thread_explicit(int tid, long iters)
{
	thread_body = thread_explicit_reg;
	loop_thread(tid, iters);
}

/* The empty, rseq-op and explicit-registration thread runs alternate,
 * with the same N, so that the per-run differences (the cost of the op,
 * with its automatic registration when the library owns registration;
 * and of librseq's explicit register + unregister around it) are not
 * swamped by the drift of thread creation costs. An empty thread never
 * touches the library (no system call from it since issue 14). The creator is
 * pinned to one CPU and its threads inherit the mask: each thread runs on
 * the creator's CPU while the creator waits in pthread_join, which removes
 * cross-CPU wake-up and placement noise. */
static void group_thread(void)
{
	struct result re = { 0 }, rr = { 0 }, rd = { 0 }, rx = { 0 }, rxd = { 0 };
	double *ve = calloc((size_t)opt_runs, sizeof(double));
	double *vr = calloc((size_t)opt_runs, sizeof(double));
	double *vd = calloc((size_t)opt_runs, sizeof(double));
	double *vx = calloc((size_t)opt_runs, sizeof(double));
	double *vxd = calloc((size_t)opt_runs, sizeof(double));

	if (!ve || !vr || !vd || !vx || !vxd)
		die("out of memory");
	pin_to(allowed[0]);
	reset_tstats();
	thread_unregistered = 0;
	memset(slots, 0, sizeof(*slots) * (size_t)max_nr_cpus);
	re.iters = calibrate(1, loop_thread_empty, &re.total_ops);
	min_of_runs(1, loop_thread_rseq, re.iters / 16 + 1, 2, &rr.total_ops);	/* warm-up */
	rr.iters = rd.iters = rx.iters = rxd.iters = re.iters;
	for (int i = 0; i < opt_runs; i++) {
		uint64_t e = run_once(1, loop_thread_empty, re.iters);
		uint64_t r = run_once(1, loop_thread_rseq, rr.iters);
		uint64_t x = run_once(1, loop_thread_explicit, rx.iters);

		re.total_ops += re.iters;
		rr.total_ops += rr.iters;
		rx.total_ops += rx.iters;
		ve[i] = (double)e / (double)re.iters;
		vr[i] = (double)r / (double)rr.iters;
		vx[i] = (double)x / (double)rx.iters;
		vd[i] = vr[i] - ve[i];
		vxd[i] = vx[i] - ve[i];
	}
	summarize(ve, opt_runs, &re);
	summarize(vr, opt_runs, &rr);
	summarize(vd, opt_runs, &rd);
	summarize(vx, opt_runs, &rx);
	summarize(vxd, opt_runs, &rxd);
	if (want_baselines()) {
		long aborts = tstats[0].aborts;	/* the rseq-op threads' */

		tstats[0].aborts = 0;
		emit("thread_create_exit.empty", "baseline", 1, reg_mode, &re);
		tstats[0].aborts = aborts;
	}
	emit("thread_create_exit.rseq_op", VARIANT, 1, reg_mode, &rr);
	emit("thread_create_exit.added_by_rseq_op", VARIANT, 1, reg_mode, &rd);
	emit("thread_create_exit.explicit_reg", VARIANT, 1, reg_mode, &rx);
	emit("thread_create_exit.added_by_explicit_reg", VARIANT, 1, reg_mode, &rxd);
	check(slots_sum() == rr.total_ops + rx.total_ops && !thread_unregistered,
	      "thread create+exit: %lld increments of %lld, %ld threads unregistered after their op",
	      slots_sum(), rr.total_ops + rx.total_ops, thread_unregistered);
	free(ve);
	free(vr);
	free(vd);
	free(vx);
	free(vxd);
	restore_placement();
}

/* ------------------------------------------------------------------ */
/* Registration: the library's unregister + register pair, and the raw
 * system calls on a private area. Each runs in a fresh thread. */

static __thread struct rseq_abi raw_area __attribute__((aligned(32)));

static noinline void loop_reg_library(int tid, long iters)
{
	for (long i = 0; i < iters; i++) {
		if (rseq_unlikely(rseq_unregister_current_thread() != 0))
			tstats[tid].bad++;
		if (rseq_unlikely(rseq_register_current_thread() != 0))
			tstats[tid].bad++;
	}
}

static noinline void loop_reg_raw(int tid, long iters)
{
	for (long i = 0; i < iters; i++) {
		if (rseq_unlikely(syscall(__NR_rseq, &raw_area, 32, 0, RSEQ_SIG) != 0))
			tstats[tid].bad++;
		if (rseq_unlikely(syscall(__NR_rseq, &raw_area, 32, RSEQ_ABI_FLAG_UNREGISTER, RSEQ_SIG) != 0))
			tstats[tid].bad++;
	}
}

static void *reg_library_thread(void *arg)
{
	(void)arg;
	if (rseq_register_current_thread() != 0)
		die("rseq_register_current_thread: %s", strerror(errno));
	bench("registration.library", VARIANT, 1, reg_mode, loop_reg_library);
	check(!sum_tstat(offsetof(struct tstat, bad)), "library registration: %ld failed calls",
	      sum_tstat(offsetof(struct tstat, bad)));
	check(rseq_current_cpu_raw() >= 0, "library registration: thread not registered after the loop");
	rseq_unregister_current_thread();
	return NULL;
}

static void *reg_raw_thread(void *arg)
{
	struct rseq_abi *cur = (struct rseq_abi *)((uintptr_t)rseq_thread_pointer() + (uintptr_t)rseq_offset);
	unsigned long feat = getauxval(AT_RSEQ_FEATURE_SIZE);
	unsigned int restore_len = 0;

	(void)arg;
	if (rseq_offset && (int32_t)RSEQ_READ_ONCE(cur->cpu_id) >= 0) {
		/* Registered already (glibc registers every thread): take
		 * glibc's registration off for the measurement, then put it
		 * back. The unregister call must name the registered length. */
		unsigned int lens[] = { 32, rseq_size, (unsigned int)feat, (unsigned int)((feat + 31) & ~31ul), 64 };

		if (!glibc_owns) {
			printf("# registration.raw_syscall: fresh thread already registered by the library: skipped\n");
			return NULL;
		}
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]) && !restore_len; i++)
			if (lens[i] >= 20 && syscall(__NR_rseq, cur, lens[i], RSEQ_ABI_FLAG_UNREGISTER, RSEQ_SIG) == 0)
				restore_len = lens[i];
		if (!restore_len) {
			printf("# registration.raw_syscall: cannot lift glibc's registration (%s): skipped\n",
			       strerror(errno));
			return NULL;
		}
	}
	bench("registration.raw_syscall", "baseline", 1, reg_mode, loop_reg_raw);
	check(!sum_tstat(offsetof(struct tstat, bad)), "raw registration: %ld failed calls",
	      sum_tstat(offsetof(struct tstat, bad)));
	if (restore_len && syscall(__NR_rseq, cur, restore_len, 0, RSEQ_SIG) != 0)
		die("cannot restore glibc's rseq registration: %s", strerror(errno));
	return NULL;
}

static void run_in_thread(void *(*fn)(void *))
{
	pthread_t t;

	if (pthread_create(&t, NULL, fn, NULL))
		die("pthread_create failed");
	pthread_join(t, NULL);
}

static void group_reg(void)
{
	pin_to(allowed[0]);	/* inherited by the measuring threads */
	run_in_thread(reg_library_thread);
	if (want_baselines())
		run_in_thread(reg_raw_thread);
	restore_placement();
}

/* ------------------------------------------------------------------ */

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [-r runs] [-t ms] [-w groups] [-B] [-1] [-M] [-p]\n"
		"groups: cpu,counter,spinlock,list,buffer,memcpy,cpuop,thread,reg\n", argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	struct utsname u;
	Dl_info dli;
	int c;

	while ((c = getopt(argc, argv, "r:t:w:B1Mph")) != -1) {
		switch (c) {
		case 'r': opt_runs = atoi(optarg); break;
		case 't': opt_target_ms = atof(optarg); break;
		case 'w': opt_groups = optarg; break;
		case 'B': opt_no_baselines = true; break;
		case '1': opt_single_only = true; break;
		case 'M': opt_cpu_id_only = true; break;
		case 'p': opt_pin_single = true; break;
		default: usage(argv[0]);
		}
	}
	if (opt_runs < 1 || opt_target_ms <= 0)
		usage(argv[0]);

	if (sched_getaffinity(0, sizeof(start_mask), &start_mask))
		die("sched_getaffinity: %s", strerror(errno));
	allowed = calloc(CPU_SETSIZE, sizeof(*allowed));
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &start_mask))
			allowed[nr_allowed++] = i;
	max_nr_cpus = rseq_get_max_nr_cpus();
	tstats = xaligned_calloc((size_t)nr_allowed, sizeof(*tstats));
	slots = xaligned_calloc((size_t)max_nr_cpus, sizeof(*slots));
	have_rseq = rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL);
	glibc_owns = rseq_available(RSEQ_AVAILABLE_QUERY_LIBC);
	reg_mode = glibc_owns ? "reg:glibc" : "reg:lib";
	have_mm_cid = have_rseq && rseq_mm_cid_available();
	nthreads_list[nr_nthreads++] = 1;
	if (!opt_single_only && nr_allowed > 1)
		nthreads_list[nr_nthreads++] = nr_allowed;

	uname(&u);
	printf("# rseq_bench variant=%s\n", VARIANT);
	if (dladdr((void *)rseq_register_current_thread, &dli) && dli.dli_fname)
		printf("# library=%s\n", dli.dli_fname);
	printf("# kernel=%s %s\n", u.release, u.machine);
	printf("# rseq=%s registration=%s rseq_size=%u mm_cid=%s\n", have_rseq ? "yes" : "no",
	       glibc_owns ? "glibc" : "library", rseq_size, have_mm_cid ? "yes" : "no");
	printf("# cpus_allowed=%d max_nr_cpus=%d runs=%d target_ms=%g cpu_op_available=%d\n", nr_allowed,
	       max_nr_cpus, opt_runs, opt_target_ms, cpu_op_available());
	printf("# columns: workload variant threads mode median_ns min_ns max_ns iters runs aborts\n");
	fflush(stdout);

	if (opt_pin_single)
		pin_to(allowed[0]);
	registered_or_die("main thread");
	/* The pinned workers exist only during the per-CPU groups. */
	if (nr_nthreads > 1 && have_rseq && (group_enabled("counter") || group_enabled("spinlock") ||
					     group_enabled("list") || group_enabled("buffer") ||
					     group_enabled("memcpy")))
		pool_start();
	else
		nr_nthreads = 1;

	if (!have_rseq) {
		printf("# rseq unavailable (%s): only cpu-op rows\n", strerror(errno));
		if (group_enabled("cpuop"))
			group_cpuop();
		return check_failures ? 1 : 0;
	}
	if (group_enabled("cpu"))
		group_cpu();
	if (group_enabled("counter"))
		group_counter();
	if (group_enabled("spinlock"))
		group_spinlock();
	if (group_enabled("list"))
		group_list();
	if (group_enabled("buffer"))
		group_buffer();
	if (group_enabled("memcpy"))
		group_memcpy();
	pool_stop();
	if (group_enabled("cpuop"))
		group_cpuop();
	if (group_enabled("thread"))
		group_thread();
	if (group_enabled("reg"))
		group_reg();
	if (check_failures)
		printf("# %d check(s) FAILED\n", check_failures);
	return check_failures ? 1 : 0;
}
