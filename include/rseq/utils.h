/* SPDX-License-Identifier: MIT */
/*
 * rseq/utils.h: diagnostics of the librseq-compatible API.
 *
 *   rseq_log(fmt, ...)  prints the message to stderr, followed by the
 *                       function, file and line it comes from
 *   rseq_bug(fmt, ...)  rseq_log(), then abort(): for states that can
 *                       only come from a bug (the RSEQ_COMPARE_TWICE
 *                       checks of the inline sections use it)
 */
#ifndef _RSEQ_UTILS_H
#define _RSEQ_UTILS_H

#include <stdio.h>
#include <stdlib.h>

#include <rseq/compiler.h>

#define rseq_log(fmt, ...)							\
	fprintf(stderr, fmt "(in %s() at " __FILE__ ":" __rseq_str(__LINE__) ")\n", \
		## __VA_ARGS__, __func__)

#define rseq_bug(fmt, ...)			\
	do {					\
		rseq_log(fmt, ## __VA_ARGS__);	\
		abort();			\
	} while (0)

#endif /* _RSEQ_UTILS_H */
