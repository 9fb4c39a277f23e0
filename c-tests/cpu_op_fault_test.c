/* SPDX-License-Identifier: MIT */
/*
 * cpu_opv() runs on the caller's memory directly and recovers from a fault
 * with the library's SIGSEGV/SIGBUS handler (src/cpu_op/fault.rs). This
 * test checks what that must keep:
 *  - a bad address anywhere in a vector is EFAULT (EAGAIN with
 *    expect_fault) and changes nothing, on the caller's CPU (the one-word
 *    section path too) and on another CPU;
 *  - the program's own SIGSEGV/SIGBUS handlers, installed before the first
 *    cpu_opv() (plain and SA_SIGINFO), still get the program's own faults,
 *    with the right address, and never the library's;
 *  - a handler installed after, which passes on what it does not handle,
 *    keeps cpu_opv() at EFAULT;
 *  - the default action survives: a child that faults with no handler of
 *    its own dies of SIGSEGV;
 *  - a SIGSEGV sent by another thread during cpu-ops reaches the
 *    program's handler, never while its thread holds a word.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/cpu_opv.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rseq/cpu-op.h>
#include <rseq/rseq.h>

#include "tap.h"

static size_t page;
static char *rw;		/* two read-write pages */
static char *ro;		/* one read-only page */
static char *none;		/* one unmapped page */

static struct cpu_op add_op(void *p, int64_t count)
{
	struct cpu_op op;

	memset(&op, 0, sizeof(op));
	op.op = CPU_ADD_OP;
	op.len = sizeof(intptr_t);
	op.u.arithmetic_op.p = (uintptr_t)p;
	op.u.arithmetic_op.count = count;
	return op;
}

static struct cpu_op memcpy_op(void *dst, const void *src, uint32_t len)
{
	struct cpu_op op;

	memset(&op, 0, sizeof(op));
	op.op = CPU_MEMCPY_OP;
	op.len = len;
	op.u.memcpy_op.dst = (uintptr_t)dst;
	op.u.memcpy_op.src = (uintptr_t)src;
	return op;
}

__attribute__((noinline)) static int pin(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	return sched_setaffinity(0, sizeof(s), &s);
}

__attribute__((noinline)) static int other_cpu(int me)
{
	cpu_set_t s;

	if (sched_getaffinity(0, sizeof(s), &s))
		return -1;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (c != me && CPU_ISSET(c, &s))
			return c;
	return -1;
}

/* The vectors of the first part, against `cpu`. */
static void bad_vectors(const char *where, int cpu)
{
	intptr_t *a = (intptr_t *)rw, *b = (intptr_t *)(rw + 64);
	char src[64];
	struct cpu_op v[3];
	int r, e;

	memset(src, 0x5a, sizeof(src));
	*a = 10;
	*b = 20;

	v[0] = add_op(none, 1);
	r = cpu_opv(v, 1, cpu, 0);
	e = errno;
	ok(r == -1 && e == EFAULT, "%s: one add on an unmapped page: EFAULT (%d, %s)", where, r, strerror(e));
	v[0] = add_op(ro, 1);
	r = cpu_opv(v, 1, cpu, 0);
	e = errno;
	ok(r == -1 && e == EFAULT && *(volatile intptr_t *)ro == 0,
	   "%s: one add on a read-only page: EFAULT, page unchanged (%d, %s)", where, r, strerror(e));
	v[0].u.arithmetic_op.expect_fault_p = 1;
	r = cpu_opv(v, 1, cpu, 0);
	e = errno;
	ok(r == -1 && e == EAGAIN, "%s: the same with expect_fault: EAGAIN (%s)", where, strerror(e));

	/* A fault in the middle: earlier operations must not stay applied
	 * for an address that was bad before the call (nothing changed). */
	v[0] = add_op(a, 1);
	v[1] = memcpy_op(b, src, sizeof(intptr_t));
	v[2] = add_op(none + 8, 1);
	r = cpu_opv(v, 3, cpu, 0);
	e = errno;
	ok(r == -1 && e == EFAULT && *a == 10 && *b == 20,
	   "%s: add, memcpy, add on an unmapped page: EFAULT, nothing changed (a=%ld b=%ld)", where, (long)*a,
	   (long)*b);
	v[2] = memcpy_op(ro, src, 16);
	v[2].u.memcpy_op.expect_fault_dst = 1;
	r = cpu_opv(v, 3, cpu, 0);
	e = errno;
	ok(r == -1 && e == EAGAIN && *a == 10 && *b == 20,
	   "%s: add, memcpy, memcpy into a read-only page (expect_fault): EAGAIN, nothing changed", where);
	/* A memcpy whose destination runs from a good page into a bad one. */
	v[0] = memcpy_op(rw + 2 * page - 8, src, 16);
	((volatile char *)rw)[2 * page - 8] = 1;
	mprotect(rw + page, page, PROT_READ);
	r = cpu_opv(v, 1, cpu, 0);
	e = errno;
	ok(r == -1 && e == EFAULT && rw[2 * page - 8] == 1,
	   "%s: memcpy straddling into a read-only page: EFAULT, first page unchanged", where);
	mprotect(rw + page, page, PROT_READ | PROT_WRITE);
	/* Reading from a bad page, compare and memcpy source. */
	v[0] = memcpy_op(a, none, 8);
	v[0].u.memcpy_op.expect_fault_src = 1;
	r = cpu_opv(v, 1, cpu, 0);
	e = errno;
	ok(r == -1 && e == EAGAIN && *a == 10, "%s: memcpy from an unmapped page (expect_fault_src): EAGAIN",
	   where);
	/* And good vectors still run, with every operation applied. */
	v[0] = add_op(a, 1);
	v[1] = memcpy_op(b, src, sizeof(intptr_t));
	v[2] = add_op(a, 2);
	r = cpu_opv(v, 3, cpu, 0);
	ok(r == 0 && *a == 13 && !memcmp(b, src, sizeof(intptr_t)), "%s: a good vector runs whole (a=%ld)", where,
	   (long)*a);
	r = cpu_opv(v, 1, cpu, 0);
	ok(r == 0 && *a == 14, "%s: a good one-add vector runs (a=%ld)", where, (long)*a);
	r = cpu_opv((struct cpu_op *)none, 1, cpu, 0);
	e = errno;
	ok(r == -1 && e == EFAULT, "%s: an unmapped vector: EFAULT", where);
}

