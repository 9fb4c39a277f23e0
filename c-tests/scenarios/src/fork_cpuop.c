/* SPDX-License-Identifier: MIT */
/*
 * fork() while other threads are inside cpu-ops holding CPUs' ownership.
 *
 * Parent: W workers (-w, default 3) run cpu-ops on every CPU back to back
 * (long ones too: a 4096-byte memcpy in a vector), percpu_* and rseq ops,
 * so that at any moment some CPU's ownership word is held. The main
 * thread and a forker thread fork (-n children each, default 40); one
 * child in 4 execs this program again (--child) instead.
 *
 * Each child (guarded by alarm(): a deadlock kills it with SIGALRM) uses
 * every API: rseq ops on its current CPU (exact count), cpu_op_addv,
 * cpu_opv, percpu_addv (CPU_ID and MM_CID) and cpu_op_fence on every
 * possible CPU, every cpu_op_* helper on every CPU,
 * rseq_register/unregister, a new thread doing the same, and
 * cpu_op_get_counters; it exits with a bit mask of what failed. The parent
 * asserts that every child exited 0 and that its own totals are exact.
 */
#include "fault_common.h"

#include <sys/wait.h>

#define CHILD_ALARM 20

enum {
	F_RSEQ = 1 << 0,	/* rseq ops on the current CPU */
	F_CPUOP = 1 << 1,	/* cpu_op_addv / cpu_opv / fence on every CPU */
	F_PERCPU = 1 << 2,	/* percpu_addv on every CPU, both modes */
	F_HELPERS = 1 << 3,	/* every helper on every CPU */
	F_REG = 1 << 4,		/* register / unregister */
	F_THREAD = 1 << 5,	/* a new thread doing the same */
	F_COUNTERS = 1 << 6,	/* cpu_op_get_counters */
	F_EXEC = 1 << 7,	/* exec failed */
};

static const char *const bit_name[8] = {
	"rseq ops", "cpu_op on every CPU", "percpu_* on every CPU", "cpu_op_* helpers",
	"registration", "a new thread", "cpu_op_get_counters", "exec",
};

static int opt_workers = 3, opt_forks = 40;
static atomic_int forks_while_owned, forks_total;

/* Runs before the library's own prepare handler (registered later,
 * pthread_atfork runs prepare handlers in reverse order): samples whether
 * some cpu-op holds a CPU at the moment fork() starts. */
static void prepare_sample(void)
{
	int owned = 0;

	for (int c = 0; c < fc_ncpus; c++)
		if (__atomic_load_n(rseq_cpu_op_owner_word(c, RSEQ_CPU_OP_WORD_CPU_ID), __ATOMIC_RELAXED))
			owned = 1;
	atomic_fetch_add(&forks_total, 1);
	atomic_fetch_add(&forks_while_owned, owned);
}
static atomic_int stop;
static char *self_exe;
static intptr_t *ccount;	/* child's own counters, one per CPU */

/* ---- the child ----------------------------------------------------- */

static int child_rseq(void)
{
	long done = 0;

	memset(ccount, 0, sizeof(intptr_t) * 16 * (size_t)fc_ncpus);
	for (long aborts = 0; done < 1000 && aborts < 1000000; ) {
		int cpu = (int)rseq_cpu_start();

		if (rseq_addv(&ccount[cpu * 16], 1, cpu) == 0)
			done++;
		else
			aborts++;
	}
	for (long i = 0; i < 1000; i++) {
		int cpu;

		do
			cpu = (int)rseq_cpu_start();
		while (rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &ccount[cpu * 16], 1, cpu));
	}
	{
		long s = 0;

		for (int c = 0; c < fc_ncpus; c++)
			s += ccount[c * 16];
		return done == 1000 && s == 2000 ? 0 : F_RSEQ;
	}
}

