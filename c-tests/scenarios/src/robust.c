/* SPDX-License-Identifier: MIT */
/*
 * Issue 9: a cpu-op is as uninterruptible as the cpu_opv system call it
 * replaces. One program, one scenario per run (`robust NAME`), TAP out,
 * a watchdog that fails the run instead of letting it hang:
 *
 *   longjmp    handlers siglongjmp out of cpu_op_* / cpu_opv / percpu_*
 *              calls of their thread: no word is ever left held (other
 *              threads complete cpu-ops on every CPU afterwards), no
 *              EDEADLK, and no handler ever runs while its own thread
 *              holds a word.
 *   rseqloop   handlers run raw rseq retry loops (and percpu_addv) on the
 *              CPU their thread's cpu-op may hold: no livelock, exact total.
 *   exit       pthread_exit() from handlers interrupting exported calls,
 *              asynchronous and deferred cancellation: the threads exit
 *              (no "exception not rethrown" abort), no word held after.
 *   nomalloc   membarrier refused (seccomp), so remote cpu-ops migrate:
 *              handlers that interrupted malloc run such cpu-ops, and the
 *              library calls no malloc and opens no file from them;
 *              cpu_op_available() and percpu_op_available() say 0 and
 *              agree with what the calls do; the caller's affinity is
 *              restored.
 *   unmap      cpu_opv() on memory another thread unmaps, remaps and
 *              write-protects meanwhile: 0, EFAULT or (expect_fault)
 *              EAGAIN, never a signal; the word is free afterwards.
 *   sandbox    the kernel's probes refused by seccomp (futex requeue and
 *              wake-op, then process_vm_readv/writev too): cpu_opv()
 *              fails with EFAULT or with the refusal's errno, never
 *              SIGSEGV, and changes nothing; a good vector runs unless
 *              RSEQ_CPU_OPV_KERNEL_COPY=1 asks for the kernel copies.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/cpu_opv.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>
#include <rseq/percpu-op.h>

#include "tap.h"

#define SLOT 128
static int ncpus;
static intptr_t *counts;	/* one counter per CPU, SLOT bytes apart */
static atomic_int stop;
static atomic_long progress;

static intptr_t *cnt(int cpu)
{
	return (intptr_t *)((char *)counts + (size_t)cpu * SLOT);
}

static intptr_t total(void)
{
	intptr_t t = 0;

	for (int c = 0; c < ncpus; c++)
		t += *cnt(c);
	return t;
}

static int watchdog_secs = 60;

static void *watchdog(void *arg)
{
	const char *name = arg;
	long last = -1;
	int still = 0;

	for (;;) {
		sleep(1);
		long p = atomic_load(&progress);
		still = p == last ? still + 1 : 0;
		last = p;
		if (still >= watchdog_secs) {
			printf("not ok - %s: no progress for %d s (deadlock or livelock)\n", name, still);
			fflush(stdout);
			_exit(3);
		}
	}
	return NULL;
}

static void start_watchdog(const char *name)
{
	pthread_t t;

	pthread_create(&t, NULL, watchdog, (void *)name);
	pthread_detach(t);
}

/* Every word of every possible CPU is free (read from the table every
 * section reads), and a fresh thread completes a cpu-op on each CPU. */
static void *cpu_op_everywhere(void *arg)
{
	(void)arg;
	long bad = 0;

	for (int c = 0; c < ncpus; c++) {
		if (cpu_op_addv(cnt(c), 1, c) != 0)
			bad++;
		atomic_fetch_add(&progress, 1);
	}
	return (void *)bad;
}

