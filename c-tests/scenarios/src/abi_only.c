/* SPDX-License-Identifier: MIT */
/*
 * A program built only against the exported ABI, the way librseq's inline
 * headers use it: it includes no header of the library, declares the data
 * symbols and the register function itself, and runs its own hand-written
 * x86_64 critical section (asm goto, a __rseq_cs descriptor, signature
 * 0x53053053) through thread pointer + rseq_offset.
 *
 *   abi_only [THREADS (0: 4 per online CPU) [ITERATIONS [unprotected]]]
 *
 * Every thread calls rseq_register_current_thread() (as librseq requires),
 * then increments per-CPU counters with the section while another thread
 * signals every worker every 200 us; the total must be exact. With
 * "unprotected" the workers run the same instructions with no rseq
 * descriptor (a control: preemptions then lose updates). Prints TAP;
 * "# lib PATH" names the object that defined rseq_register_current_thread.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "this test carries an x86_64 critical section"
#endif

/* The exported ABI, declared here as librseq's <rseq/rseq.h> does. */
extern ptrdiff_t rseq_offset;
extern unsigned int rseq_size;
extern unsigned int rseq_flags;
int rseq_register_current_thread(void);
int rseq_unregister_current_thread(void);

/* The kernel's struct rseq (first fields). */
struct area {
	uint32_t cpu_id_start;
	int32_t cpu_id;
	uint64_t rseq_cs;
	uint32_t flags;
} __attribute__((aligned(32)));

static inline struct area *my_area(void)
{
	void *tp;

	__asm__ ("movq %%fs:0, %0" : "=r" (tp));
	return (struct area *)((char *)tp + rseq_offset);
}

/* *v += count on `cpu` (a load, a delay loop and a store): 0, or -1 when aborted (preempted, migrated,
 * signalled, not on `cpu`, not registered). */
static inline int my_addv(intptr_t *v, intptr_t count, int cpu)
{
	__asm__ goto (
		".pushsection __rseq_cs, \"aw\"\n\t"
		".balign 32\n\t"
		"3:\n\t"
		".long 0x0, 0x0\n\t"			/* version, flags */
		".quad 1f, (2f - 1f), 4f\n\t"		/* start, post-commit offset, abort */
		".popsection\n\t"
		".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"
		".quad 3b\n\t"
		".popsection\n\t"
		"leaq 3b(%%rip), %%rax\n\t"
		"movq %%rax, %%fs:8(%[off])\n\t"	/* area->rseq_cs = &descriptor */
		"1:\n\t"
		"cmpl %[cpu], %%fs:4(%[off])\n\t"	/* area->cpu_id == cpu ? */
		"jnz 4f\n\t"
		"movq (%[v]), %%rax\n\t"		/* load */
		"addq %[count], %%rax\n\t"
		"movl $16, %%ecx\n\t"			/* widen the window between */
		"5: pause\n\t"			/* load and store: without */
		"decl %%ecx\n\t"			/* rseq, a preemption here */
		"jnz 5b\n\t"				/* loses updates */
		"movq %%rax, (%[v])\n\t"		/* commit */
		"2:\n\t"
		".pushsection __rseq_failure, \"ax\"\n\t"
		".byte 0x0f, 0xb9, 0x3d\n\t"		/* ud1 <sig>(%rip), %edi */
		".long 0x53053053\n\t"			/* RSEQ_SIG */
		"4:\n\t"
		"jmp %l[aborted]\n\t"
		".popsection\n\t"
		:
		: [off] "r" (rseq_offset), [cpu] "r" (cpu), [v] "r" (v), [count] "er" (count)
		: "memory", "cc", "rax", "rcx"
		: aborted);
	return 0;
aborted:
	return -1;
}

/* The same load, delay and store with no rseq descriptor: for the
 * control run ("unprotected"), which should lose updates. */
static inline int unprotected_addv(intptr_t *v, intptr_t count, int cpu)
{
	__asm__ goto (
		"cmpl %[cpu], %%fs:4(%[off])\n\t"
		"jnz %l[aborted]\n\t"
		"movq (%[v]), %%rax\n\t"
		"addq %[count], %%rax\n\t"
		"movl $16, %%ecx\n\t"
		"5: pause\n\t"
		"decl %%ecx\n\t"
		"jnz 5b\n\t"
		"movq %%rax, (%[v])\n\t"
		:
		: [off] "r" (rseq_offset), [cpu] "r" (cpu), [v] "r" (v), [count] "er" (count)
		: "memory", "cc", "rax", "rcx"
		: aborted);
	return 0;
aborted:
	return -1;
}

static int unprotected;

struct counter {
	intptr_t v;
} __attribute__((aligned(128)));

static struct counter *counters;
static long nr_slots, iterations;
static int failed, n;
static pthread_barrier_t start;
static int finished;	/* workers done (their handles stay valid until joined) */

struct worker_list {
	pthread_t *t;
	int n;
};

static void on_signal(int sig)
{
	(void)sig;
}

/* Signals every worker every 200 us: each signal delivered inside a
 * section aborts it. */