static int child_cpuop(void)
{
	int fail = 0;

	for (int c = 0; c < fc_ncpus; c++) {
		intptr_t v = 0;
		struct cpu_op op[2];

		memset(op, 0, sizeof(op));
		op[0].op = CPU_ADD_OP;
		op[0].len = sizeof(intptr_t);
		op[0].u.arithmetic_op.p = (uintptr_t)&v;
		op[0].u.arithmetic_op.count = 10;
		op[1].op = CPU_MB_OP;
		if (cpu_op_addv(&v, 1, c) || cpu_opv(op, 2, c, 0) || cpu_op_fence(c) || v != 11)
			fail |= F_CPUOP;
		if (cpu_opv(op, 1, c, CPU_OP_VEC_FLAG_MM_CID) || cpu_op_fence_mode(RSEQ_PERCPU_MM_CID, c) || v != 21)
			fail |= F_CPUOP;
	}
	return fail;
}

static int child_percpu(void)
{
	int fail = 0;

	for (int c = 0; c < fc_ncpus; c++) {
		intptr_t v = 0, v2 = 0;

		for (int i = 0; i < 100; i++) {
			if (percpu_addv(&v, 1, c))
				fail |= F_PERCPU;
			if (rseq_mm_cid_available() && percpu_addv_mode(RSEQ_PERCPU_MM_CID, &v2, 1, c))
				fail |= F_PERCPU;
		}
		if (v != 100 || (rseq_mm_cid_available() && v2 != 100))
			fail |= F_PERCPU;
		if (percpu_cmpeqv_storev(&v, 100, 5, c) || v != 5)
			fail |= F_PERCPU;
	}
	/* The current CPU, through rseq. */
	{
		intptr_t v = 0;

		for (int i = 0; i < 1000; i++)
			if (percpu_addv(&v, 1, percpu_current_cpu()))
				fail |= F_PERCPU;
		if (v != 1000)
			fail |= F_PERCPU;
	}
	return fail;
}

static int child_helpers(void)
{
	int fail = 0;

	for (int c = 0; c < fc_ncpus; c++) {
		intptr_t v = 1, v2 = 2, load = 0, node[2] = { 0, 77 };
		intptr_t head = (intptr_t)node;
		uint64_t x = 5, e = 5, old = 0, n = 9;
		char src[64], dst[64];

		memset(src, 'x', sizeof(src));
		memset(dst, 0, sizeof(dst));
		if (cpu_op_cmpxchg(&x, &e, &old, &n, 8, c) || x != 9 || old != 5)
			fail |= F_HELPERS;
		if (cpu_op_add(&x, 1, 8, c) || cpu_op_add_release(&x, 1, 8, c) || x != 11)
			fail |= F_HELPERS;
		if (cpu_op_cmpeqv_storev(&v, 1, 3, c) || v != 3)
			fail |= F_HELPERS;
		if (cpu_op_cmpeqv_storev_storev(&v, 3, &v2, 4, 5, c) || v != 5 || v2 != 4)
			fail |= F_HELPERS;
		if (cpu_op_cmpeqv_storev_storev_release(&v, 5, &v2, 6, 7, c) || v != 7 || v2 != 6)
			fail |= F_HELPERS;
		if (cpu_op_cmpeqv_cmpeqv_storev(&v, 7, &v2, 6, 8, c) || v != 8)
			fail |= F_HELPERS;
		if (cpu_op_cmpeqv_memcpy_storev(&v, 8, dst, src, sizeof(dst), 9, c) || v != 9 || memcmp(dst, src, sizeof(dst)))
			fail |= F_HELPERS;
		if (cpu_op_cmpeqv_memcpy_storev_release(&v, 9, dst, src, 8, 10, c) || v != 10)
			fail |= F_HELPERS;
		if (cpu_op_cmpnev_storeoffp_load(&head, 0, 0, &load, c) || load != (intptr_t)node || head != 0)
			fail |= F_HELPERS;
	}
	return fail;
}