static void check_words_free(const char *what)
{
	int held = 0;
	pthread_t t;
	void *bad;

	for (int c = 0; c < ncpus; c++)
		if (__atomic_load_n(rseq_cpu_op_owner_word(c, RSEQ_CPU_OP_WORD_CPU_ID), __ATOMIC_ACQUIRE) ||
		    __atomic_load_n(rseq_cpu_op_owner_word(c, RSEQ_CPU_OP_WORD_MM_CID), __ATOMIC_ACQUIRE))
			held++;
	ok(held == 0, "%s: no ownership word left held (%d held)", what, held);
	pthread_create(&t, NULL, cpu_op_everywhere, NULL);
	pthread_join(t, &bad);
	ok(bad == NULL, "%s: another thread completes a cpu-op on every CPU", what);
}

static void pin(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

/* --- longjmp ------------------------------------------------------- */

static _Thread_local sigjmp_buf jb;
static _Thread_local volatile int jb_armed;
static _Thread_local int my_cpu_target;
static atomic_long handler_saw_own_hold, jumps, edeadlk;

static int own_word_held(void)
{
	uint32_t tid = (uint32_t)syscall(SYS_gettid);

	for (int c = 0; c < ncpus; c++) {
		uint32_t w = __atomic_load_n(rseq_cpu_op_owner_word(c, RSEQ_CPU_OP_WORD_CPU_ID), __ATOMIC_RELAXED);
		/* Old engine: 1/2 while held (no owner in the word); new: the tid. */
		if ((w & 0x3fffffff) == tid)
			return 1;
	}
	return 0;
}

static void jump_handler(int sig)
{
	(void)sig;
	if (own_word_held())
		atomic_fetch_add(&handler_saw_own_hold, 1);
	if (jb_armed) {
		atomic_fetch_add(&jumps, 1);
		siglongjmp(jb, 1);
	}
}

static _Thread_local long jump_i;

static void *jump_worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	struct cpu_op op[2];

	for (jump_i = 0; !atomic_load(&stop); jump_i++) {
		long i = jump_i;
		int cpu = (int)((i + id) % ncpus);

		if (sigsetjmp(jb, 1))
			continue;
		jb_armed = 1;
		int r;
		switch (i % 3) {
		case 0:
			r = cpu_op_addv(cnt(cpu), 1, cpu);
			break;
		case 1:
			memset(op, 0, sizeof(op));
			op[0].op = CPU_ADD_OP;
			op[0].len = 8;
			op[0].u.arithmetic_op.p = (uintptr_t)cnt(cpu);
			op[0].u.arithmetic_op.count = 1;
			r = cpu_opv(op, 1, cpu, 0);
			break;
		default:
			r = percpu_addv(cnt(cpu), 1, cpu);
			break;
		}
		jb_armed = 0;
		if (r == -1 && errno == EDEADLK)
			atomic_fetch_add(&edeadlk, 1);
		atomic_fetch_add(&progress, 1);
	}
	return NULL;
}

static int run_longjmp(void)
{
	enum { W = 4 };
	pthread_t t[W];
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = jump_handler;
	sigaction(SIGUSR1, &sa, NULL);
	for (int i = 0; i < W; i++)
		pthread_create(&t[i], NULL, jump_worker, (void *)(intptr_t)i);
	for (int k = 0; k < 40000; k++) {
		pthread_kill(t[k % W], SIGUSR1);
		if (k % 64 == 0)
			usleep(50);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < W; i++)
		pthread_join(t[i], NULL);
	diag("siglongjmps out of a call: %ld", atomic_load(&jumps));
	ok(atomic_load(&jumps) > 0, "handlers jumped out of calls (%ld)", atomic_load(&jumps));
	ok(atomic_load(&handler_saw_own_hold) == 0, "no handler ran while its thread held a word (%ld did)",
	   atomic_load(&handler_saw_own_hold));
	ok(atomic_load(&edeadlk) == 0, "no call returned EDEADLK (%ld did)", atomic_load(&edeadlk));
	check_words_free("after the jumps");
	return 0;
}

/* --- rseqloop ------------------------------------------------------ */

static atomic_long expected, handler_runs;