static void *signaller(void *arg)
{
	struct worker_list *l = arg;
	struct timespec ts = { 0, 200000 };

	while (__atomic_load_n(&finished, __ATOMIC_ACQUIRE) < l->n) {
		for (int i = 0; i < l->n; i++)
			pthread_kill(l->t[i], SIGUSR1);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

#define OK(cond, ...) do {						\
	n++;								\
	if (!(cond))							\
		failed++;						\
	printf("%sok %d - ", (cond) ? "" : "not ", n);			\
	printf(__VA_ARGS__);						\
	printf("\n");							\
} while (0)

struct worker {
	pthread_t t;
	int reg_ret, reg_errno, cpu_after_reg;
	long aborts, bad_cpu;
};

static void *work(void *arg)
{
	struct worker *w = arg;

	errno = 0;
	w->reg_ret = rseq_register_current_thread();
	w->reg_errno = errno;
	w->cpu_after_reg = my_area()->cpu_id;
	pthread_barrier_wait(&start);
	for (long i = 0; i < iterations; i++) {
		for (;;) {
			int cpu = (int)__atomic_load_n(&my_area()->cpu_id_start, __ATOMIC_RELAXED);

			if (cpu < 0 || cpu >= nr_slots) {
				w->bad_cpu++;
				goto out;
			}
			if ((unprotected ? unprotected_addv : my_addv)(&counters[cpu].v, 1, cpu) == 0)
				break;
			w->aborts++;
		}
	}
out:
	__atomic_fetch_add(&finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

int main(int argc, char **argv)
{
	int nthreads = argc > 1 ? atoi(argv[1]) : 0;
	struct worker *ws;
	intptr_t total = 0, v = 0;
	long aborts = 0, bad_cpu = 0, reg_fail = 0, unreg = 0;
	Dl_info info;
	int cpu;
	struct sigaction sa;
	pthread_t *tids, sig_thread;
	struct worker_list list;

	iterations = argc > 2 ? atol(argv[2]) : 1000000;
	unprotected = argc > 3 && !strcmp(argv[3], "unprotected");
	nr_slots = sysconf(_SC_NPROCESSORS_CONF);
	if (nthreads <= 0)
		nthreads = 4 * (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nr_slots < 1 || nthreads < 1)
		return 2;
	nr_slots += 64;	/* room for CPU numbers above the configured count */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (dladdr((void *)rseq_register_current_thread, &info) && info.dli_fname)
		printf("# lib %s\n", info.dli_fname);
	printf("# rseq_offset %td, rseq_size %u, rseq_flags %u\n", rseq_offset, rseq_size, rseq_flags);
	OK(rseq_register_current_thread() == 0, "main: rseq_register_current_thread() succeeds");
	OK(rseq_offset != 0 && rseq_size >= 20 && rseq_size != -1U,
	   "rseq_offset %td and rseq_size %u describe an active registration", rseq_offset, rseq_size);
	cpu = my_area()->cpu_id;
	OK(cpu >= 0 && cpu < nr_slots, "main: cpu_id %d read at thread pointer + rseq_offset", cpu);
	OK(my_addv(&v, 1, -1) == -1 && my_addv(&v, 1, (int)my_area()->cpu_id_start + 100000) == -1 && v == 0,
	   "the section aborts on a CPU number that is not the current one (v %ld)", (long)v);
	for (int i = 0; i < 1000 && my_addv(&v, 5, (int)my_area()->cpu_id_start) != 0; i++)
		;
	OK(v == 5, "the section commits on the current CPU (v %ld)", (long)v);

	counters = aligned_alloc(128, (size_t)nr_slots * sizeof(*counters));
	ws = calloc((size_t)nthreads, sizeof(*ws));
	if (!counters || !ws)
		return 2;
	memset(counters, 0, (size_t)nr_slots * sizeof(*counters));
	pthread_barrier_init(&start, NULL, (unsigned int)nthreads);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	tids = calloc((size_t)nthreads, sizeof(*tids));
	if (!tids)
		return 2;
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&ws[i].t, NULL, work, &ws[i]))
			return 2;
		tids[i] = ws[i].t;
	}
	list.t = tids;
	list.n = nthreads;
	if (pthread_create(&sig_thread, NULL, signaller, &list))
		return 2;
	/* The signaller stops once every worker finished; only then are the
	 * workers joined (their handles are valid until then). */
	pthread_join(sig_thread, NULL);
	for (int i = 0; i < nthreads; i++) {
		pthread_join(ws[i].t, NULL);
		aborts += ws[i].aborts;
		bad_cpu += ws[i].bad_cpu;
		if (ws[i].reg_ret != 0 || ws[i].cpu_after_reg < 0)
			reg_fail++, printf("# thread %d: register %d errno %d cpu_id %d\n", i, ws[i].reg_ret,
					   ws[i].reg_errno, ws[i].cpu_after_reg);
	}
	for (long c = 0; c < nr_slots; c++)
		total += counters[c].v;
	printf("# %d threads x %ld iterations: total %ld, %ld aborts\n", nthreads, iterations, (long)total, aborts);
	OK(reg_fail == 0, "every thread: rseq_register_current_thread() succeeded and cpu_id >= 0 (%ld failed)", reg_fail);
	OK(bad_cpu == 0, "every cpu_id_start was a CPU number (%ld bad)", bad_cpu);
	OK(total == (intptr_t)nthreads * iterations, "exact total %ld (expected %ld)", (long)total,
	   (long)nthreads * iterations);
	unreg = rseq_unregister_current_thread();
	OK(unreg == 0, "main: rseq_unregister_current_thread() succeeds (%ld)", unreg);
	printf("1..%d\n", n);
	free(tids);
	free(ws);
	free(counters);
	return failed ? 1 : 0;
}
