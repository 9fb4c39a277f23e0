/* Compiles every public header, and uses a few declarations so that an
 * unused-function warning or a type mismatch shows up (-Werror). */
#include <rseq/rseq.h>
#include <rseq/mempool.h>

int header_check(void);

int header_check(void)
{
	intptr_t v = 0;
	int cpu = (int)rseq_cpu_start();
	int r = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 1, cpu);

	r += rseq_addv(&v, 1, cpu);
	r += (int)rseq_current_cpu() + rseq_current_cpu_raw();
	/* librseq's header pulls these in: exit() and perror() are declared. */
	if (r == 12345) {
		perror("header_check");
		exit(1);
	}
	r += *rseq_percpu_ptr(&r, 0, 0) + rseq_mempool_get_max_nr_cpus((struct rseq_mempool *)0);
	return r + (int)rseq_size + (int)rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL);
}
