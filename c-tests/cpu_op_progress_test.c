/* SPDX-License-Identifier: MIT */
/*
 * Progress guarantees of the percpu_* operations and cpu-ops, where rseq
 * critical sections cannot complete or cannot reach the data:
 *
 *   single-step  a child traced with PTRACE_SINGLESTEP (gdb's stepi) from
 *                a SIGSTOP on runs percpu_addv and a percpu list pop/push
 *                loop: every rseq attempt aborts (each step is a context
 *                switch), every operation falls back to a cpu-op and the
 *                child finishes with exact results
 *   seccomp      the test re-executes itself under a seccomp filter that
 *                answers the rseq system call with ENOSYS, then EPERM (so
 *                glibc's registration fails too): rseq is reported
 *                unavailable with that errno, nothing is registered, rseq
 *                operations abort, and 6 threads per CPU doing percpu_addv,
 *                percpu list pop/push and cpu_op_cmpeqv_storev increments
 *                end with exact totals
 *   affinity     a thread restricted to one CPU runs cpu-ops on every
 *                other possible CPU (outside its mask) while threads
 *                pinned to those CPUs run rseq increments on the same
 *                counters: the cpu-ops succeed without leaving the mask,
 *                and the totals are exact
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>
#include <rseq/percpu-op.h>

#include "tap.h"

#define SLOT		128
#define ALIGNED		__attribute__((aligned(SLOT)))
#define READ_ONCE(x)	__atomic_load_n(&(x), __ATOMIC_RELAXED)

/* Single-step: ~950 instructions per loop iteration (3 operations, each
 * an aborted rseq attempt plus a cpu-op), one ptrace round trip per
 * instruction (~20 us on an idle 2-CPU VM, several times more under
 * load): 64 iterations take 1-4 s. */
/*
 * cpu_op_progress_test [DIVISOR]: every part's size divided by DIVISOR
 * (default 1), for emulated machines (c-tests/vm): about 1 ms per step
 * under TCG, and contended cpu-ops far slower than natively. The parent
 * passes it to its re-executed seccomp children in the environment.
 */
static int divisor = 1;
#define DIVISOR_ENV	"CPU_OP_PROGRESS_DIVISOR"
#define SCALED(n)	((n) / divisor > 0 ? (n) / divisor : 1)
#define SS_ITERATIONS	SCALED(64)
#define SS_NODES	8
#define SS_MAX_STEPS	50000000L
#define SS_DEADLINE_S	120

#define SECCOMP_REPS	SCALED(3000)
#define SECCOMP_NODES_PER_CPU 16

#define AFFINITY_OPS	SCALED(30000)	/* cpu-ops by the restricted thread, at least */
#define AFFINITY_OVERLAP 1000	/* ... and on until this many rseq increments
				 * ran beside them (or the deadline) */
#define AFFINITY_DEADLINE_NS 5000000000LL
#define AFFINITY_RSEQ	SCALED(30000)	/* rseq increments per pinned thread, at least */
#define MAX_ABORTS	20000000L

struct word {
	intptr_t v;
} ALIGNED;

struct node {
	struct node *next;
	intptr_t data;
	long seen;
};

#define NEXT_OFF ((off_t)offsetof(struct node, next))

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct word *alloc_words(int n)
{
	struct word *w = aligned_alloc(SLOT, (size_t)n * sizeof(*w));

	if (!w)
		bail_out("out of memory");
	memset(w, 0, (size_t)n * sizeof(*w));
	return w;
}

static int pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

/* ------------------------------------------------------------------ */
/* a. Single-stepping */

struct ss_result {
	long counter;
	long nodes_found;	/* distinct nodes on the list at the end */
	long bad_nodes;		/* duplicates or foreign pointers */
	intptr_t data_sum;
	long errors;
	uint64_t fallbacks, aborts, vectors;
};

static struct node ss_nodes[SS_NODES];
static intptr_t ss_head, ss_counter;