static void rseq_loop_handler(int sig)
{
	(void)sig;
	/* A raw retry loop on the CPU this thread runs on: it can only end
	 * if no cpu-op of this thread holds that CPU's word meanwhile. */
	for (;;) {
		int cpu = rseq_cpu_start();
		if (cpu < 0) {
			/* Unregistered: percpu_addv completes through a cpu-op. */
			if (percpu_addv(cnt(0), 1, 0) == 0)
				break;
			continue;
		}
		if (rseq_addv(cnt(cpu), 1, cpu) == 0)
			break;
	}
	if (percpu_addv(cnt(my_cpu_target), 1, my_cpu_target) == 0)
		atomic_fetch_add(&expected, 1);
	atomic_fetch_add(&expected, 1);
	atomic_fetch_add(&handler_runs, 1);
}

static void *rseq_loop_worker(void *arg)
{
	(void)arg;
	for (long i = 0; !atomic_load(&stop); i++) {
		int cpu = sched_getcpu();
		my_cpu_target = cpu;
		if (cpu_op_addv(cnt(cpu), 1, cpu) == 0)
			atomic_fetch_add(&expected, 1);
		if (i % 2 == 0 && percpu_addv(cnt(cpu), 1, cpu) == 0)
			atomic_fetch_add(&expected, 1);
		atomic_fetch_add(&progress, 1);
	}
	return NULL;
}

static int run_rseqloop(void)
{
	enum { W = 4 };
	pthread_t t[W];
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = rseq_loop_handler;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR2, &sa, NULL);
	for (int i = 0; i < W; i++)
		pthread_create(&t[i], NULL, rseq_loop_worker, NULL);
	for (int k = 0; k < 30000; k++) {
		pthread_kill(t[k % W], SIGUSR2);
		if (k % 64 == 0)
			usleep(50);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < W; i++)
		pthread_join(t[i], NULL);
	ok(atomic_load(&handler_runs) > 0, "handlers ran raw rseq loops (%ld)", atomic_load(&handler_runs));
	ok(total() == atomic_load(&expected), "exact total (%ld, expected %ld)", (long)total(),
	   atomic_load(&expected));
	check_words_free("after the handlers");
	return 0;
}

/* --- exit ---------------------------------------------------------- */

static void exit_handler(int sig)
{
	(void)sig;
	pthread_exit(NULL);
}

static atomic_int exit_started;

static void *exit_worker(void *arg)
{
	int kind = (int)(intptr_t)arg;
	struct cpu_op op;

	if (kind == 2) {
		pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
	}
	atomic_fetch_add(&exit_started, 1);
	for (long i = 0;; i++) {
		int cpu = (int)(i % ncpus);
		switch (i % 4) {
		case 0:
			cpu_op_addv(cnt(cpu), 1, cpu);
			break;
		case 1:
			memset(&op, 0, sizeof(op));
			op.op = CPU_ADD_OP;
			op.len = 8;
			op.u.arithmetic_op.p = (uintptr_t)cnt(cpu);
			op.u.arithmetic_op.count = 1;
			cpu_opv(&op, 1, cpu, 0);
			break;
		case 2:
			percpu_addv(cnt(cpu), 1, cpu);
			break;
		default:
			(void)rseq_current_cpu();
			cpu_op_fence(cpu);
			break;
		}
		if (kind == 3 && i % 16 == 0)
			pthread_testcancel();
		atomic_fetch_add(&progress, 1);
	}
	return NULL;
}

static int run_exit(void)
{
	struct sigaction sa;
	const char *how[] = { "", "pthread_exit() from a handler", "asynchronous cancellation",
			      "deferred cancellation" };

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = exit_handler;
	sigaction(SIGUSR1, &sa, NULL);
	for (int kind = 1; kind <= 3; kind++) {
		int joined = 0;
		for (int round = 0; round < 200; round++) {
			pthread_t t;
			void *ret;

			atomic_store(&exit_started, 0);
			pthread_create(&t, NULL, exit_worker, (void *)(intptr_t)kind);
			while (!atomic_load(&exit_started))
				sched_yield();
			usleep(100 + (round % 7) * 37);
			if (kind == 1)
				pthread_kill(t, SIGUSR1);
			else
				pthread_cancel(t);
			if (pthread_join(t, &ret) == 0 && ret == (kind == 1 ? NULL : PTHREAD_CANCELED))
				joined++;
			atomic_fetch_add(&progress, 1);
		}
		ok(joined == 200, "%s: 200 threads left exported calls and were joined (%d)", how[kind], joined);
		check_words_free(how[kind]);
	}
	return 0;
}

