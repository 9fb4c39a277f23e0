/* SPDX-License-Identifier: MIT */
/*
 * The data symbols as the program sees them (its own copies, under copy
 * relocations in a non-PIE executable), checked deterministically:
 *
 *   - while running: rseq_offset / rseq_size / rseq_cpu_op_owners hold
 *     active values, and the library computes the same area address from
 *     its own offset (rseq_get_abi(), called out of line) as the program
 *     does from its copy of rseq_offset;
 *   - after the library's destructor: a forked child, traced, exits; at
 *     PTRACE_EVENT_EXIT (every user-space destructor has run, the memory
 *     is still there) the parent reads the child's copies of rseq_offset
 *     and rseq_size: their values from before the library's constructor
 *     (read by a DT_PREINIT_ARRAY function: rseq_offset 0, or on x86_64
 *     the offset of the library's idle area) and -1U when the library
 *     owned registration, unchanged when glibc owns it. (registration_test checks the same
 *     with an observer thread racing exit(), which depends on timing.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rseq/rseq.h>

#include "tap.h"

/* The exported rseq_get_abi(), called out of line even where the header
 * defines it inline. */
extern struct rseq_abi *exported_get_abi(void) __asm__("rseq_get_abi");

/* rseq_offset before every constructor (DT_PREINIT_ARRAY). */
static ptrdiff_t initial_offset = -1;

static void preinit(void)
{
	initial_offset = rseq_offset;
}

__attribute__((section(".preinit_array"), used))
static void (*const preinit_entry)(void) = preinit;

static long peek(pid_t pid, const void *addr, int *err)
{
	long v;

	errno = 0;
	v = ptrace(PTRACE_PEEKDATA, pid, (void *)addr, NULL);
	if (errno)
		*err = errno;
	return v;
}

int main(void)
{
	int libc_owns, st, err = 0;
	ptrdiff_t off;
	unsigned int size;
	long v_off, v_size;
	pid_t pid;

	plan_no_plan();
	libc_owns = rseq_available(RSEQ_AVAILABLE_QUERY_LIBC);
	off = rseq_offset;
	size = rseq_size;
	diag("glibc owns registration: %d; &rseq_offset %p, rseq_offset %td, rseq_size %u, rseq_cpu_op_owners %p",
	     libc_owns, (void *)&rseq_offset, off, size, (void *)rseq_cpu_op_owners);
	ok(off != 0 && size != 0 && size != -1U && rseq_cpu_op_owners != NULL,
	   "the program's copies hold active values (offset %td, size %u, owners %p)", off, size,
	   (void *)rseq_cpu_op_owners);
	ok((char *)exported_get_abi() == (char *)rseq_thread_pointer() + rseq_offset,
	   "rseq_get_abi() (the library's offset) == thread pointer + the program's rseq_offset (%p)",
	   (void *)exported_get_abi());

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0) {
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
			_exit(77);
		raise(SIGSTOP);
		exit(0);	/* runs the destructors */
	}
	if (waitpid(pid, &st, 0) != pid)
		bail_out("waitpid");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		skip(2, "ptrace refused");
		return exit_status();
	}
	if (!WIFSTOPPED(st) || ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)(long)(PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL)))
		bail_out("cannot trace the child (status 0x%x): %s", st, strerror(errno));
	ptrace(PTRACE_CONT, pid, NULL, NULL);
	for (;;) {
		if (waitpid(pid, &st, 0) != pid)
			bail_out("waitpid");
		if (WIFEXITED(st) || WIFSIGNALED(st))
			bail_out("the child ended without an exit stop (status 0x%x)", st);
		if (WIFSTOPPED(st) && st >> 8 == (SIGTRAP | (PTRACE_EVENT_EXIT << 8)))
			break;
		ptrace(PTRACE_CONT, pid, NULL, (void *)(long)(WSTOPSIG(st) == SIGTRAP ? 0 : WSTOPSIG(st)));
	}
	v_off = peek(pid, &rseq_offset, &err);
	v_size = peek(pid, &rseq_size, &err);
	ptrace(PTRACE_CONT, pid, NULL, NULL);
	waitpid(pid, &st, 0);
	ok(err == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the traced child exited normally (errno %d, status 0x%x)",
	   err, st);
	size = (unsigned int)(unsigned long)v_size;	/* little-endian: the low word */
	if (libc_owns)
		ok(v_off == off && size == rseq_size,
		   "after the destructors (glibc owns): the child's rseq_offset %ld, rseq_size %u unchanged", v_off, size);
	else
		ok(v_off == initial_offset && size == -1U,
		   "after the library's destructor (library owned): the child's rseq_offset %ld (want %td, its value "
		   "before the constructor), rseq_size %u (want -1U)", v_off, initial_offset, size);
	return exit_status();
}