static void ss_push(struct node *n, long *errors)
{
	for (;;) {
		intptr_t expect = READ_ONCE(ss_head);
		int ret;

		n->next = (struct node *)expect;
		ret = percpu_cmpeqv_storev(&ss_head, expect, (intptr_t)n, percpu_current_cpu());
		if (ret == 0)
			return;
		if (ret < 0 && errno != EAGAIN) {
			(*errors)++;
			return;
		}
	}
}

/* The loop under test; `ops` counts the percpu_* calls made. */
static void ss_loop(long iterations, long *errors, long *ops)
{
	for (long i = 0; i < iterations; i++) {
		intptr_t load = 0;
		int ret;

		do {
			ret = percpu_addv(&ss_counter, 1, percpu_current_cpu());
			(*ops)++;
		} while (ret < 0 && errno == EAGAIN);
		if (ret)
			(*errors)++;
		do {
			ret = percpu_cmpnev_storeoffp_load(&ss_head, 0, NEXT_OFF, &load, percpu_current_cpu());
			(*ops)++;
		} while (ret < 0 && errno == EAGAIN);
		if (ret) {
			(*errors)++;	/* the list is never empty */
			continue;
		}
		((struct node *)load)->data++;
		(*ops)++;
		ss_push((struct node *)load, errors);
	}
}

