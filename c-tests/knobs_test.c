/* SPDX-License-Identifier: MIT */
/*
 * librseq's other header knobs and helpers, at run time:
 *
 *   RSEQ_GET_ABI_OVERRIDE  the program's rseq_get_abi(): the inline
 *                          accessors and sections use its area (a fake
 *                          area that says "not registered" makes the
 *                          sections abort; the real one lets them commit)
 *   RSEQ_COMPARE_TWICE     the sections re-check before committing and
 *                          still commit exactly (threads, migrations); a
 *                          value changed inside the section after its
 *                          compare (by injected code, x86) makes the
 *                          re-check call rseq_bug(): the child aborts
 *                          with librseq's message
 *   <rseq/compiler.h>      RSEQ_BITS_PER_LONG (in #if too),
 *                          RSEQ_COMBINE_TOKENS, RSEQ_PARAM_SELECT_ARG1
 *   <rseq/arch.h>          RSEQ_ARCH_*, rseq_smp_* barriers (a message
 *                          passing round trip), rseq_arch_has_*
 *   <rseq/utils.h>         rseq_log
 *   rseq_init(), rseq_registered(), rseq_slice_ctrl_available()
 *
 * With RSEQ_NO_INLINE the exported functions run, which use the
 * library's own area: the override is then never called.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdint.h>
#include <string.h>

#include <rseq/abi.h>

#define RSEQ_GET_ABI_OVERRIDE 1
#define RSEQ_COMPARE_TWICE 1

#if defined(__x86_64__)
/* Injection point 4 (after the value compare, before the re-check)
 * increments the section's target when sabotage is on. */
#define SABOTAGE 1
static volatile int sabotage __asm__("knobs_sabotage") __attribute__((used));
static intptr_t sabotage_target __asm__("knobs_sabotage_target") __attribute__((used));
#define RSEQ_INJECT_ASM(n)						\
	"cmpl $" #n ", knobs_sabotage(%%rip)\n\t"			\
	"jne 333f\n\t"							\
	"incq knobs_sabotage_target(%%rip)\n\t"			\
	"333:\n\t"
#elif defined(__i386__)
/* The same on i386, with thread-local variables: %gs-relative (the
 * forked child that sabotages is single-threaded). */
#define SABOTAGE 1
static __thread volatile int sabotage __asm__("knobs_sabotage") __attribute__((used));
static __thread intptr_t sabotage_target __asm__("knobs_sabotage_target") __attribute__((used));
#define RSEQ_INJECT_ASM(n)						\
	"cmpl $" #n ", %%gs:knobs_sabotage@ntpoff\n\t"		\
	"jne 333f\n\t"							\
	"incl %%gs:knobs_sabotage_target@ntpoff\n\t"		\
	"333:\n\t"
#endif

/* The program's area: the real one, or a fake one. */
static unsigned long abi_calls;
static int use_fake;
static struct rseq_abi fake_abi;
static inline struct rseq_abi *rseq_get_abi(void);

#include <rseq/rseq.h>
#include <rseq/pseudocode.h>

#include "tap.h"

static inline __attribute__((unused)) struct rseq_abi *rseq_get_abi(void)
{
	abi_calls++;
	if (use_fake)
		return &fake_abi;
	return (struct rseq_abi *)((uintptr_t)rseq_thread_pointer() + rseq_offset);
}

#if defined(RSEQ_NO_INLINE) || !defined(RSEQ_ARCH_HAS_SEQUENCES)
#define INLINE_SECTIONS 0
#else
#define INLINE_SECTIONS 1
#endif

#if RSEQ_BITS_PER_LONG != 32 && RSEQ_BITS_PER_LONG != 64
#error "RSEQ_BITS_PER_LONG is not usable in #if"
#endif

#define THREADS_PER_CPU 6
#define REPS 20000

static intptr_t *counts;
static int max_cpus, nr_allowed, allowed[CPU_SETSIZE];