static int child_registration(void)
{
	int fail = 0;

	for (int i = 0; i < 10; i++) {
		if (rseq_register_current_thread())
			fail |= F_REG;
		if (rseq_unregister_current_thread())
			fail |= F_REG;
	}
	/* Registered again (automatically, or by glibc) on first use. */
	(void)rseq_current_cpu();
	{
		intptr_t v = 0;
		int cpu;

		for (long aborts = 0; aborts < 1000000; aborts++) {
			cpu = (int)rseq_cpu_start();
			if (rseq_addv(&v, 1, cpu) == 0)
				break;
		}
		if (v != 1 || rseq_current_cpu_raw() < 0)
			fail |= F_REG;
	}
	return fail;
}

static void *child_thread(void *arg)
{
	int *res = arg;

	*res = child_rseq() | child_cpuop() | child_percpu();
	return NULL;
}

static int child_checks(void)
{
	int fail = 0, tres = -1;
	pthread_t t;
	struct cpu_op_counters c;

	alarm(CHILD_ALARM);
	ccount = calloc((size_t)fc_ncpus * 16, sizeof(intptr_t));
	if (!ccount)
		return 0xff;
	fail |= child_rseq();
	fail |= child_cpuop();
	fail |= child_percpu();
	fail |= child_helpers();
	fail |= child_registration();
	if (pthread_create(&t, NULL, child_thread, &tres) || pthread_join(t, NULL) || tres != 0)
		fail |= F_THREAD;
	if (cpu_op_get_counters(&c, sizeof(c)) || c.vectors == 0)
		fail |= F_COUNTERS;
	return fail;
}

/* ---- the parent ------------------------------------------------------ */

static uint8_t big_src[4096], big_dst[4096] __attribute__((aligned(64)));

static void *worker(void *arg)
{
	fc_rng = (uint32_t)(uintptr_t)arg * 2654435761u + 3;
	while (!atomic_load(&stop)) {
		uint32_t r = fc_rand();

		if (r % 4 == 0) {
			/* A long vector: copy 4 KiB and count, on any CPU. */
			int cpu = fc_random_cpu();
			struct cpu_op op[2];

			memset(op, 0, sizeof(op));
			op[0].op = CPU_MEMCPY_OP;
			op[0].len = sizeof(big_dst);
			op[0].u.memcpy_op.dst = (uintptr_t)big_dst;
			op[0].u.memcpy_op.src = (uintptr_t)big_src;
			op[1].op = CPU_ADD_OP;
			op[1].len = sizeof(intptr_t);
			op[1].u.arithmetic_op.p = (uintptr_t)&fc_counts[cpu].v;
			op[1].u.arithmetic_op.count = 1;
			if (cpu_opv(op, 2, cpu, 0) == 0)
				atomic_fetch_add(&fc_expected, 1);
			else
				fc_error("cpu_opv failed");
		} else {
			fc_op((enum fc_kind)(r % FC_NKINDS), 0);
		}
	}
	return NULL;
}

struct fork_stats {
	int forks, execs, ok, signalled, bits;
	int sig;
};

static void do_fork(struct fork_stats *s, int exec_it)
{
	pid_t pid;
	int status;

	pid = fork();
	if (pid < 0) {
		s->bits |= 0x100;
		return;
	}
	if (pid == 0) {
		if (exec_it) {
			char *args[] = { self_exe, (char *)"--child", NULL };

			alarm(CHILD_ALARM);
			execv(self_exe, args);
			_exit(F_EXEC);
		}
		_exit(child_checks());
	}
	s->forks++;
	s->execs += exec_it;
	if (waitpid(pid, &status, 0) != pid) {
		s->bits |= 0x200;
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		s->ok++;
	} else if (WIFSIGNALED(status)) {
		s->signalled++;
		s->sig = WTERMSIG(status);
	} else {
		s->bits |= WEXITSTATUS(status);
	}
}

static void *forker(void *arg)
{
	struct fork_stats *s = arg;

	fc_rng = 4242;
	for (int i = 0; i < opt_forks; i++) {
		do_fork(s, i % 4 == 1);
		fc_op(FC_CPUOP_ADD, 0);
	}
	return NULL;
}