static void __attribute__((noreturn)) single_step_child(int wfd)
{
	struct ss_result r;
	struct cpu_op_counters before, after;
	long warm_errors = 0, warm_ops = 0, ops = 0;

	memset(&r, 0, sizeof(r));
	for (int i = 0; i < SS_NODES; i++) {
		ss_nodes[i].data = i + 1;
		ss_nodes[i].next = (struct node *)ss_head;
		ss_head = (intptr_t)&ss_nodes[i];
	}
	/* Warm up (lazy binding, registration), then start from zero. */
	ss_loop(2, &warm_errors, &warm_ops);
	for (int i = 0; i < SS_NODES; i++)
		ss_nodes[i].data = i + 1;
	ss_counter = 0;
	if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
		_exit(77);
	raise(SIGSTOP);

	/* From here on, every instruction is single-stepped. */
	cpu_op_get_counters(&before, sizeof(before));
	ss_loop(SS_ITERATIONS, &r.errors, &ops);
	cpu_op_get_counters(&after, sizeof(after));

	r.counter = ss_counter;
	for (intptr_t p = ss_head; p; p = (intptr_t)((struct node *)p)->next) {
		struct node *n = (struct node *)p;

		if (n < ss_nodes || n >= ss_nodes + SS_NODES || n->seen++ || r.nodes_found > SS_NODES) {
			r.bad_nodes++;
			break;
		}
		r.nodes_found++;
		r.data_sum += n->data;
	}
	r.fallbacks = after.fallbacks - before.fallbacks;
	r.aborts = after.rseq_aborts - before.rseq_aborts;
	r.vectors = after.vectors - before.vectors;
	r.errors += warm_errors;
	/* ops: 3 per iteration when nothing is retried. */
	if (ops != 3L * SS_ITERATIONS)
		r.errors++;
	if (write(wfd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(3);
	_exit(r.counter == SS_ITERATIONS && !r.errors && r.nodes_found == SS_NODES && !r.bad_nodes ? 0 : 1);
}

static void test_single_step(void)
{
	int pfd[2], st, sig = 0;
	long steps = 0, other_signals = 0;
	long long t0, deadline;
	struct ss_result r;
	pid_t pid;
	bool killed = false;
	/* Each node's data starts at i + 1 and is incremented once per pop. */
	intptr_t expect_sum = (intptr_t)SS_NODES * (SS_NODES + 1) / 2 + SS_ITERATIONS;

	if (pipe(pfd))
		bail_out("pipe: %s", strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0) {
		close(pfd[0]);
		single_step_child(pfd[1]);
	}
	close(pfd[1]);
	if (waitpid(pid, &st, 0) != pid)
		bail_out("waitpid: %s", strerror(errno));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		skip(4, "PTRACE_TRACEME refused (already traced?)");
		close(pfd[0]);
		return;
	}
	if (!WIFSTOPPED(st) || WSTOPSIG(st) != SIGSTOP)
		bail_out("single-step child did not stop (status 0x%x)", st);
	ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)(long)PTRACE_O_EXITKILL);
	t0 = now_ns();
	deadline = t0 + SS_DEADLINE_S * 1000000000LL;
	for (;;) {
		if (ptrace(PTRACE_SINGLESTEP, pid, NULL, (void *)(long)sig)) {
			/* EIO on the first step: the architecture has no
			 * single-step (riscv64: arch_has_single_step() is
			 * false; debuggers use breakpoints there). */
			if (errno == EIO && steps == 0) {
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				close(pfd[0]);
				skip(4, "the kernel has no PTRACE_SINGLESTEP on this architecture (EIO)");
				return;
			}
			bail_out("PTRACE_SINGLESTEP: %s", strerror(errno));
		}
		if (waitpid(pid, &st, 0) != pid)
			bail_out("waitpid: %s", strerror(errno));
		if (WIFEXITED(st) || WIFSIGNALED(st))
			break;
		steps++;
		sig = WSTOPSIG(st) == SIGTRAP ? 0 : WSTOPSIG(st);
		if (sig)
			other_signals++;
		if (steps > SS_MAX_STEPS || ((steps & 0xffff) == 0 && now_ns() > deadline)) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			killed = true;
			break;
		}
	}
	diag("single-step: %ld steps in %.2f s (%ld other signals)%s", steps, (double)(now_ns() - t0) / 1e9,
	     other_signals, killed ? ", child killed: no progress" : "");
	memset(&r, 0, sizeof(r));
	if (read(pfd[0], &r, sizeof(r)) != (ssize_t)sizeof(r))
		r.errors = -1;
	close(pfd[0]);
	diag("single-step child: counter %ld, %ld nodes (sum %ld), errors %ld, fallbacks %llu, rseq aborts %llu, vectors %llu",
	     r.counter, r.nodes_found, (long)r.data_sum, r.errors, (unsigned long long)r.fallbacks,
	     (unsigned long long)r.aborts, (unsigned long long)r.vectors);
	ok(!killed && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "single-step: the child completed under PTRACE_SINGLESTEP (%s %d)",
	   WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	ok(r.counter == SS_ITERATIONS && r.errors == 0,
	   "single-step: percpu_addv total exact (%ld of %d), no error", r.counter, SS_ITERATIONS);
	ok(r.nodes_found == SS_NODES && r.bad_nodes == 0 && r.data_sum == expect_sum,
	   "single-step: list intact: %ld nodes, data sum %ld (expected %d, %ld)",
	   r.nodes_found, (long)r.data_sum, SS_NODES, (long)expect_sum);
	ok(r.fallbacks == 3ULL * SS_ITERATIONS && r.aborts >= 3ULL * SS_ITERATIONS && r.vectors >= 3ULL * SS_ITERATIONS,
	   "single-step: every rseq attempt aborted and fell back to a cpu-op (%llu fallbacks of %d)",
	   (unsigned long long)r.fallbacks, 3 * SS_ITERATIONS);
}

/* ------------------------------------------------------------------ */
/* b. seccomp: rseq refused with ENOSYS or EPERM */

static int sc_max_cpus;
static struct word *sc_counters, *sc_cas, *sc_heads;
static struct node *sc_nodes;
static long sc_nr_nodes;

struct sc_worker {
	pthread_t thread;
	long percpu_calls;	/* percpu_* calls made (each must fall back) */
	long addv, cas, popped, empty;
	long errors;
};

