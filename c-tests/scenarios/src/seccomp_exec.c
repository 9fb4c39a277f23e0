/* SPDX-License-Identifier: MIT */
/*
 * seccomp_exec ENOSYS|EPERM PROGRAM [ARG...]: installs a seccomp filter
 * that answers the rseq system call with that errno (every other call is
 * allowed), then executes PROGRAM. The filter is in place before the
 * dynamic loader and glibc start, so glibc's own registration fails too.
 * Exit 120/121: seccomp unavailable here (PR_SET_NO_NEW_PRIVS or
 * PR_SET_SECCOMP refused); 127: exec failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
# define AUDIT_ARCH_SELF AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
# define AUDIT_ARCH_SELF AUDIT_ARCH_AARCH64
#endif

int main(int argc, char **argv)
{
	int err;

	if (argc < 3) {
		fprintf(stderr, "usage: %s ENOSYS|EPERM PROGRAM [ARG...]\n", argv[0]);
		return 2;
	}
	if (!strcmp(argv[1], "ENOSYS"))
		err = ENOSYS;
	else if (!strcmp(argv[1], "EPERM"))
		err = EPERM;
	else
		return 2;

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
		return 120;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return 121;
	execv(argv[2], argv + 2);
	fprintf(stderr, "execv %s: %s\n", argv[2], strerror(errno));
	return 127;
}
