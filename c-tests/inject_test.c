/* SPDX-License-Identifier: MIT */
/*
 * The <rseq/inject.h> hooks, used as librseq's param_test uses them: the
 * test defines RSEQ_INJECT_ASM / RSEQ_INJECT_C / RSEQ_INJECT_INPUT /
 * RSEQ_INJECT_CLOBBER / RSEQ_INJECT_FAILED before including
 * <rseq/rseq.h>, so that the inline critical sections
 *
 *   - count, per thread, every pass through each injection point (1 to
 *     6) and through the C point 9;
 *   - spin a delay loop at each point (longer sections, more aborts);
 *   - execute an int3 at point 2 or 3 (inside the section) when the
 *     thread asked for it: the SIGTRAP must abort the section, i.e. the
 *     handler must find the interrupted IP moved to an abort handler;
 *   - raise SIGUSR1 from the C point every few attempts (outside the
 *     section, as in librseq's param_test);
 *   - count the aborts (RSEQ_INJECT_FAILED).
 *
 * 6 threads per online CPU (half of them migrating with
 * sched_setaffinity) run per-CPU counters (load_add_store / rseq_addv),
 * per-CPU sequence numbers bumped with load_cbne_store and with
 * load_cbne_memcpy_store, in CPU_ID and (when available) MM_CID mode.
 * Exact checks: the totals; C point 9 == asm point 1 == commits + compare
 * failures + aborts; the point right after the commit == commits;
 * RSEQ_INJECT_FAILED == aborts; points inside a section never more often
 * than the one before; traps == trap requests, all of them aborting.
 *
 * Built with RSEQ_NO_INLINE the operations run inside the library, whose
 * sections have no injection points: the test then checks that no hook
 * ran and that the totals are still exact. The asm hooks are x86_64 and
 * i386 code (they address thread-local counters through %fs / %gs);
 * elsewhere only the C hooks are checked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#define NPOINTS 7		/* asm points 1..6 */
#define REPS 20000		/* per thread, workload and mode */
#define RAISE_EVERY 97		/* SIGUSR1 every N attempts (C point 9) */
#define TRAP_EVERY 13		/* an int3 request every N operations */
#define DELAY_LOOPS 40		/* delay-loop iterations at every asm point */

/* Per-thread hook counters. */
static __thread unsigned long c_hits, c_raised, failed;
static __thread unsigned long usr1_seen, traps, traps_fixed;

/* The delay-loop length: an "m" input of every section (RSEQ_INJECT_INPUT). */
static volatile unsigned int delay_loops = DELAY_LOOPS;

#if defined(__x86_64__)
#define ASM_HOOKS 1
/* Local-exec TLS, addressed by name from the injected code. */
#define HITS(n) static __thread unsigned long hits_##n __asm__("inject_hits_" #n) __attribute__((used))
HITS(1); HITS(2); HITS(3); HITS(4); HITS(5); HITS(6);
/* The point (2 or 3) at which the next section executes an int3; the
 * SIGTRAP handler clears it (the injected code cannot: an abort between
 * its clear and the int3 would lose the request). */
static __thread unsigned int trap_at __asm__("inject_trap_at") __attribute__((used));

/* Count; spin delay_loops times in %r11 (declared in RSEQ_INJECT_CLOBBER);
 * trap if asked to at this point. */
#define RSEQ_INJECT_ASM(n)						\
	"incq %%fs:inject_hits_" #n "@tpoff\n\t"			\
	"movl %[inject_delay], %%r11d\n\t"				\
	"testl %%r11d, %%r11d\n\t"					\
	"jz 333f\n\t"							\
	"222:\n\t"							\
	"decl %%r11d\n\t"						\
	"jnz 222b\n\t"							\
	"333:\n\t"							\
	"cmpl $" #n ", %%fs:inject_trap_at@tpoff\n\t"			\
	"jne 333f\n\t"							\
	"int3\n\t"							\
	"333:\n\t"
#define RSEQ_INJECT_INPUT	, [inject_delay] "m" (delay_loops)
#define RSEQ_INJECT_CLOBBER	, "r11"
#define TRAP_IP_REG REG_RIP
#elif defined(__i386__)
#define ASM_HOOKS 1
/* The same on i386, %gs-relative; the delay loop runs in %eax, the
 * template's scratch register at every injection point (i386 has no
 * register to spare for it), which the sections already clobber. */
#define HITS(n) static __thread unsigned long hits_##n __asm__("inject_hits_" #n) __attribute__((used))
HITS(1); HITS(2); HITS(3); HITS(4); HITS(5); HITS(6);
static __thread unsigned int trap_at __asm__("inject_trap_at") __attribute__((used));

