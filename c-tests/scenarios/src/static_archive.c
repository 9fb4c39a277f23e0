/* SPDX-License-Identifier: MIT */
/*
 * Linked statically with librseq.a (static_archive.sh): threads add to
 * per-CPU counters with percpu_addv (which completes with or without
 * rseq) and run cpu-ops; the totals must be exact. With -DOTHER_RUST it
 * also calls into another Rust staticlib linked in the same program.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include <rseq/percpu-op.h>
#include <rseq/rseq.h>

#ifdef OTHER_RUST
unsigned int other_rust_digits(uint64_t n);
#endif

#define THREADS 4
#define REPS 20000

static intptr_t counts[4096];

static void *work(void *arg)
{
	for (int i = 0; i < REPS; i++) {
		int cpu = percpu_current_cpu();

		while (percpu_addv(&counts[cpu], 1, cpu) < 0 && errno == EAGAIN)
			;
	}
	return arg;
}

int main(void)
{
	pthread_t t[THREADS];
	intptr_t sum = 0;
	int bad = 0;

	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, work, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < rseq_get_max_nr_cpus(); i++)
		sum += counts[i];
	if (sum != THREADS * REPS) {
		printf("not ok - total %ld, expected %d\n", (long)sum, THREADS * REPS);
		bad = 1;
	} else {
		printf("ok - %d threads x %d percpu_addv: exact total\n", THREADS, REPS);
	}
#ifdef OTHER_RUST
	if (other_rust_digits(1234567) != 7) {
		printf("not ok - the other Rust staticlib\n");
		bad = 1;
	} else {
		printf("ok - the other Rust staticlib works in the same program\n");
	}
#endif
	return bad;
}
