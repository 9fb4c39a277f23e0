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

/* Pastes two tokens after expanding them. */
#define RSEQ_COMBINE_TOKENS(_tokena, _tokenb)	RSEQ__COMBINE_TOKENS(_tokena, _tokenb)
#define RSEQ__COMBINE_TOKENS(_tokena, _tokenb)	_tokena##_tokenb

/* The second of its arguments: lets a macro take an optional last
 * argument with a default, as in
 *   #define m(_a, _opt...) RSEQ_PARAM_SELECT_ARG1(_, ##_opt, default_value)
 */
#define RSEQ_PARAM_SELECT_ARG1(_arg0, _arg1, ...)	_arg1

/* Bits in a long, usable in #if. */
#if defined(__SIZEOF_LONG__)
#define RSEQ_BITS_PER_LONG	(__SIZEOF_LONG__ * 8)
#elif defined(_LP64) || defined(__LP64__)
#define RSEQ_BITS_PER_LONG	64
#else
#define RSEQ_BITS_PER_LONG	32
#endif

/* The memory barriers (rseq_smp_mb(), ...) are per architecture, in
 * <rseq/arch.h>. */

#endif /* _RSEQ_COMPILER_H */
