/* SPDX-License-Identifier: MIT */
/*
 * rseq/compiler.h: compiler helpers of the librseq-compatible API.
 */
#ifndef _RSEQ_COMPILER_H
#define _RSEQ_COMPILER_H

#include <stddef.h>

#ifdef __cplusplus
#include <type_traits>
#endif

#define rseq_likely(x)		__builtin_expect(!!(x), 1)
#define rseq_unlikely(x)	__builtin_expect(!!(x), 0)
#define rseq_barrier()		__asm__ __volatile__("" : : : "memory")

/* Volatile access of a variable, to keep the compiler from tearing,
 * fusing or re-reading it. */
#define RSEQ_ACCESS_ONCE(x)	(*(__volatile__ __typeof__(x) *)&(x))
#define RSEQ_WRITE_ONCE(x, v)	__extension__ ({ RSEQ_ACCESS_ONCE(x) = (v); })
#define RSEQ_READ_ONCE(x)	RSEQ_ACCESS_ONCE(x)

#define __rseq_str_1(x)		#x
#define __rseq_str(x)		__rseq_str_1(x)

#define rseq_sizeof_field(TYPE, MEMBER)	sizeof((((TYPE *)0)->MEMBER))
#define rseq_offsetofend(TYPE, MEMBER)	(offsetof(TYPE, MEMBER) + rseq_sizeof_field(TYPE, MEMBER))

/* The type of x without qualifiers, for scalars. */
#ifdef __cplusplus
#define rseq_unqual_scalar_typeof(x) \
	std::remove_cv<std::remove_reference<decltype(x)>::type>::type
#else
#define rseq_scalar_type_to_expr(type) \
	unsigned type: (unsigned type)0, \
	signed type: (signed type)0
#define rseq_unqual_scalar_typeof(x) \
	__typeof__(_Generic((x), \
		char: (char)0, \
		rseq_scalar_type_to_expr(char), \
		rseq_scalar_type_to_expr(short), \
		rseq_scalar_type_to_expr(int), \
		rseq_scalar_type_to_expr(long), \
		rseq_scalar_type_to_expr(long long), \
		default: (x)))
#endif

/* Kept for source compatibility: this library's sequences need no
 * workaround after asm goto. */
#define rseq_after_asm_goto()	rseq_barrier()

/* Memory barriers of the librseq API. */
#define rseq_smp_mb()		__atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rseq_smp_rmb()		__atomic_thread_fence(__ATOMIC_ACQUIRE)
#define rseq_smp_wmb()		__atomic_thread_fence(__ATOMIC_RELEASE)
#define rseq_smp_load_acquire(p)	__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define rseq_smp_acquire__after_ctrl_dep()	rseq_smp_rmb()
#define rseq_smp_store_release(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)

#endif /* _RSEQ_COMPILER_H */