static void *adder(void *arg)
{
	long id = (long)arg;

	for (long i = 0; i < REPS; i++) {
		int cpu, ret;

		if (i % 1000 == 0 && nr_allowed > 1) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(allowed[(i / 1000 + id) % nr_allowed], &set);
			(void)sched_setaffinity(0, sizeof(set), &set);
		}
		if (i & 1) {
			do {
				cpu = (int)rseq_cpu_start();
				intptr_t old = RSEQ_READ_ONCE(counts[cpu]);

				ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID,
								&counts[cpu], old, old + 1, cpu);
			} while (ret);
		} else {
			do {
				cpu = (int)rseq_cpu_start();
				ret = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID,
							       &counts[cpu], 1, cpu);
			} while (ret);
		}
	}
	return NULL;
}

static int message;
static int flag;

static void *producer(void *arg)
{
	(void)arg;
	RSEQ_WRITE_ONCE(message, 42);
	rseq_smp_wmb();
	rseq_smp_store_release(&flag, 1);
	return NULL;
}

#define RSEQ_TEST_PASTE RSEQ_COMBINE_TOKENS(RSEQ_, BITS_PER_LONG)

int main(void)
{
	pthread_t *tid;
	cpu_set_t set;
	int nr_threads, ret;
	long total = 0, expected;

	plan(15);
	ok(RSEQ_BITS_PER_LONG == 8 * sizeof(long), "RSEQ_BITS_PER_LONG is %d", (int)RSEQ_BITS_PER_LONG);
	ok(RSEQ_TEST_PASTE == RSEQ_BITS_PER_LONG && RSEQ_PARAM_SELECT_ARG1(1, 2, 3) == 2,
	   "RSEQ_COMBINE_TOKENS and RSEQ_PARAM_SELECT_ARG1");
#if defined(__x86_64__)
	ok(RSEQ_ARCH_X86 && RSEQ_ARCH_AMD64, "RSEQ_ARCH_X86 and RSEQ_ARCH_AMD64 on x86_64");
#elif defined(__aarch64__)
	ok(RSEQ_ARCH_AARCH64, "RSEQ_ARCH_AARCH64 on aarch64");
#else
	ok(1, "no RSEQ_ARCH_* check for this architecture");
#endif
	ok(rseq_init() == RSEQ_INIT_OK && rseq_init() == RSEQ_INIT_OK, "rseq_init() twice: RSEQ_INIT_OK");
	ok(rseq_slice_ctrl_available() == ((int)rseq_size > 32),
	   "rseq_slice_ctrl_available() is %d with rseq_size %u", rseq_slice_ctrl_available(), rseq_size);
	{
		pthread_t p;
		int seen;

		if (pthread_create(&p, NULL, producer, NULL))
			bail_out("pthread_create");
		while (!rseq_smp_load_acquire(&flag))
			sched_yield();
		rseq_smp_acquire__after_ctrl_dep();
		rseq_smp_rmb();
		seen = RSEQ_READ_ONCE(message);
		rseq_smp_mb();
		pthread_join(p, NULL);
		ok(seen == 42, "rseq_smp_store_release / rseq_smp_load_acquire pass a message");
	}
	rseq_log("rseq_log works: %d", 1);

	if (!rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL)) {
		skip(9, "rseq not available");
		return exit_status();
	}
	ok(rseq_registered(), "rseq_registered() in the main thread");

	/* The override, with the real area. */
	abi_calls = 0;
	{
		intptr_t v = 0;
		int cpu;

		do
			cpu = (int)rseq_cpu_start();
		while (rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 5, cpu));
		ok(v == 5, "a section commits through the program's rseq_get_abi()");
		ok(INLINE_SECTIONS ? abi_calls > 0 : abi_calls == 0,
		   "rseq_get_abi() override called %lu times (%s)", abi_calls,
		   INLINE_SECTIONS ? "inline: used" : "RSEQ_NO_INLINE: the library's area");
	}
	/* The override, with a fake area saying "not registered". */
	memset(&fake_abi, 0, sizeof(fake_abi));
	fake_abi.cpu_id = (uint32_t)RSEQ_ABI_CPU_ID_UNINITIALIZED;
	{
		intptr_t v = 0;
		int cpu = (int)rseq_current_cpu();
		int32_t raw;

		use_fake = 1;
		raw = rseq_current_cpu_raw();
		ret = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 1, cpu);
		use_fake = 0;
		if (INLINE_SECTIONS) {
			ok(raw == RSEQ_ABI_CPU_ID_UNINITIALIZED, "inline accessors read the program's area (%d)", raw);
			ok(ret == -1 && v == 0, "a section on an unregistered (fake) area aborts");
		} else {
			ok(raw >= 0, "RSEQ_NO_INLINE: the accessors read the library's area (%d)", raw);
			skip(1, "RSEQ_NO_INLINE: the exported sections use the library's area");
		}
	}

	/* RSEQ_COMPARE_TWICE under migrations: exact counts. */
	max_cpus = rseq_get_max_nr_cpus();
	if (sched_getaffinity(0, sizeof(set), &set))
		bail_out("sched_getaffinity");
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			allowed[nr_allowed++] = c;
	nr_threads = THREADS_PER_CPU * nr_allowed;
	counts = zalloc_aligned((size_t)max_cpus * sizeof(*counts));
	tid = calloc((size_t)nr_threads, sizeof(*tid));
	if (!tid)
		bail_out("out of memory");
	for (long i = 0; i < nr_threads; i++)
		if (pthread_create(&tid[i], NULL, adder, (void *)i))
			bail_out("pthread_create");
	for (int i = 0; i < nr_threads; i++)
		pthread_join(tid[i], NULL);
	for (int c = 0; c < max_cpus; c++)
		total += counts[c];
	expected = (long)nr_threads * REPS;
	ok(total == expected, "RSEQ_COMPARE_TWICE: %ld increments by %d threads, expected %ld", total,
	   nr_threads, expected);