/* --- the program's own handlers ------------------------------------- */

static sigjmp_buf prog_env;
static volatile sig_atomic_t prog_faults, prog_info_ok;
static void *volatile expect_addr;

static void sent_handler(int sig, siginfo_t *si, void *uc);

static void prog_handler_info(int sig, siginfo_t *si, void *uc)
{
	if (si->si_code <= 0) {
		sent_handler(sig, si, uc);
		return;
	}
	prog_faults++;
	if (sig == SIGSEGV && si->si_addr == expect_addr)
		prog_info_ok++;
	siglongjmp(prog_env, 1);
}

static void prog_handler_plain(int sig)
{
	(void)sig;
	prog_faults++;
	siglongjmp(prog_env, 1);
}

/* Faults in the program's own code: its handler must run. */
static int own_fault(void)
{
	expect_addr = none + 16;
	if (sigsetjmp(prog_env, 1) == 0) {
		*(volatile char *)(none + 16) = 1;
		return 0;
	}
	return 1;
}

static struct sigaction chained;

/* A handler installed after the library's that passes on what it does
 * not handle (as runtimes and crash reporters do). */
static void passing_handler(int sig, siginfo_t *si, void *uc)
{
	if (si->si_addr == expect_addr) {
		prog_faults++;
		siglongjmp(prog_env, 1);
	}
	if (chained.sa_flags & SA_SIGINFO)
		chained.sa_sigaction(sig, si, uc);
	else if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN)
		chained.sa_handler(sig);
	else
		abort();
}

/* --- sent signals during holds ---------------------------------------- */

static atomic_int stop_sending;
static atomic_long sent, received, received_in_hold;
static int hold_cpu;
static pid_t worker_tid;

static void sent_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	atomic_fetch_add(&received, 1);
	uint32_t w = __atomic_load_n(rseq_cpu_op_owner_word(hold_cpu, RSEQ_CPU_OP_WORD_CPU_ID), __ATOMIC_ACQUIRE);
	if ((w & 0x3fffffff) == (uint32_t)syscall(SYS_gettid))
		atomic_fetch_add(&received_in_hold, 1);
}

static void *sender(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop_sending)) {
		if (syscall(SYS_tgkill, getpid(), worker_tid, SIGSEGV) == 0)
			atomic_fetch_add(&sent, 1);
		usleep(50);
	}
	return NULL;
}

/* Run as `cpu_op_fault_test default`: a process with no SIGSEGV handler
 * of its own; cpu_opv() faults are EFAULT, its own fault kills it. */
