/* SPDX-License-Identifier: MIT */
/*
 * rseq/arch.h: per-architecture constants of the librseq-compatible API.
 * RSEQ_SIG is the abort signature: the 32-bit value right before every
 * abort handler, equal to what glibc and this library register with.
 */
#ifndef _RSEQ_ARCH_H
#define _RSEQ_ARCH_H

#if defined(__x86_64__) || defined(__i386__)
#define RSEQ_SIG	0x53053053
#elif defined(__aarch64__)
#define RSEQ_SIG_CODE	0xd428bc00	/* BRK #0x45E0 */
#ifdef __AARCH64EB__
#define RSEQ_SIG_DATA	0x00bc28d4
#else
#define RSEQ_SIG_DATA	RSEQ_SIG_CODE
#endif
#define RSEQ_SIG	RSEQ_SIG_DATA
#elif defined(__arm__)
#define RSEQ_SIG	0xe7f5def3
#elif defined(__powerpc__) || defined(__powerpc64__)
#define RSEQ_SIG	0x0fe5000b
#elif defined(__s390__)
#define RSEQ_SIG	0xB2FF0FFF
#elif defined(__riscv)
#define RSEQ_SIG	0xf1401073
#elif defined(__loongarch__)
#define RSEQ_SIG	0x002a0010
#endif

#endif /* _RSEQ_ARCH_H */