static void report(const char *who, const struct fork_stats *s)
{
	char bits[512] = "";

	for (int b = 0; b < 8; b++)
		if (s->bits & (1 << b)) {
			strncat(bits, " ", sizeof(bits) - strlen(bits) - 1);
			strncat(bits, bit_name[b], sizeof(bits) - strlen(bits) - 1);
			strncat(bits, ";", sizeof(bits) - strlen(bits) - 1);
		}
	ok(s->forks == opt_forks && s->ok == s->forks,
	   "%s: %d children (%d exec'd) all used every API without deadlock: %d ok, %d killed by a signal%s%s, failures:%s%s",
	   who, s->forks, s->execs, s->ok, s->signalled, s->signalled ? " (last " : "",
	   s->signalled ? (s->sig == SIGALRM ? "SIGALRM: deadlock)" : strsignal(s->sig)) : "",
	   bits[0] ? bits : " none", s->bits & 0x300 ? " (fork/waitpid error)" : "");
}

int main(int argc, char **argv)
{
	struct fork_stats main_stats = { 0 }, thread_stats = { 0 };
	struct cpu_op_counters before, after;
	pthread_t *workers, fk;
	double t0;
	int c;

	fc_init();
	if (argc > 1 && !strcmp(argv[1], "--child"))
		return child_checks();
	while ((c = getopt(argc, argv, "w:n:")) != -1) {
		switch (c) {
		case 'w': opt_workers = atoi(optarg); break;
		case 'n': opt_forks = atoi(optarg); break;
		default: bail_out("usage: %s [-w workers] [-n forks]", argv[0]);
		}
	}
	self_exe = realpath("/proc/self/exe", NULL);
	if (!self_exe)
		bail_out("realpath(/proc/self/exe)");
	plan_no_plan();
	fc_watchdog(300);
	pthread_atfork(prepare_sample, NULL, NULL);
	memset(big_src, 0xab, sizeof(big_src));
	diag("possible cpus %d, glibc owns registration %d, %d workers, %d forks from the main thread and %d from another",
	     fc_ncpus, rseq_available(RSEQ_AVAILABLE_QUERY_LIBC), opt_workers, opt_forks, opt_forks);
	fc_get_counters(&before);
	t0 = fc_now();
	workers = calloc((size_t)opt_workers, sizeof(*workers));
	for (int i = 0; i < opt_workers; i++)
		if (pthread_create(&workers[i], NULL, worker, (void *)(uintptr_t)(i + 1)))
			bail_out("pthread_create");
	if (pthread_create(&fk, NULL, forker, &thread_stats))
		bail_out("pthread_create");
	for (int i = 0; i < opt_forks; i++) {
		do_fork(&main_stats, i % 4 == 3);
		fc_op(FC_RSEQ_ADD, 0);
	}
	pthread_join(fk, NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < opt_workers; i++)
		pthread_join(workers[i], NULL);
	fc_get_counters(&after);
	diag("%.2f s", fc_now() - t0);
	fc_report_counters(&before, &after);
	report("forks from the main thread", &main_stats);
	report("forks from a second thread", &thread_stats);
	ok(fc_sum() == atomic_load(&fc_expected) && atomic_load(&fc_errors) == 0,
	   "parent: exact total %ld == %ld, %ld errors (%s)", fc_sum(), atomic_load(&fc_expected),
	   atomic_load(&fc_errors), fc_last_error);
	diag("%d of %d forks started while a cpu-op held a CPU", atomic_load(&forks_while_owned), atomic_load(&forks_total));
	ok(atomic_load(&forks_while_owned) > 0, "some forks started while a cpu-op held a CPU (%d of %d)",
	   atomic_load(&forks_while_owned), atomic_load(&forks_total));
	ok(after.vectors - before.vectors > (unsigned long long)opt_forks,
	   "parent workers ran cpu-ops meanwhile (%llu)", (unsigned long long)(after.vectors - before.vectors));
	return exit_status();
}