#define RSEQ_INJECT_ASM(n)						\
	"incl %%gs:inject_hits_" #n "@ntpoff\n\t"			\
	"movl %[inject_delay], %%eax\n\t"				\
	"testl %%eax, %%eax\n\t"					\
	"jz 333f\n\t"							\
	"222:\n\t"							\
	"decl %%eax\n\t"						\
	"jnz 222b\n\t"							\
	"333:\n\t"							\
	"cmpl $" #n ", %%gs:inject_trap_at@ntpoff\n\t"			\
	"jne 333f\n\t"							\
	"int3\n\t"							\
	"333:\n\t"
#define RSEQ_INJECT_INPUT	, [inject_delay] "m" (delay_loops)
#define RSEQ_INJECT_CLOBBER	, "eax"
#define TRAP_IP_REG REG_EIP
#endif

#if defined(ASM_HOOKS) && !defined(RSEQ_NO_INLINE)
/* The x86 abort handlers of the inline sections, which the kernel
 * moves an aborted section's IP to, live in this section (the linker
 * defines its bounds). */
#define CHECK_TRAP_IP 1
extern const char __start___rseq_failure[] __attribute__((visibility("hidden")));
extern const char __stop___rseq_failure[] __attribute__((visibility("hidden")));
#endif

#define RSEQ_INJECT_C(n)						\
	do {								\
		if ((n) == 9 && ++c_hits % RAISE_EVERY == 0) {		\
			c_raised++;					\
			raise(SIGUSR1);					\
		}							\
	} while (0);
#define RSEQ_INJECT_FAILED	failed++;

#include <rseq/rseq.h>

#include "tap.h"

#if defined(RSEQ_NO_INLINE) || !defined(RSEQ_ARCH_HAS_SEQUENCES)
#define INLINE_SECTIONS 0
#else
#define INLINE_SECTIONS 1
#endif

#define SLOT 128
#define COPY 48

struct slot {
	intptr_t count;		/* load_add_store */
	intptr_t seq;		/* load_cbne_store */
	intptr_t mseq;		/* load_cbne_memcpy_store */
	char buf[COPY];
} __attribute__((aligned(SLOT)));

struct totals {
	unsigned long attempts, commits, cmpfails, aborts;
	unsigned long hits[NPOINTS], post_commit, inside_violations;
	unsigned long c_hits, c_raised, failed, usr1_seen;
	unsigned long trap_requests, traps, traps_fixed;
	unsigned long migrations;
	bool registered;
};

static int max_cpus, nr_threads, nr_cpus_allowed, allowed[CPU_SETSIZE];
static struct slot *slots;
static pthread_mutex_t totals_lock = PTHREAD_MUTEX_INITIALIZER;
static struct totals all;
static enum rseq_percpu_mode mode;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_seen++;
}

static void on_trap(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	traps++;
#ifdef ASM_HOOKS
	trap_at = 0;
#endif
#ifdef CHECK_TRAP_IP
	{
		const char *ip = (const char *)((ucontext_t *)ctx)->uc_mcontext.gregs[TRAP_IP_REG];

		if (ip >= __start___rseq_failure && ip < __stop___rseq_failure)
			traps_fixed++;
	}
#else
	(void)ctx;
#endif
}

static int index_now(void)
{
	int i = mode == RSEQ_PERCPU_MM_CID ? (int)rseq_current_mm_cid() : (int)rseq_cpu_start();

	if (i < 0 || i >= max_cpus)
		bail_out("index %d out of range", i);
	return i;
}

static void count(struct totals *t, int ret)
{
	t->attempts++;
	if (ret == 0)
		t->commits++;
	else if (ret == 1)
		t->cmpfails++;
	else
		t->aborts++;
}

/* Asks for an int3 inside the next section (at point 2 or 3). */
static void maybe_request_trap(struct totals *t, long i)
{
#ifdef ASM_HOOKS
	if (INLINE_SECTIONS && i % TRAP_EVERY == 0) {
		trap_at = (i / TRAP_EVERY) % 2 ? 2 : 3;
		t->trap_requests++;
	}
#else
	(void)t;
	(void)i;
#endif
}