/* --- nomalloc ------------------------------------------------------ */

static _Thread_local int in_handler;
static atomic_long handler_mallocs, handler_opens, handler_ops;
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

/* The program's malloc interposes the library's (and libc's) calls. */
void *malloc(size_t n)
{
	if (in_handler)
		atomic_fetch_add(&handler_mallocs, 1);
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	if (in_handler)
		atomic_fetch_add(&handler_mallocs, 1);
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	if (in_handler)
		atomic_fetch_add(&handler_mallocs, 1);
	return __libc_realloc(p, n);
}

void free(void *p)
{
	__libc_free(p);
}

static int (*real_open64)(const char *, int, ...);

int open64(const char *path, int flags, ...)
{
	if (in_handler)
		atomic_fetch_add(&handler_opens, 1);
	va_list ap;
	int mode = 0;

	va_start(ap, flags);
	if (flags & (O_CREAT | O_TMPFILE))
		mode = va_arg(ap, int);
	va_end(ap);
	if (!real_open64)
		real_open64 = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
	return real_open64(path, flags, mode);
}

int open(const char *path, int flags, ...) __attribute__((alias("open64")));

static int refuse(int nr_a, int nr_b, int futex_ops);

static void remote_op_handler(int sig)
{
	(void)sig;
	in_handler = 1;
	int here = sched_getcpu();
	for (int c = 0; c < ncpus; c++) {
		if (c == here)
			continue;
		if (cpu_op_addv(cnt(c), 1, c) == 0) {
			atomic_fetch_add(&expected, 1);
			atomic_fetch_add(&handler_ops, 1);
		}
		if (percpu_addv(cnt(c), 1, c) == 0)
			atomic_fetch_add(&expected, 1);
	}
	in_handler = 0;
}

static void *malloc_worker(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		void *p[16];
		for (int i = 0; i < 16; i++)
			p[i] = malloc(16 + (size_t)i * 40);
		for (int i = 0; i < 16; i++)
			free(p[i]);
		atomic_fetch_add(&progress, 1);
	}
	return NULL;
}

static int run_nomalloc(void)
{
	enum { W = 2 };
	pthread_t t[W];
	struct sigaction sa;
	cpu_set_t before, after;

	if (refuse(__NR_membarrier, -1, 0)) {
		skip(1, "seccomp filters unavailable");
		return 0;
	}
	ok(cpu_op_available() == 0, "membarrier refused: cpu_op_available() is 0");
	ok(percpu_op_available() == cpu_op_available(), "percpu_op_available() agrees (%d)",
	   percpu_op_available());
	sched_getaffinity(0, sizeof(before), &before);
	/* A remote cpu-op migrates and comes back. */
	int fails = 0;
	for (int c = 0; c < ncpus; c++)
		if (cpu_op_addv(cnt(c), 1, c) != 0)
			fails++;
		else
			atomic_fetch_add(&expected, 1);
	sched_getaffinity(0, sizeof(after), &after);
	ok(fails == 0, "every CPU reachable by migration (%d failed)", fails);
	ok(CPU_EQUAL(&before, &after), "the caller's affinity is restored");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = remote_op_handler;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	for (int i = 0; i < W; i++)
		pthread_create(&t[i], NULL, malloc_worker, NULL);
	for (int k = 0; k < 3000; k++) {
		pthread_kill(t[k % W], SIGUSR1);
		usleep(100);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < W; i++)
		pthread_join(t[i], NULL);
	if (ncpus > 1)
		ok(atomic_load(&handler_ops) > 0, "handlers ran migrating cpu-ops (%ld)", atomic_load(&handler_ops));
	ok(atomic_load(&handler_mallocs) == 0, "the library called malloc from no handler's cpu-op (%ld calls)",
	   atomic_load(&handler_mallocs));
	ok(atomic_load(&handler_opens) == 0, "the library opened no file from a handler's cpu-op (%ld)",
	   atomic_load(&handler_opens));
	ok(total() == atomic_load(&expected), "exact total (%ld, expected %ld)", (long)total(),
	   atomic_load(&expected));
	check_words_free("after the migrations");
	return 0;
}

