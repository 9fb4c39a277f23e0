/* SPDX-License-Identifier: MIT */
/*
 * A minimal TAP producer for the C tests: ok(), diag(), and an exit
 * status that fails when any assertion failed or the plan was not met.
 * Thread-safe enough for assertions from several threads.
 */
#ifndef RSEQ_TESTS_TAP_H
#define RSEQ_TESTS_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

static int tap_planned, tap_run, tap_failed;
static pthread_mutex_t tap_lock = PTHREAD_MUTEX_INITIALIZER;

static inline void plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

static inline void plan_no_plan(void)
{
	tap_planned = -1;
}

__attribute__((format(printf, 2, 3)))
static inline int ok(int cond, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&tap_lock);
	tap_run++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	pthread_mutex_unlock(&tap_lock);
	return cond;
}

__attribute__((format(printf, 1, 2)))
static inline void diag(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&tap_lock);
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	pthread_mutex_unlock(&tap_lock);
}

/* Skips n planned tests with a reason. */
static inline void skip(int n, const char *why)
{
	pthread_mutex_lock(&tap_lock);
	while (n-- > 0) {
		tap_run++;
		printf("ok %d # SKIP %s\n", tap_run, why);
	}
	fflush(stdout);
	pthread_mutex_unlock(&tap_lock);
}

/* Aborts the test with a message: for setup failures. */
__attribute__((noreturn, format(printf, 1, 2)))
static inline void bail_out(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(2);
}

/* Zeroed memory aligned for the 128-byte per-CPU slots of the tests
 * (calloc only guarantees 16). Aborts the test when out of memory. */
static inline void *zalloc_aligned(size_t size)
{
	size_t rounded = (size + 127) & ~(size_t)127;
	void *p = aligned_alloc(128, rounded ? rounded : 128);

	if (!p)
		bail_out("out of memory");
	memset(p, 0, rounded);
	return p;
}

static inline int exit_status(void)
{
	if (tap_planned < 0) {
		printf("1..%d\n", tap_run);
		tap_planned = tap_run;
	}
	if (tap_run != tap_planned) {
		printf("# planned %d tests but ran %d\n", tap_planned, tap_run);
		return 1;
	}
	return tap_failed ? 1 : 0;
}

#endif /* RSEQ_TESTS_TAP_H */
