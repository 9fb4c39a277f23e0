/* SPDX-License-Identifier: MIT */
/*
 * Issue 9, scenario 7: fork() whatever the order of the atfork handlers.
 * The program registers its own pthread_atfork handlers, whose prepare
 * and parent/child handlers run cpu-ops, and only then dlopen()s the
 * library (whose handlers therefore run first in the prepare phase).
 * Another thread runs cpu-ops on every CPU meanwhile. fork() must not
 * deadlock, and the child can use every API: cpu_op_addv on every CPU,
 * cpu_opv, percpu_addv, rseq_register_current_thread.
 *
 * Not linked with librseq: everything is reached with dlsym().
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/cpu_opv.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

static int (*addv)(intptr_t *, int64_t, int);
static int (*opv)(struct cpu_op *, int, int, int);
static int (*p_addv)(intptr_t *, intptr_t, int);
static int (*reg)(void);
static intptr_t counters[4096][16];
static int ncpus;
static atomic_int stop;
static atomic_long in_handlers;

static void prepare(void)
{
	if (addv && addv(&counters[0][0], 1, 0) == 0)
		atomic_fetch_add(&in_handlers, 1);
}

static void parent(void)
{
	if (addv && addv(&counters[0][0], 1, 0) == 0)
		atomic_fetch_add(&in_handlers, 1);
}

static void child(void)
{
	if (addv)
		addv(&counters[0][0], 1, 0);
}

static void *busy(void *arg)
{
	(void)arg;
	for (long i = 0; !atomic_load(&stop); i++)
		addv(&counters[i % ncpus][0], 1, (int)(i % ncpus));
	return NULL;
}

static int child_main(void)
{
	int bad = 0;
	struct cpu_op op;

	for (int c = 0; c < ncpus; c++)
		if (addv(&counters[c][0], 1, c) != 0)
			bad |= 1;
	memset(&op, 0, sizeof(op));
	op.op = CPU_ADD_OP;
	op.len = 8;
	op.u.arithmetic_op.p = (uintptr_t)&counters[0][1];
	op.u.arithmetic_op.count = 1;
	if (opv(&op, 1, 0, 0) != 0 || counters[0][1] != 1)
		bad |= 2;
	if (p_addv(&counters[0][2], 1, 0) != 0)
		bad |= 4;
	if (reg() != 0 && errno != EBUSY)
		bad |= 8;
	return bad;
}

int main(int argc, char **argv)
{
	const char *lib = argc > 1 ? argv[1] : "librseq.so.0";
	pthread_t t;
	int forks = 200, good = 0;

	plan_no_plan();
	ncpus = (int)sysconf(_SC_NPROCESSORS_CONF);
	if (ncpus > 4096)
		ncpus = 4096;
	/* The program's handlers first ... */
	pthread_atfork(prepare, parent, child);
	/* ... the library's afterwards (its prepare handler runs first). */
	void *h = dlopen(lib, RTLD_NOW | RTLD_GLOBAL);
	if (!h)
		bail_out("dlopen %s: %s", lib, dlerror());
	addv = (int (*)(intptr_t *, int64_t, int))dlsym(h, "cpu_op_addv");
	opv = (int (*)(struct cpu_op *, int, int, int))dlsym(h, "cpu_opv");
	p_addv = (int (*)(intptr_t *, intptr_t, int))dlsym(h, "percpu_addv");
	reg = (int (*)(void))dlsym(h, "rseq_register_current_thread");
	if (!addv || !opv || !p_addv || !reg)
		bail_out("missing symbols");
	pthread_create(&t, NULL, busy, NULL);
	alarm(120);
	for (int i = 0; i < forks; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			alarm(20);
			_exit(child_main());
		}
		int st = 0;
		waitpid(pid, &st, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			good++;
		else if (good == i)
			diag("child %d: status 0x%x", i, st);
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	ok(good == forks, "%d forks did not deadlock; every child used cpu_op_addv on every CPU, cpu_opv, "
	   "percpu_addv and registration (%d good)", forks, good);
	ok(atomic_load(&in_handlers) == 2L * forks, "the program's prepare and parent handlers ran cpu-ops (%ld)",
	   atomic_load(&in_handlers));
	return exit_status();
}