/* --- unmap --------------------------------------------------------- */

static char *volatile region;
static size_t page;

static void *unmapper(void *arg)
{
	(void)arg;
	for (long i = 0; !atomic_load(&stop); i++) {
		switch (i % 4) {
		case 0:
			/* Really unmapped, then mapped again at the same place
			 * unless something else took the hole meanwhile. */
			munmap(region, page);
			if (mmap(region, page, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != region)
				return NULL;
			break;
		case 1:
			/* Replaced by an inaccessible mapping, then a fresh one. */
			mmap(region, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			mmap(region, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			break;
		default:
			mprotect(region, page, i % 2 ? PROT_READ : PROT_NONE);
			mprotect(region, page, PROT_READ | PROT_WRITE);
			break;
		}
		atomic_fetch_add(&progress, 1);
	}
	return NULL;
}

static int run_unmap(void)
{
	pthread_t t;
	long done = 0, efault = 0, eagain = 0, other = 0;
	static char src[512];

	page = (size_t)sysconf(_SC_PAGESIZE);
	/* Between two guard pages, so that the hole is one page. */
	char *area = mmap(NULL, 3 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	region = area + page;
	mprotect(region, page, PROT_READ | PROT_WRITE);
	pthread_create(&t, NULL, unmapper, NULL);
	for (long i = 0; i < 200000; i++) {
		struct cpu_op op[2];
		int cpu = (int)(i % ncpus);
		int expect = i % 5 == 0;

		memset(op, 0, sizeof(op));
		if (i % 2) {
			op[0].op = CPU_MEMCPY_OP;
			op[0].len = sizeof(src);
			op[0].u.memcpy_op.dst = (uintptr_t)region + 64;
			op[0].u.memcpy_op.src = (uintptr_t)src;
			op[0].u.memcpy_op.expect_fault_dst = (uint8_t)expect;
		} else {
			op[0].op = CPU_ADD_OP;
			op[0].len = 8;
			op[0].u.arithmetic_op.p = (uintptr_t)region + 8;
			op[0].u.arithmetic_op.count = 1;
			op[0].u.arithmetic_op.expect_fault_p = (uint8_t)expect;
		}
		op[1].op = CPU_ADD_OP;
		op[1].len = 8;
		op[1].u.arithmetic_op.p = (uintptr_t)region + 16;
		op[1].u.arithmetic_op.count = 1;
		int r = cpu_opv(op, 2, cpu, 0);
		if (r == 0)
			done++;
		else if (r == -1 && errno == EFAULT)
			efault++;
		else if (r == -1 && errno == EAGAIN && expect)
			eagain++;
		else
			other++;
		atomic_fetch_add(&progress, 1);
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	diag("done %ld, EFAULT %ld, EAGAIN %ld, other %ld", done, efault, eagain, other);
	ok(other == 0, "no signal; every cpu_opv() returned 0, EFAULT or EAGAIN (expect_fault): %ld others",
	   other);
	ok(efault + eagain > 0, "faults were met (%ld)", efault + eagain);
	check_words_free("after the unmapping");
	return 0;
}

/* --- sandbox ------------------------------------------------------- */

#if defined(__x86_64__)
#define ARCH_SELF AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH_SELF AUDIT_ARCH_AARCH64
#endif

/* Refuses (EPERM) system calls nr_a and nr_b, and, with futex_ops, the
 * futex operations FUTEX_CMP_REQUEUE and FUTEX_WAKE_OP. */
static int refuse(int nr_a, int nr_b, int futex_ops)
{
	struct sock_filter f[] = {
#ifdef ARCH_SELF
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH_SELF, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
#endif
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr_a, 7, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr_b, 6, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, futex_ops ? __NR_futex : 0xffffffffu, 0, 4),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x7f),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, FUTEX_CMP_REQUEUE, 0, 1),
		BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, FUTEX_WAKE_OP, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	};
	struct sock_fprog prog = { .len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) ? -1 : 0;
}

static int run_sandbox(void)
{
	page = (size_t)sysconf(_SC_PAGESIZE);
	char *good = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *bad = good + page;
	munmap(bad, page);
	int cpu = sched_getcpu();
	/* RSEQ_CPU_OPV_KERNEL_COPY=1: every access through the kernel. */
	const char *env = getenv("RSEQ_CPU_OPV_KERNEL_COPY");
	int kernel_copy = env && env[0] == '1';

	for (int stage = 1; stage <= 2; stage++) {
		if (stage == 1 ? refuse(-1, -1, 1) : refuse(__NR_process_vm_readv, __NR_process_vm_writev, 0)) {
			skip(1, "seccomp filters unavailable");
			return 0;
		}
		const char *what = stage == 1 ? "futex probes refused" : "and process_vm_readv/writev refused";
		struct cpu_op op[2];
		intptr_t *g = (intptr_t *)good;
		*g = 5;
		/* One op on a bad address. */
		memset(op, 0, sizeof(op));
		op[0].op = CPU_ADD_OP;
		op[0].len = 8;
		op[0].u.arithmetic_op.p = (uintptr_t)bad;
		op[0].u.arithmetic_op.count = 1;
		int r = cpu_opv(op, 1, cpu, 0);
		int e = errno;
		ok(r == -1 && (e == EFAULT || (stage == 2 && e == EPERM)), "%s: bad address: -1 (%d), errno %s", what,
		   r, strerror(e));
		/* Good then bad: nothing may change. */
		op[0].u.arithmetic_op.p = (uintptr_t)g;
		op[1] = op[0];
		op[1].u.arithmetic_op.p = (uintptr_t)bad;
		r = cpu_opv(op, 2, cpu, 0);
		e = errno;
		ok(r == -1 && (e == EFAULT || e == EPERM) && *g == 5,
		   "%s: good then bad: -1, errno %s, nothing changed (%ld)", what, strerror(e), (long)*g);
		r = cpu_opv(op, 1, cpu, 0);
		if (stage == 1 || !kernel_copy)
			/* Direct accesses with fault recovery need neither
			 * the probes nor the kernel copies. */
			ok(r == 0 && *g == 6, "%s: a good vector still runs", what);
		else
			ok(r == -1 && errno == EPERM && *g == 5, "%s: a good vector fails with the refusal (EPERM)",
			   what);
		check_words_free(what);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	ncpus = (int)sysconf(_SC_NPROCESSORS_CONF);
	counts = zalloc_aligned((size_t)ncpus * SLOT);
	plan_no_plan();
	start_watchdog(name);
	if (!strcmp(name, "longjmp"))
		run_longjmp();
	else if (!strcmp(name, "rseqloop"))
		run_rseqloop();
	else if (!strcmp(name, "exit"))
		run_exit();
	else if (!strcmp(name, "nomalloc"))
		run_nomalloc();
	else if (!strcmp(name, "unmap"))
		run_unmap();
	else if (!strcmp(name, "sandbox"))
		run_sandbox();
	else
		bail_out("unknown scenario %s", name);
	(void)pin;
	return exit_status();
}