static void *worker(void *arg)
{
	long id = (long)arg;
	struct totals t;
	char mine[COPY];
	unsigned long prev[NPOINTS] = { 0 };

	memset(&t, 0, sizeof(t));
	memset(mine, (int)id, sizeof(mine));
	for (long i = 0; i < 3 * REPS; i++) {
		int ret, idx;

		if ((id & 1) && i % 512 == 0 && nr_cpus_allowed > 1) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(allowed[(i / 512 + id) % nr_cpus_allowed], &set);
			if (!sched_setaffinity(0, sizeof(set), &set))
				t.migrations++;
		}
		maybe_request_trap(&t, i);
		switch (i % 3) {
		case 0:
			do {
				idx = index_now();
				if (mode == RSEQ_PERCPU_CPU_ID && (i & 1))
					ret = rseq_addv(&slots[idx].count, 1, idx);
				else
					ret = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode,
								       &slots[idx].count, 1, idx);
				count(&t, ret);
			} while (ret);
			break;
		case 1:
			do {
				idx = index_now();
				intptr_t old = RSEQ_READ_ONCE(slots[idx].seq);

				ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode,
								&slots[idx].seq, old, old + 1, idx);
				count(&t, ret);
			} while (ret);
			break;
		default:
			do {
				idx = index_now();
				intptr_t old = RSEQ_READ_ONCE(slots[idx].mseq);

				ret = rseq_load_cbne_memcpy_store__ptr(i & 1 ? RSEQ_MO_RELEASE : RSEQ_MO_RELAXED,
								       mode, &slots[idx].mseq, old,
								       slots[idx].buf, mine, COPY,
								       old + 1, idx);
				count(&t, ret);
			} while (ret);
			break;
		}
#ifdef ASM_HOOKS
		/* The point inside a section never passed more often than
		 * the one before it (points 2 and 3 of every family). */
		{
			unsigned long h1 = hits_1 - prev[1], h2 = hits_2 - prev[2], h3 = hits_3 - prev[3];

			if (h2 > h1 || h3 > h2)
				t.inside_violations++;
			prev[1] = hits_1;
			prev[2] = hits_2;
			prev[3] = hits_3;
		}
#endif
	}
	(void)prev;
#ifdef ASM_HOOKS
	t.hits[1] = hits_1;
	t.hits[2] = hits_2;
	t.hits[3] = hits_3;
	t.hits[4] = hits_4;
	t.hits[5] = hits_5;
	t.hits[6] = hits_6;
#endif
	t.c_hits = c_hits;
	t.c_raised = c_raised;
	t.failed = failed;
	t.usr1_seen = usr1_seen;
	t.traps = traps;
	t.traps_fixed = traps_fixed;
	t.registered = rseq_registered();

	pthread_mutex_lock(&totals_lock);
	all.attempts += t.attempts;
	all.commits += t.commits;
	all.cmpfails += t.cmpfails;
	all.aborts += t.aborts;
	for (int n = 0; n < NPOINTS; n++)
		all.hits[n] += t.hits[n];
	all.inside_violations += t.inside_violations;
	all.c_hits += t.c_hits;
	all.c_raised += t.c_raised;
	all.failed += t.failed;
	all.usr1_seen += t.usr1_seen;
	all.trap_requests += t.trap_requests;
	all.traps += t.traps;
	all.traps_fixed += t.traps_fixed;
	all.migrations += t.migrations;
	if (!t.registered)
		all.registered = false;
	pthread_mutex_unlock(&totals_lock);
	return NULL;
}

