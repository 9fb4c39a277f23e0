/* SPDX-License-Identifier: MIT */
/*
 * fork() from a signal handler while other threads hold CPUs' ownership
 * words: the child must be able to run a cpu-op on every CPU.
 *
 *   1. the handler interrupted nothing of the library: fork() waits for
 *      the other thread's cpu-op (the library's prepare handler takes
 *      every word), the child is fine;
 *   2. the handler interrupted the main thread's loop of cpu-ops on CPU 0
 *      while another thread holds CPU 1. (Since issue 9 no handler runs
 *      inside a cpu-op: signals are blocked while a word is held, so the
 *      handler always runs between two cpu-ops.) The child inherits CPU
 *      1's word held by a thread that does not exist in the child; the
 *      library's fork repair frees it.
 *
 * The handler forks only when it sees CPU 1's word held. Each child runs
 * under alarm(2); the parent asserts it exited 0 (5 forks per case).
 */
#include "fault_common.h"

#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

static char big_src[4096], big_dst[4096];
static intptr_t cnt[64];
static pid_t parent;
static atomic_int phase, done, stop;

/* The holder's own signal: it arrives while the holder is inside or
 * between cpu-ops on CPU 1; since issue 9 it is delivered only between
 * them (it used to make the holder keep CPU 1 for 100 ms through a
 * refused nested cpu-op, which no longer exists). */
static void holder_handler(int sig)
{
	(void)sig;
}

static int child_status = -1;
static int forks_done, forks_bad;
static const char *bad_why = "";

static void *holder(void *arg)
{
	sigset_t s;
	struct sigevent sev;
	struct itimerspec its;
	timer_t tm;

	(void)arg;
	sigemptyset(&s);
	sigaddset(&s, SIGRTMIN);
	pthread_sigmask(SIG_BLOCK, &s, NULL);	/* the handler runs in main only */
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = SIGRTMIN + 1;
	sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
	if (timer_create(CLOCK_MONOTONIC, &sev, &tm))
		bail_out("timer_create");
	memset(&its, 0, sizeof(its));
	its.it_value.tv_nsec = 300 * 1000;
	its.it_interval.tv_nsec = 300 * 1000;
	timer_settime(tm, 0, &its, NULL);
	while (!atomic_load(&stop) && getpid() == parent) {
		struct cpu_op op;

		memset(&op, 0, sizeof(op));
		op.op = CPU_MEMCPY_OP;
		op.len = sizeof(big_dst);
		op.u.memcpy_op.dst = (uintptr_t)big_dst;
		op.u.memcpy_op.src = (uintptr_t)big_src;
		cpu_opv(&op, 1, 1, 0);	/* holds CPU 1 most of the time */
	}
	timer_delete(tm);
	return NULL;
}

static int cpu1_owned(void)
{
	return __atomic_load_n(rseq_cpu_op_owner_word(1, RSEQ_CPU_OP_WORD_CPU_ID), __ATOMIC_RELAXED) != 0;
}

static void child_body(void)
{
	signal(SIGALRM, SIG_DFL);
	alarm(2);	/* a deadlock kills the child with SIGALRM */
	for (int c = 0; c < fc_ncpus; c++)
		if (cpu_op_addv(&cnt[c], 1, c))
			_exit(1);
	_exit(0);
}

static void handler(int sig)
{
	int saved = errno;
	pid_t pid;

	(void)sig;
	if (atomic_load(&done) || getpid() != parent)
		goto out;
	if (atomic_load(&phase) == 2) {
		/* Between two of this thread's cpu-ops on CPU 0, while
		 * CPU 1 is held (a cpu-op from here must not wait). */
		if (cpu_op_addv(&cnt[0], 1, 0) != 0 || !cpu1_owned())
			goto out;
	} else if (!cpu1_owned()) {
		goto out;
	}
	atomic_store(&done, 1);
	pid = fork();
	if (pid == 0) {
		if (atomic_load(&phase) == 1)
			child_body();
		goto out;	/* phase 2: back into the interrupted cpu-op, then main */
	}
	if (pid > 0)
		waitpid(pid, &child_status, 0);
out:
	errno = saved;
}

static void run_phase(int p, timer_t tm)
{
	struct itimerspec its, zero;
	double t0 = fc_now();

	memset(&its, 0, sizeof(its));
	memset(&zero, 0, sizeof(zero));
	its.it_value.tv_nsec = 20000;
	its.it_interval.tv_nsec = 20000;
	child_status = -1;
	atomic_store(&done, 0);
	atomic_store(&phase, p);
	timer_settime(tm, 0, &its, NULL);
	while (!atomic_load(&done) && fc_now() - t0 < 20) {
		if (p == 2)
			cpu_op_addv(&cnt[0], 1, 0);	/* holds CPU 0 */
		else
			sched_yield();
		if (getpid() != parent) {
			timer_settime(tm, 0, &zero, NULL);
			child_body();
		}
	}
	if (getpid() != parent)
		child_body();	/* forked by a handler that ran in the loop's test */
	timer_settime(tm, 0, &zero, NULL);
}

static void account(void)
{
	if (!atomic_load(&done))
		return;
	forks_done++;
	if (!(child_status >= 0 && WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0)) {
		forks_bad++;
		bad_why = child_status < 0 ? "no child" : WIFSIGNALED(child_status) ?
			  (WTERMSIG(child_status) == SIGALRM ? "killed by SIGALRM: deadlock" : "killed by a signal") :
			  "a cpu-op failed";
	}
}

static void report(const char *what)
{
	if (!forks_done) {
		skip(1, "the situation did not arise in 20 s");
		return;
	}
	ok(forks_bad == 0, "fork() from a signal handler %s: every child runs a cpu-op on every CPU (%d forks, %d bad%s%s)",
	   what, forks_done, forks_bad, forks_bad ? ": " : "", bad_why);
	forks_done = forks_bad = 0;
}

int main(void)
{
	struct sigaction sa;
	struct sigevent sev;
	pthread_t t;
	timer_t tm;

	plan(2);
	fc_watchdog(120);
	fc_init();
	if (fc_ncpus < 2) {
		skip(2, "one possible CPU");
		return exit_status();
	}
	parent = getpid();
	diag("glibc owns registration %d", rseq_available(RSEQ_AVAILABLE_QUERY_LIBC));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigaction(SIGRTMIN, &sa, NULL);
	sa.sa_handler = holder_handler;
	sigaction(SIGRTMIN + 1, &sa, NULL);
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN;
	if (timer_create(CLOCK_MONOTONIC, &sev, &tm))
		bail_out("timer_create");
	if (pthread_create(&t, NULL, holder, NULL))
		bail_out("pthread_create");
	for (int i = 0; i < 5; i++) {
		run_phase(1, tm);
		account();
	}
	report("while another thread holds CPU 1");
	for (int i = 0; i < 5; i++) {
		run_phase(2, tm);
		account();
	}
	report("that interrupted a loop of cpu-ops on CPU 0 while another thread holds CPU 1");
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	return exit_status();
}