static void *seccomp_worker(void *arg)
{
	struct sc_worker *w = arg;

	for (long i = 0; i < SECCOMP_REPS; i++) {
		intptr_t load = 0;
		int ret, c;

		/* percpu_addv */
		do {
			c = percpu_current_cpu();
			ret = percpu_addv(&sc_counters[c].v, 1, c);
			w->percpu_calls++;
		} while (ret < 0 && errno == EAGAIN);
		if (ret)
			w->errors++;
		else
			w->addv++;

		/* percpu list pop and push */
		do {
			c = percpu_current_cpu();
			ret = percpu_cmpnev_storeoffp_load(&sc_heads[c].v, 0, NEXT_OFF, &load, c);
			w->percpu_calls++;
		} while (ret < 0 && errno == EAGAIN);
		if (ret == 1) {
			w->empty++;
		} else if (ret) {
			w->errors++;
		} else {
			struct node *n = (struct node *)load;

			w->popped++;
			if (i % 8 == 0)
				sched_yield();
			for (;;) {
				intptr_t expect;

				c = percpu_current_cpu();
				expect = READ_ONCE(sc_heads[c].v);
				n->next = (struct node *)expect;
				ret = percpu_cmpeqv_storev(&sc_heads[c].v, expect, (intptr_t)n, c);
				w->percpu_calls++;
				if (ret == 0)
					break;
				if (ret < 0 && errno != EAGAIN) {
					w->errors++;
					break;
				}
			}
		}

		/* compare-and-store increment with cpu_op_cmpeqv_storev */
		for (;;) {
			intptr_t old;

			c = cpu_op_get_current_cpu();
			old = READ_ONCE(sc_cas[c].v);
			ret = cpu_op_cmpeqv_storev(&sc_cas[c].v, old, old + 1, c);
			if (ret == 0) {
				w->cas++;
				break;
			}
			if (ret != 1) {
				w->errors++;
				break;
			}
		}
	}
	return NULL;
}