static void run(enum rseq_percpu_mode m)
{
	const char *name = m == RSEQ_PERCPU_MM_CID ? "mm_cid" : "cpu_id";
	pthread_t *tid = calloc((size_t)nr_threads, sizeof(*tid));
	intptr_t count = 0, seq = 0, mseq = 0;
	const unsigned long reps = (unsigned long)nr_threads * REPS;

	if (!tid)
		bail_out("out of memory");
	mode = m;
	memset(&all, 0, sizeof(all));
	all.registered = true;
	memset(slots, 0, (size_t)max_cpus * sizeof(*slots));
	for (long i = 0; i < nr_threads; i++)
		if (pthread_create(&tid[i], NULL, worker, (void *)i))
			bail_out("pthread_create failed");
	for (int i = 0; i < nr_threads; i++)
		pthread_join(tid[i], NULL);
	free(tid);
	for (int c = 0; c < max_cpus; c++) {
		count += slots[c].count;
		seq += slots[c].seq;
		mseq += slots[c].mseq;
	}
	diag("%s: %lu attempts, %lu commits, %lu compare failures, %lu aborts; "
	     "asm points 1-6: %lu %lu %lu %lu %lu %lu; C point 9: %lu; "
	     "SIGUSR1 %lu raised / %lu seen; int3 %lu requested / %lu trapped / %lu aborted; "
	     "%lu migrations", name, all.attempts, all.commits, all.cmpfails, all.aborts,
	     all.hits[1], all.hits[2], all.hits[3], all.hits[4], all.hits[5], all.hits[6],
	     all.c_hits, all.c_raised, all.usr1_seen, all.trap_requests, all.traps,
	     all.traps_fixed, all.migrations);

	ok(count == (intptr_t)reps && seq == (intptr_t)reps && mseq == (intptr_t)reps,
	   "%s: exact totals (%ld %ld %ld, expected %lu each)", name, (long)count, (long)seq,
	   (long)mseq, reps);
	ok(all.commits == 3 * reps, "%s: one commit per operation (%lu)", name, all.commits);
	ok(all.usr1_seen == all.c_raised, "%s: every SIGUSR1 raised was handled", name);
	ok(all.registered, "%s: every worker registered (automatically)", name);
	if (INLINE_SECTIONS) {
		ok(all.c_hits == all.attempts,
		   "%s: RSEQ_INJECT_C(9) ran once per attempt (%lu / %lu)", name, all.c_hits,
		   all.attempts);
		ok(all.c_raised > 0, "%s: RSEQ_INJECT_C raised signals (%lu)", name, all.c_raised);
		ok(all.failed == all.aborts && all.aborts > 0,
		   "%s: RSEQ_INJECT_FAILED counted every abort (%lu / %lu, nonzero)", name,
		   all.failed, all.aborts);
	} else {
		ok(all.c_hits == 0 && all.failed == 0,
		   "%s: RSEQ_NO_INLINE: the C hooks never ran (%lu %lu)", name, all.c_hits,
		   all.failed);
		skip(2, "RSEQ_NO_INLINE: the library's sections have no injection points");
	}
#ifdef ASM_HOOKS
	if (INLINE_SECTIONS) {
		/* Every family passes point 1 once per attempt; the point right
		 * after the commit once per commit: 4 for load_add_store, 5 for
		 * load_cbne_store, 6 for load_cbne_memcpy_store (whose points 4
		 * and 5 are inside its section). */
		ok(all.hits[1] == all.attempts, "%s: asm point 1 once per attempt (%lu / %lu)", name,
		   all.hits[1], all.attempts);
		ok(all.hits[6] == reps, "%s: point 6 (after the memcpy commit) once per commit (%lu)",
		   name, all.hits[6]);
		ok(all.hits[4] >= reps && all.hits[5] >= reps && all.hits[5] - reps <= all.hits[4] - reps,
		   "%s: points 4 and 5 at least once per commit of their families", name);
		ok(all.inside_violations == 0 && all.hits[2] <= all.hits[1] && all.hits[3] <= all.hits[2] &&
		   all.hits[3] > 0,
		   "%s: inside points never passed more often than the point before (%lu violations)",
		   name, all.inside_violations);
		ok(all.trap_requests > 0 && all.traps == all.trap_requests,
		   "%s: every int3 requested inside a section ran (%lu / %lu)", name, all.traps,
		   all.trap_requests);
		ok(all.traps_fixed == all.traps && all.aborts >= all.traps,
		   "%s: every int3 inside a section aborted it (%lu of %lu, %lu aborts)", name,
		   all.traps_fixed, all.traps, all.aborts);
	} else {
		ok(all.hits[1] + all.hits[2] + all.hits[3] + all.traps == 0,
		   "%s: RSEQ_NO_INLINE: the asm hooks never ran", name);
		skip(5, "RSEQ_NO_INLINE: the library's sections have no injection points");
	}
#else
	skip(6, "the test's asm hooks are x86 code");
#endif
}

#define TESTS_PER_MODE 13

int main(void)
{
	struct sigaction sa;
	cpu_set_t set;
	bool mm_cid;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		bail_out("sigaction(SIGUSR1)");
	sa.sa_handler = NULL;
	sa.sa_sigaction = on_trap;
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGTRAP, &sa, NULL))
		bail_out("sigaction(SIGTRAP)");

	plan(2 + 2 * TESTS_PER_MODE);
	ok(rseq_init() == RSEQ_INIT_OK, "rseq_init() returns RSEQ_INIT_OK");
	if (!rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL)) {
		skip(1 + 2 * TESTS_PER_MODE, "rseq not available");
		return exit_status();
	}
	ok(rseq_registered(), "rseq_registered(): the main thread is registered after rseq_init()");

	max_cpus = rseq_get_max_nr_cpus();
	if (sched_getaffinity(0, sizeof(set), &set))
		bail_out("sched_getaffinity");
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			allowed[nr_cpus_allowed++] = c;
	nr_threads = 6 * nr_cpus_allowed;
	slots = zalloc_aligned((size_t)max_cpus * sizeof(*slots));

	mm_cid = rseq_mm_cid_available();
	run(RSEQ_PERCPU_CPU_ID);
	if (mm_cid)
		run(RSEQ_PERCPU_MM_CID);
	else
		skip(TESTS_PER_MODE, "mm_cid not available");
	free(slots);
	return exit_status();
}
