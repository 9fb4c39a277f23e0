/* SPDX-License-Identifier: MIT */
/*
 * usdt_hits N [CPU]: runs exactly N cpu-ops (cpu_op_addv on CPU, default
 * 0), so exactly N cpu_op:begin and N cpu_op:end probe hits, then prints
 * the total. Exit 0 when the total is exact.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <rseq/cpu-op.h>

/* noinline and used: the control probe needs a real function symbol. */
void usdt_control_step(volatile long *step);
__attribute__((noinline, used)) void usdt_control_step(volatile long *step)
{
	(*step)++;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000, i;
	int cpu = argc > 2 ? atoi(argv[2]) : 0;
	intptr_t v = 0;
	volatile long steps = 0;

	for (i = 0; i < n; i++) {
		usdt_control_step(&steps);
		if (cpu_op_addv(&v, 1, cpu) != 0) {
			perror("cpu_op_addv");
			return 1;
		}
	}
	printf("%ld\n", (long)v);
	return v == n && steps == n ? 0 : 1;
}