/* The re-executed image, under the filter. */
static int seccomp_child(const char *which)
{
	int expect_err = !strcmp(which, "EPERM") ? EPERM : ENOSYS;
	int nproc = (int)sysconf(_SC_NPROCESSORS_ONLN), n, ret, err;
	bool avail;
	intptr_t v = 5, sum = 0, cas_sum = 0, data_sum = 0, expect_data = 0;
	struct sc_worker *ws;
	struct cpu_op_counters before, after;
	long calls = 0, addv = 0, cas = 0, errors = 0, lost = 0, dup = 0, foreign = 0;

	alarm(60);
	plan_no_plan();
	errno = 0;
	avail = rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL);
	err = errno;
	ok(!avail && err == expect_err, "rseq_available(KERNEL) is false with errno %s (errno %d)", which, err);
	ok(!rseq_available(RSEQ_AVAILABLE_QUERY_LIBC), "rseq_available(LIBC) is false: glibc's registration failed");
	errno = 0;
	ret = rseq_register_current_thread();
	err = errno;
	ok(ret == -1 && err == expect_err, "rseq_register_current_thread fails with %s (ret %d, errno %d)", which, ret, err);
	ok(rseq_size == 0, "rseq_size is 0 (%u): nothing could register", rseq_size);
	ok(rseq_current_cpu_raw() < 0, "rseq_current_cpu_raw() < 0 (%d)", (int)rseq_current_cpu_raw());
	ret = rseq_addv(&v, 1, (int)rseq_cpu_start());
	ok(ret == -1 && v == 5, "rseq_addv on cpu_id_start aborts (ret %d, v %ld)", ret, (long)v);
	ret = rseq_addv(&v, 1, percpu_current_cpu());
	ok(ret == -1 && v == 5, "rseq_addv on the current cpu aborts (ret %d, v %ld)", ret, (long)v);
	ret = percpu_addv(&v, 1, percpu_current_cpu());
	ok(ret == 0 && v == 6, "percpu_addv completes through a cpu-op (ret %d, v %ld)", ret, (long)v);

	if (nproc < 1)
		nproc = 1;
	n = 6 * nproc;
	sc_max_cpus = rseq_get_max_nr_cpus();
	sc_counters = alloc_words(sc_max_cpus);
	sc_cas = alloc_words(sc_max_cpus);
	sc_heads = alloc_words(sc_max_cpus);
	sc_nr_nodes = (long)SECCOMP_NODES_PER_CPU * sc_max_cpus;
	sc_nodes = calloc((size_t)sc_nr_nodes, sizeof(*sc_nodes));
	ws = calloc((size_t)n, sizeof(*ws));
	if (!sc_nodes || !ws)
		bail_out("out of memory");
	for (long i = 0; i < sc_nr_nodes; i++) {
		int c = (int)(i % sc_max_cpus);

		sc_nodes[i].data = i + 1;
		expect_data += i + 1;
		sc_nodes[i].next = (struct node *)sc_heads[c].v;
		sc_heads[c].v = (intptr_t)&sc_nodes[i];
	}
	cpu_op_get_counters(&before, sizeof(before));
	for (int i = 0; i < n; i++)
		if (pthread_create(&ws[i].thread, NULL, seccomp_worker, &ws[i]))
			bail_out("pthread_create");
	for (int i = 0; i < n; i++) {
		pthread_join(ws[i].thread, NULL);
		calls += ws[i].percpu_calls;
		addv += ws[i].addv;
		cas += ws[i].cas;
		errors += ws[i].errors;
	}
	cpu_op_get_counters(&after, sizeof(after));
	for (int c = 0; c < sc_max_cpus; c++) {
		long steps = 0;

		sum += sc_counters[c].v;
		cas_sum += sc_cas[c].v;
		for (intptr_t p = sc_heads[c].v; p; p = (intptr_t)((struct node *)p)->next) {
			struct node *nd = (struct node *)p;

			if (nd < sc_nodes || nd >= sc_nodes + sc_nr_nodes || ++steps > sc_nr_nodes) {
				foreign++;
				break;
			}
			nd->seen++;
		}
	}
	for (long i = 0; i < sc_nr_nodes; i++) {
		if (!sc_nodes[i].seen)
			lost++;
		else if (sc_nodes[i].seen > 1)
			dup++;
		data_sum += sc_nodes[i].data * sc_nodes[i].seen;
	}
	diag("%d threads: %ld percpu calls, %ld adds, %ld cas; cpu_op: %llu fallbacks, %llu vectors, fences none %llu / own %llu / membarrier %llu / migrate %llu",
	     n, calls, addv, cas, (unsigned long long)(after.fallbacks - before.fallbacks),
	     (unsigned long long)(after.vectors - before.vectors),
	     (unsigned long long)(after.fences_none - before.fences_none),
	     (unsigned long long)(after.fences_own_cpu - before.fences_own_cpu),
	     (unsigned long long)(after.fences_membarrier_cpu - before.fences_membarrier_cpu),
	     (unsigned long long)(after.fences_migrate - before.fences_migrate));
	ok(errors == 0, "threads: no operation failed (%ld)", errors);
	ok(sum == (intptr_t)n * SECCOMP_REPS && addv == (long)n * SECCOMP_REPS,
	   "percpu_addv: exact total %ld (expected %ld)", (long)sum, (long)n * SECCOMP_REPS);
	ok(cas_sum == (intptr_t)n * SECCOMP_REPS, "cpu_op_cmpeqv_storev increments: exact total %ld (expected %ld)",
	   (long)cas_sum, (long)n * SECCOMP_REPS);
	ok(foreign == 0 && lost == 0 && dup == 0 && data_sum == expect_data,
	   "percpu lists: every node found once (%ld lost, %ld duplicated, %ld foreign), data sum %ld (expected %ld)",
	   lost, dup, foreign, (long)data_sum, (long)expect_data);
	ok(after.fallbacks - before.fallbacks == (uint64_t)calls,
	   "every percpu_* call fell back to a cpu-op (%llu of %ld)",
	   (unsigned long long)(after.fallbacks - before.fallbacks), calls);
	ok(rseq_current_cpu_raw() < 0 && rseq_size == 0, "still nothing registered at the end");
	free(ws);
	free(sc_nodes);
	return exit_status();
}