static int default_child(void)
{
	struct cpu_op c = add_op(none, 1);
	struct cpu_op two[2] = { add_op(rw, 1), add_op(none, 1) };

	if (cpu_opv(&c, 1, sched_getcpu(), 0) != -1 || errno != EFAULT)
		return 10;
	if (cpu_opv(two, 2, sched_getcpu(), 0) != -1 || errno != EFAULT)
		return 11;
	*(volatile char *)(none + 32) = 1;
	return 12;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	page = (size_t)sysconf(_SC_PAGESIZE);
	rw = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	none = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rw == MAP_FAILED || ro == MAP_FAILED || none == MAP_FAILED)
		bail_out("mmap");
	if (argc > 1 && !strcmp(argv[1], "default"))
		return default_child();
	plan_no_plan();

	/* 1. The program's SA_SIGINFO SIGSEGV handler and a plain SIGBUS
	 * handler, installed before the first cpu_opv(). */
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = prog_handler_info;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = prog_handler_plain;
	sigaction(SIGBUS, &sa, NULL);

	int me = sched_getcpu();
	int other = other_cpu(me);

	if (pin(me))
		bail_out("sched_setaffinity");
	bad_vectors("own CPU", me);
	if (other >= 0)
		bad_vectors("other CPU", other);
	else
		skip(10, "one CPU allowed");
	ok(prog_faults == 0, "the program's handlers saw none of the library's faults (%d)", (int)prog_faults);
	ok(own_fault() && prog_faults == 1 && prog_info_ok == 1,
	   "the program's SA_SIGINFO handler still gets its own fault, with its address");
	/* A SIGBUS of the program's own: a page beyond the end of a file. */
	FILE *f = tmpfile();
	char *beyond = f ? mmap(NULL, page, PROT_READ, MAP_SHARED, fileno(f), 0) : MAP_FAILED;

	if (beyond != MAP_FAILED) {
		int got = 0;

		if (sigsetjmp(prog_env, 1) == 0)
			(void)*(volatile char *)beyond;
		else
			got = 1;
		ok(got && prog_faults == 2, "the program's plain SIGBUS handler still gets its own SIGBUS");
		/* And the library's SIGBUS on the same page is EFAULT. */
		struct cpu_op v = memcpy_op(rw, beyond, 8);
		int r = cpu_opv(&v, 1, me, 0);

		ok(r == -1 && errno == EFAULT && prog_faults == 2, "cpu_opv() reading beyond a file's end: EFAULT");
		munmap(beyond, page);
	} else {
		skip(2, "no file mapping");
	}
	if (f)
		fclose(f);

	/* 2. SIGSEGV sent by another thread while this one runs cpu-ops on
	 * another CPU (holds with SIGSEGV open): delivered to the program's
	 * handler, never inside a hold. */
	if (other >= 0) {
		hold_cpu = other;
		worker_tid = (pid_t)syscall(SYS_gettid);
		pthread_t t;

		pthread_create(&t, NULL, sender, NULL);
		intptr_t *a = (intptr_t *)rw, *b = (intptr_t *)(rw + 64);
		struct cpu_op two[2] = { add_op(a, 1), add_op(b, 1) };
		long bad = 0;

		*a = *b = 0;
		for (int i = 0; i < 20000; i++)
			if (cpu_opv(two, 2, other, 0) != 0)
				bad++;
		atomic_store(&stop_sending, 1);
		pthread_join(t, NULL);
		ok(bad == 0 && *a == 20000 && *b == 20000, "20000 two-add vectors on CPU %d with SIGSEGV sent: %ld failed",
		   other, bad);
		ok(atomic_load(&received) > 0 && atomic_load(&received) <= atomic_load(&sent),
		   "sent SIGSEGVs reach the program's handler (%ld of %ld; standard signals coalesce)",
		   atomic_load(&received), atomic_load(&sent));
		ok(atomic_load(&received_in_hold) == 0, "none while the thread held a word (%ld)",
		   atomic_load(&received_in_hold));
	} else {
		skip(3, "one CPU allowed");
	}

	/* 3. Default action: a fresh process with no handler of its own gets
	 * EFAULT from cpu_opv() and dies of its own fault. (Under a sanitizer
	 * the sanitizer's handler is the program's: it reports and exits.) */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
	pid_t pid = fork();

	if (pid == 0) {
		execl("/proc/self/exe", argv[0], "default", (char *)NULL);
		_exit(127);
	}
	int status = 0;

	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
	   "no handler of the program's: cpu_opv() EFAULT, then its own fault kills it (status 0x%x)", status);
#else
	skip(1, "a sanitizer owns SIGSEGV");
#endif

	/* 4. A handler installed after the library's, passing on what it
	 * does not handle: cpu_opv() still EFAULT (the vectors that hold a
	 * word then go through the kernel: the library's handler is no
	 * longer first). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = passing_handler;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, &chained);
	expect_addr = NULL;
	struct cpu_op v = add_op(none, 1);
	int r = cpu_opv(&v, 1, me, 0);

	ok(r == -1 && errno == EFAULT && prog_faults == 2,
	   "a later handler that passes faults on: one-add cpu_opv() still EFAULT");
	if (other >= 0) {
		struct cpu_op two[2] = { add_op(rw, 1), add_op(none, 1) };

		r = cpu_opv(two, 2, other, 0);
		ok(r == -1 && errno == EFAULT && prog_faults == 2, "and a two-add vector on another CPU too");
	} else {
		skip(1, "one CPU allowed");
	}
	ok(own_fault() && prog_faults == 3, "and the later handler gets the program's own fault");
	return exit_status();
}
