/* SPDX-License-Identifier: MIT */
/*
 * rseq across fork() and exec(): a forked child inherits a working
 * registration (its main thread and new threads operate, with exact
 * per-CPU counts), a fork from a secondary thread works the same, the
 * parent is unaffected, and an exec'd image of this program starts with
 * a working registration.
 *
 * The children do not print TAP: each reports its checks as bits of its
 * exit status, which the parent turns into assertions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rseq/rseq.h>

#include "tap.h"

#define ITERS 100000
#define MAX_ABORTS 1000000L
#define EXEC_FAILED 0x80

struct counter {
	intptr_t v;
} __attribute__((aligned(128)));

static int nr_cpus;
static struct counter *counters;
static int libc_owns;

static long percpu_add(intptr_t n)
{
	for (long aborts = 0; aborts < MAX_ABORTS; aborts++) {
		int cpu = (int)rseq_cpu_start();

		if (cpu < 0 || cpu >= nr_cpus)
			return -1;
		if (rseq_addv(&counters[cpu].v, n, cpu) == 0)
			return aborts;
	}
	return -1;
}

static intptr_t sum(void)
{
	intptr_t s = 0;

	for (int i = 0; i < nr_cpus; i++)
		s += counters[i].v;
	return s;
}

/* Adds 1 ITERS times; false if an operation got stuck. */
static bool count_up(int *cpu_after_first)
{
	for (int i = 0; i < ITERS; i++) {
		if (percpu_add(1) < 0)
			return false;
		if (i == 0 && cpu_after_first)
			*cpu_after_first = rseq_current_cpu_raw();
	}
	return true;
}

struct thread_result {
	int cpu_before;
	int cpu_after_first;
	bool done;
};

static void *counting_thread(void *arg)
{
	struct thread_result *r = arg;

	r->cpu_before = rseq_current_cpu_raw();
	r->done = count_up(&r->cpu_after_first);
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Checks run in a child process, reported as exit-status bits. */

static const char *const child_checks[] = {
	"main thread registered right after fork/exec, before any operation",
	"main thread counts exactly",
	"main thread still registered after counting",
	"ownership mode and rseq_offset as in the parent",
	"a new thread starts registered by glibc, or unregistered when the library owns registration (lazy)",
	"the new thread is registered after its first operation",
	"main and new thread together count exactly",
};
#define NR_CHILD_CHECKS ((int)(sizeof(child_checks) / sizeof(child_checks[0])))

/*
 * The checks of a child; base is what the counters held when it started,
 * parent_offset the rseq_offset its parent saw.
 */
static int child_body(intptr_t base, bool expect_libc, ptrdiff_t parent_offset, bool check_offset)
{
	struct thread_result tr = { -100, -100, false };
	int bits = 0, cpu_after = -100;
	pthread_t t;

	if (rseq_current_cpu_raw() < 0)
		bits |= 1 << 0;
	if (!count_up(&cpu_after) || sum() != base + ITERS)
		bits |= 1 << 1;
	if (cpu_after < 0 || rseq_current_cpu_raw() < 0)
		bits |= 1 << 2;
	if ((bool)rseq_available(RSEQ_AVAILABLE_QUERY_LIBC) != expect_libc || (check_offset && rseq_offset != parent_offset))
		bits |= 1 << 3;
	if (pthread_create(&t, NULL, counting_thread, &tr))
		return bits | 1 << 6;
	/* Count concurrently with the new thread. */
	if (!count_up(NULL))
		bits |= 1 << 6;
	pthread_join(t, NULL);
	if (expect_libc ? tr.cpu_before < 0 : tr.cpu_before != -1)
		bits |= 1 << 4;
	if (tr.cpu_after_first < 0)
		bits |= 1 << 5;
	if (!tr.done || sum() != base + 3 * ITERS)
		bits |= 1 << 6;
	return bits;
}

static void report_child(const char *what, pid_t pid)
{
	int status = 0;
	pid_t w;

	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);
	if (!ok(w == pid && WIFEXITED(status) && !(WEXITSTATUS(status) & EXEC_FAILED),
		"%s: child exited normally (status %#x)", what, status)) {
		skip(NR_CHILD_CHECKS, "child did not run its checks");
		return;
	}
	for (int i = 0; i < NR_CHILD_CHECKS; i++)
		ok(!(WEXITSTATUS(status) & (1 << i)), "%s: %s", what, child_checks[i]);
}

/* ---------------------------------------------------------------------- */

static void test_fork_from_main(void)
{
	intptr_t before = sum();
	pid_t pid;
	int cpu_after = -100;
	bool done;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0)
		_exit(child_body(before, libc_owns, rseq_offset, true));
	/* The parent counts at the same time as the child. */
	done = count_up(&cpu_after);
	ok(done && cpu_after >= 0, "fork: the parent keeps counting while the child runs (cpu_id %d)", cpu_after);
	report_child("fork", pid);
	ok(sum() == before + ITERS, "fork: the parent's counters saw only its own increments (%ld)",
	   (long)(sum() - before));
}

static void *fork_thread(void *arg)
{
	pid_t *pid = arg;
	intptr_t before;

	/* Use rseq in this thread first (automatic registration). */
	if (percpu_add(1) < 0)
		return NULL;
	before = sum();
	fflush(stdout);
	*pid = fork();
	if (*pid == 0)
		_exit(child_body(before, libc_owns, rseq_offset, true));
	return NULL;
}

static void test_fork_from_thread(void)
{
	pthread_t t;
	pid_t pid = -1;

	if (pthread_create(&t, NULL, fork_thread, &pid))
		bail_out("pthread_create");
	pthread_join(t, NULL);
	if (pid < 0)
		bail_out("fork from a thread failed");
	report_child("fork from a thread", pid);
}

static void test_exec(const char *argv0)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0) {
		execl("/proc/self/exe", argv0, "--exec-child", libc_owns ? "1" : "0", (char *)NULL);
		_exit(EXEC_FAILED);
	}
	report_child("exec", pid);
}

static int exec_child(const char *mode)
{
	nr_cpus = rseq_get_max_nr_cpus();
	if (nr_cpus <= 0)
		return EXEC_FAILED;
	counters = zalloc_aligned((size_t)nr_cpus * sizeof(*counters));
	if (!counters)
		return EXEC_FAILED;
	return child_body(0, strcmp(mode, "1") == 0, 0, false);
}

int main(int argc, char **argv)
{
	int cpu_after = -100;
	bool done;

	if (argc == 3 && !strcmp(argv[1], "--exec-child"))
		return exec_child(argv[2]);

	plan_no_plan();
	nr_cpus = rseq_get_max_nr_cpus();
	if (nr_cpus <= 0)
		bail_out("rseq_get_max_nr_cpus() = %d", nr_cpus);
	counters = zalloc_aligned((size_t)nr_cpus * sizeof(*counters));
	if (!counters)
		bail_out("calloc");
	libc_owns = rseq_available(RSEQ_AVAILABLE_QUERY_LIBC);
	diag("glibc owns registration: %d; rseq_offset %td, rseq_size %u", libc_owns, rseq_offset, rseq_size);

	done = count_up(&cpu_after);
	ok(done && sum() == ITERS && cpu_after >= 0, "parent counts exactly before forking (%ld, cpu_id %d)",
	   (long)sum(), cpu_after);
	test_fork_from_main();
	test_fork_from_thread();
	test_exec(argv[0]);
	ok(percpu_add(1) >= 0 && rseq_current_cpu_raw() >= 0, "the parent still operates at the end");
	free(counters);
	return exit_status();
}