#if defined(__x86_64__)
# define AUDIT_ARCH_SELF AUDIT_ARCH_X86_64
#elif defined(__i386__)
# define AUDIT_ARCH_SELF AUDIT_ARCH_I386
#elif defined(__aarch64__)
# define AUDIT_ARCH_SELF AUDIT_ARCH_AARCH64
#endif

static void install_rseq_filter(int err)
{
	struct sock_filter filter[] = {
#ifdef AUDIT_ARCH_SELF
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_SELF, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
#endif
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rseq, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned int)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
		.filter = filter,
	};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		_exit(120);
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		_exit(121);
}

static void test_seccomp(int err, const char *name)
{
	int pfd[2], st;
	pid_t pid;
	FILE *in;
	char line[1024];
	long oks = 0, not_oks = 0, planned = -1;

	if (pipe(pfd))
		bail_out("pipe: %s", strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0) {
		char *args[] = { (char *)"cpu_op_progress_test", (char *)"--seccomp-child", (char *)name, NULL };

		close(pfd[0]);
		dup2(pfd[1], STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO);
		close(pfd[1]);
		install_rseq_filter(err);
		execv("/proc/self/exe", args);
		_exit(127);
	}
	close(pfd[1]);
	in = fdopen(pfd[0], "r");
	if (!in)
		bail_out("fdopen");
	while (fgets(line, sizeof(line), in)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "ok ", 3))
			oks++;
		else if (!strncmp(line, "not ok ", 7))
			not_oks++;
		else if (!strncmp(line, "1..", 3))
			planned = atol(line + 3);
		diag("  [seccomp %s] %s", name, line);
	}
	fclose(in);
	if (waitpid(pid, &st, 0) != pid)
		bail_out("waitpid: %s", strerror(errno));
	if (WIFEXITED(st) && (WEXITSTATUS(st) == 120 || WEXITSTATUS(st) == 121)) {
		skip(1, "seccomp filters unavailable");
		return;
	}
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 && not_oks == 0 && oks > 0 && oks == planned,
	   "seccomp (rseq -> %s): the re-executed test passed (%s %d, %ld ok, %ld not ok, plan %ld)", name,
	   WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), oks, not_oks, planned);
}

/* ------------------------------------------------------------------ */
/* c. Affinity: cpu-ops on CPUs outside the caller's mask */

static int af_max_cpus, af_home;
static struct word *af_counters;
static long *af_cpuop_done;		/* per CPU, by the restricted thread */
static long af_errors, af_left_home, af_mask_changed, af_ops;
static long af_overlap;			/* rseq increments beside the cpu-ops */
static int af_restricted_running;
static pthread_barrier_t af_start;

struct af_pinned {
	pthread_t thread;
	int cpu;
	long done, aborts, errors;
	long overlapped;	/* increments done while the cpu-ops ran */
};

