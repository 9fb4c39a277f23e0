/* SPDX-License-Identifier: MIT */
/*
 * rseq/arch.h: per-architecture definitions of the librseq-compatible API.
 *
 * - RSEQ_ARCH_<NAME> (value 1): the architecture, as librseq names them:
 *   RSEQ_ARCH_X86 (32 and 64 bits) with RSEQ_ARCH_AMD64 or
 *   RSEQ_ARCH_I386, RSEQ_ARCH_AARCH64, RSEQ_ARCH_ARM, RSEQ_ARCH_PPC
 *   (with RSEQ_ARCH_PPC64), RSEQ_ARCH_S390 (with RSEQ_ARCH_S390X),
 *   RSEQ_ARCH_MIPS, RSEQ_ARCH_RISCV, RSEQ_ARCH_LOONGARCH. Unlike librseq,
 *   another architecture is no error: it builds without inline sections.
 * - RSEQ_SIG: the abort signature, the 32-bit value right before every
 *   abort handler, equal to what glibc and this library register with.
 * - The memory barriers:
 *     rseq_smp_mb()                      full barrier
 *     rseq_smp_rmb() / rseq_smp_wmb()    orders loads / stores
 *     rseq_smp_load_acquire(p)           *p, later accesses ordered after it
 *     rseq_smp_acquire__after_ctrl_dep() after a load whose value a branch
 *                                        tested: acquire semantics for it
 *     rseq_smp_store_release(p, v)       *p = v, earlier accesses before it
 */
#ifndef _RSEQ_ARCH_H
#define _RSEQ_ARCH_H

#include <rseq/compiler.h>

#if defined(__x86_64__) || defined(__amd64__)
#define RSEQ_ARCH_X86		1
#define RSEQ_ARCH_AMD64		1
#elif defined(__i386__) || defined(__i386)
#define RSEQ_ARCH_X86		1
#define RSEQ_ARCH_I386		1
#elif defined(__aarch64__)
#define RSEQ_ARCH_AARCH64	1
#elif defined(__arm__)
#define RSEQ_ARCH_ARM		1
#elif defined(__powerpc64__) || defined(__ppc64__)
#define RSEQ_ARCH_PPC		1
#define RSEQ_ARCH_PPC64		1
#elif defined(__powerpc__) || defined(__ppc__)
#define RSEQ_ARCH_PPC		1
#elif defined(__s390x__)
#define RSEQ_ARCH_S390		1
#define RSEQ_ARCH_S390X		1
#elif defined(__s390__)
#define RSEQ_ARCH_S390		1
#elif defined(__mips__)
#define RSEQ_ARCH_MIPS		1
#elif defined(__riscv)
#define RSEQ_ARCH_RISCV		1
#elif defined(__loongarch__)
#define RSEQ_ARCH_LOONGARCH	1
#endif

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


#if defined(RSEQ_ARCH_X86)
/* x86 is TSO: only store-load ordering needs an instruction (a locked
 * add below the red zone, cheaper than mfence). */
#ifdef RSEQ_ARCH_AMD64
#define rseq_smp_mb()	__asm__ __volatile__ ("lock; addl $0,-128(%%rsp)" ::: "memory", "cc")
#else
#define rseq_smp_mb()	__asm__ __volatile__ ("lock; addl $0,-128(%%esp)" ::: "memory", "cc")
#endif
#define rseq_smp_rmb()	rseq_barrier()
#define rseq_smp_wmb()	rseq_barrier()
#define rseq_smp_load_acquire(p)					\
	__extension__ ({						\
		rseq_unqual_scalar_typeof(*(p)) ____p1 = RSEQ_READ_ONCE(*(p)); \
		rseq_barrier();						\
		____p1;							\
	})
#define rseq_smp_acquire__after_ctrl_dep()	rseq_smp_rmb()
#define rseq_smp_store_release(p, v)					\
	do {								\
		rseq_barrier();						\
		RSEQ_WRITE_ONCE(*(p), v);				\
	} while (0)
#elif defined(RSEQ_ARCH_AARCH64)
#define rseq_smp_mb()	__asm__ __volatile__ ("dmb ish" ::: "memory")
#define rseq_smp_rmb()	__asm__ __volatile__ ("dmb ishld" ::: "memory")
#define rseq_smp_wmb()	__asm__ __volatile__ ("dmb ishst" ::: "memory")
/* ldar / stlr of the access's width (the __atomic builtins emit them). */
#define rseq_smp_load_acquire(p)	__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define rseq_smp_acquire__after_ctrl_dep()	rseq_smp_rmb()
#define rseq_smp_store_release(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)
#else
/* Other architectures: the C11 fences and accesses. */
#define rseq_smp_mb()		__atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rseq_smp_rmb()		__atomic_thread_fence(__ATOMIC_ACQUIRE)
#define rseq_smp_wmb()		__atomic_thread_fence(__ATOMIC_RELEASE)
#define rseq_smp_load_acquire(p)	__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define rseq_smp_acquire__after_ctrl_dep()	rseq_smp_rmb()
#define rseq_smp_store_release(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)
#endif

#endif /* _RSEQ_ARCH_H */