#ifdef rseq_arch_has_load_add_load_load_add_store
	{
		intptr_t target = 0, *ptrs[1] = { &target };
		intptr_t base = (intptr_t)ptrs;
		int cpu;

		do
			cpu = (int)rseq_cpu_start();
		while (rseq_load_add_load_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID,
							      &base, 0, 3, cpu));
		ok(target == 3, "rseq_arch_has_load_add_load_load_add_store: the operation works");
	}
#elif !defined(RSEQ_ARCH_HAS_SEQUENCES)
	ok(1, "no rseq_arch_has_load_add_load_load_add_store without sequences");
#else
	ok(0, "rseq_arch_has_load_add_load_load_add_store is not defined");
#endif
	ok(rseq_registered(), "rseq_registered() after the threads");

	/* A value changed between the compare and the commit: the re-check
	 * must catch it (in a child, which rseq_bug() aborts). */
#if defined(SABOTAGE) && INLINE_SECTIONS
	{
		int fds[2], status = 0;
		char msg[256] = "";
		ssize_t n, got = 0;
		pid_t pid;

		if (pipe(fds))
			bail_out("pipe");
		fflush(stdout);
		pid = fork();
		if (pid < 0)
			bail_out("fork");
		if (pid == 0) {
			int cpu;

			dup2(fds[1], 2);
			close(fds[0]);
			sabotage = 4;
			for (;;) {
				cpu = (int)rseq_cpu_start();
				(void)rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID,
								&sabotage_target,
								RSEQ_READ_ONCE(sabotage_target), 0, cpu);
			}
		}
		close(fds[1]);
		while ((n = read(fds[0], msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
			got += n;
		msg[got] = 0;
		close(fds[0]);
		waitpid(pid, &status, 0);
		ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT &&
		   strstr(msg, "expected value comparison failed"),
		   "RSEQ_COMPARE_TWICE: a value changed inside the section -> rseq_bug() (status %#x: %.60s)",
		   status, msg);
	}
#else
	skip(1, "value re-check sabotage: needs inline sections on x86");
#endif
	free(tid);
	free(counts);
	return exit_status();
}