static void *af_restricted(void *arg)
{
	cpu_set_t mask;
	int others = 0;
	long long deadline;

	(void)arg;
	if (pin_to(af_home))
		bail_out("sched_setaffinity(%d): %s", af_home, strerror(errno));
	for (int c = 0; c < af_max_cpus; c++)
		others += c != af_home;
	pthread_barrier_wait(&af_start);
	deadline = now_ns() + AFFINITY_DEADLINE_NS;
	for (long i = 0; i < AFFINITY_OPS ||
	     (__atomic_load_n(&af_overlap, __ATOMIC_RELAXED) < AFFINITY_OVERLAP && now_ns() < deadline); i++) {
		/* Round-robin over every possible CPU but the own one. */
		int c = (af_home + 1 + (int)(i % others)) % af_max_cpus;

		af_ops++;
		if (cpu_op_addv(&af_counters[c].v, 1, c) == 0)
			af_cpuop_done[c]++;
		else
			af_errors++;
		if (sched_getcpu() != af_home)
			af_left_home++;
		/* Back-to-back cpu-ops keep the target owned nearly all the
		 * time; leave the pinned threads a window now and then. */
		if (i % 16 == 0) {
			struct timespec ts = { 0, 5000 };

			nanosleep(&ts, NULL);
		}
	}
	__atomic_store_n(&af_restricted_running, 0, __ATOMIC_RELEASE);
	if (sched_getaffinity(0, sizeof(mask), &mask) || CPU_COUNT(&mask) != 1 || !CPU_ISSET(af_home, &mask))
		af_mask_changed++;
	return NULL;
}

static void *af_pinned_worker(void *arg)
{
	struct af_pinned *p = arg;

	if (pin_to(p->cpu))
		p->errors++;
	pthread_barrier_wait(&af_start);
	if (p->errors)
		return NULL;
	/* At least AFFINITY_RSEQ increments, and on until the cpu-ops end. */
	for (long i = 0; i < AFFINITY_RSEQ || __atomic_load_n(&af_restricted_running, __ATOMIC_ACQUIRE); i++) {
		long aborts = 0;
		bool during = __atomic_load_n(&af_restricted_running, __ATOMIC_ACQUIRE);

		for (;;) {
			/* Aborts unless on p->cpu and registered (the abort
			 * registers the thread when the library owns that). */
			if (rseq_addv(&af_counters[p->cpu].v, 1, p->cpu) == 0)
				break;
			p->aborts++;
			if (++aborts > MAX_ABORTS) {
				p->errors++;
				goto out;
			}
		}
		p->done++;
		if (during && __atomic_load_n(&af_restricted_running, __ATOMIC_ACQUIRE)) {
			p->overlapped++;
			__atomic_fetch_add(&af_overlap, 1, __ATOMIC_RELAXED);
		}
	}
out:
	return NULL;
}

