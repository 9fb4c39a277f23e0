/* SPDX-License-Identifier: MIT */
/*
 * For static linking with librseq.a: the library's constructor must run
 * although the program references nothing but what the inline header
 * uses (the data symbols and, on an abort, rseq_abort_slow_path). Before
 * main() calls anything of the library, the data symbols must already be
 * initialised (rseq_size no longer -1U, rseq_offset and
 * rseq_cpu_op_owners set) and the main thread registered (by glibc, or by
 * the library's constructor when it owns registration); then inline
 * per-CPU increments from several threads must add up exactly.
 *
 * Only stdio and pthreads besides the inline header: TAP by hand.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <rseq/rseq.h>

#define THREADS		4
#define ITERS		100000
#define SLOTS		4096

static intptr_t counts[SLOTS * 16];
static int n, failed;

static void check(int cond, const char *what)
{
	n++;
	if (!cond)
		failed++;
	printf("%sok %d - %s\n", cond ? "" : "not ", n, what);
}

static void *work(void *arg)
{
	long *stuck = arg;

	for (int i = 0; i < ITERS; i++) {
		long tries = 0;
		int cpu;

		do {
			cpu = (int)rseq_cpu_start();
			if (++tries > 10000000L) {
				(*stuck)++;
				return NULL;
			}
		} while (cpu >= SLOTS ||
			 rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &counts[cpu * 16], 1, cpu) != 0);
	}
	return NULL;
}

int main(void)
{
	/* Read before anything of the library is called. */
	ptrdiff_t off = rseq_offset;
	unsigned int size = rseq_size;
	char *owners = rseq_cpu_op_owners;
	int32_t cpu_id = off ? rseq_current_cpu_raw() : -100;
	pthread_t t[THREADS];
	long stuck[THREADS];
	intptr_t sum = 0;
	char line[256];

	snprintf(line, sizeof(line), "the constructor ran before main: rseq_offset %td, rseq_size %u, owners %p", off,
		 size, (void *)owners);
	check(off != 0 && size != 0 && size != -1U && owners != NULL, line);
	snprintf(line, sizeof(line), "the main thread is registered before any call (cpu_id %d)", (int)cpu_id);
	check(cpu_id >= 0, line);
	memset(stuck, 0, sizeof(stuck));
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, work, &stuck[i]))
			return 2;
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < SLOTS; i++)
		sum += counts[i * 16];
	snprintf(line, sizeof(line), "inline increments from %d threads: exact total %ld (expected %d), %ld stuck",
		 THREADS, (long)sum, THREADS * ITERS, stuck[0] + stuck[1] + stuck[2] + stuck[3]);
	check(sum == (intptr_t)THREADS * ITERS, line);
	printf("1..%d\n", n);
	return failed ? 1 : 0;
}