static void test_affinity(void)
{
	cpu_set_t allowed;
	int list[CPU_SETSIZE], nr = 0, nr_pinned = 0, mismatch = 0;
	struct af_pinned *pinned;
	pthread_t restricted;
	struct cpu_op_counters before, after;
	long rseq_done = 0, cpuop_done = 0, aborts = 0, pinned_errors = 0, overlapped = 0;
	long *expect;
	long long t0 = now_ns();

	af_max_cpus = rseq_get_max_nr_cpus();
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		bail_out("sched_getaffinity: %s", strerror(errno));
	for (int c = 0; c < CPU_SETSIZE && c < af_max_cpus; c++)
		if (CPU_ISSET(c, &allowed))
			list[nr++] = c;
	if (af_max_cpus < 2 || nr < 2) {
		skip(6, "fewer than two usable CPUs");
		return;
	}
	af_home = list[0];
	af_counters = alloc_words(af_max_cpus);
	af_cpuop_done = calloc((size_t)af_max_cpus, sizeof(long));
	expect = calloc((size_t)af_max_cpus, sizeof(long));
	/* Two rseq threads pinned to each other usable CPU. */
	pinned = calloc((size_t)nr * 2, sizeof(*pinned));
	if (!af_cpuop_done || !expect || !pinned)
		bail_out("out of memory");
	for (int k = 1; k < nr; k++)
		for (int j = 0; j < 2; j++)
			pinned[nr_pinned++].cpu = list[k];
	af_restricted_running = 1;
	if (pthread_barrier_init(&af_start, NULL, (unsigned int)nr_pinned + 1))
		bail_out("pthread_barrier_init");
	cpu_op_get_counters(&before, sizeof(before));
	for (int i = 0; i < nr_pinned; i++)
		if (pthread_create(&pinned[i].thread, NULL, af_pinned_worker, &pinned[i]))
			bail_out("pthread_create");
	if (pthread_create(&restricted, NULL, af_restricted, NULL))
		bail_out("pthread_create");
	pthread_join(restricted, NULL);
	for (int i = 0; i < nr_pinned; i++) {
		pthread_join(pinned[i].thread, NULL);
		expect[pinned[i].cpu] += pinned[i].done;
		rseq_done += pinned[i].done;
		aborts += pinned[i].aborts;
		pinned_errors += pinned[i].errors;
		overlapped += pinned[i].overlapped;
	}
	pthread_barrier_destroy(&af_start);
	cpu_op_get_counters(&after, sizeof(after));
	for (int c = 0; c < af_max_cpus; c++) {
		expect[c] += af_cpuop_done[c];
		cpuop_done += af_cpuop_done[c];
		if (af_counters[c].v != expect[c]) {
			diag("cpu %d: counter %ld, expected %ld", c, (long)af_counters[c].v, expect[c]);
			mismatch++;
		}
	}
	diag("affinity: home cpu %d; %ld cpu-ops on other CPUs, %ld rseq increments (%ld during the cpu-ops, %ld aborts) by %d pinned threads; %.2f s",
	     af_home, cpuop_done, rseq_done, overlapped, aborts, nr_pinned, (double)(now_ns() - t0) / 1e9);
	diag("affinity: fences own %llu / membarrier cpu %llu / membarrier all %llu / migrate %llu / none %llu",
	     (unsigned long long)(after.fences_own_cpu - before.fences_own_cpu),
	     (unsigned long long)(after.fences_membarrier_cpu - before.fences_membarrier_cpu),
	     (unsigned long long)(after.fences_membarrier_all - before.fences_membarrier_all),
	     (unsigned long long)(after.fences_migrate - before.fences_migrate),
	     (unsigned long long)(after.fences_none - before.fences_none));
	ok(af_errors == 0 && cpuop_done == af_ops && af_ops >= AFFINITY_OPS,
	   "affinity: every cpu-op on a CPU outside the mask succeeded (%ld of %ld, %ld failed)",
	   cpuop_done, af_ops, af_errors);
	ok(af_left_home == 0 && af_mask_changed == 0,
	   "affinity: the restricted thread never left its CPU (%ld) and kept its mask", af_left_home);
	ok(pinned_errors == 0 && rseq_done >= (long)nr_pinned * AFFINITY_RSEQ,
	   "affinity: pinned threads completed their rseq increments (%ld)", rseq_done);
	ok(overlapped > 0, "affinity: rseq increments ran on those CPUs while the cpu-ops did (%ld)", overlapped);
	ok(mismatch == 0, "affinity: every counter is exact (cpu-ops + rseq increments)");
	ok(af_counters[af_home].v == 0, "affinity: the home CPU's counter was not touched");
	free(pinned);
	free(expect);
	free(af_cpuop_done);
	free(af_counters);
}

int main(int argc, char **argv)
{
	long long t0 = now_ns();

	if (argc >= 3 && !strcmp(argv[1], "--seccomp-child")) {
		const char *d = getenv(DIVISOR_ENV);

		if (d && atoi(d) > 0)
			divisor = atoi(d);
		return seccomp_child(argv[2]);
	}
	if (argc > 1 && atoi(argv[1]) > 0) {
		divisor = atoi(argv[1]);
		setenv(DIVISOR_ENV, argv[1], 1);
	}
	plan_no_plan();
	diag("possible cpus %d, online %ld, glibc owns rseq %d", rseq_get_max_nr_cpus(),
	     sysconf(_SC_NPROCESSORS_ONLN), rseq_available(RSEQ_AVAILABLE_QUERY_LIBC));
	test_single_step();
	test_seccomp(ENOSYS, "ENOSYS");
	test_seccomp(EPERM, "EPERM");
	test_affinity();
	diag("total %.2f s", (double)(now_ns() - t0) / 1e9);
	return exit_status();
}
