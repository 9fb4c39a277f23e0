/* SPDX-License-Identifier: MIT */
/*
 * RSEQ_AUTO_REGISTER=0: librseq's exact registration behaviour when the
 * library owns registration (glibc's disabled): nothing is registered
 * until rseq_register_current_thread(), rseq_size is 0 until then, a
 * failed critical section does not register, a direct rseq() system
 * call with an invalid area gets the kernel's EFAULT (with automatic
 * registration the thread is already registered and the kernel answers
 * EINVAL). The test re-executes itself with the variable set.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <rseq/rseq.h>

#include "tap.h"

static void *unregistered_thread(void *arg)
{
	int *res = (int *)arg;

	res[0] = rseq_current_cpu_raw();
	res[1] = rseq_register_current_thread();
	res[2] = rseq_current_cpu_raw();
	res[3] = rseq_unregister_current_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	const char *env = getenv("RSEQ_AUTO_REGISTER");
	unsigned int size0 = rseq_size;
	intptr_t v = 0;
	int res[4] = { 0 }, r, err;
	pthread_t t;

	(void)argc;
	if (!env || strcmp(env, "0") != 0) {
		setenv("RSEQ_AUTO_REGISTER", "0", 1);
		execv("/proc/self/exe", argv);
		bail_out("execv: %s", strerror(errno));
	}
	plan_no_plan();
	if (rseq_available(RSEQ_AVAILABLE_QUERY_LIBC)) {
		ok(rseq_register_current_thread() == 0 && rseq_current_cpu_raw() >= 0,
		   "glibc owns registration: the switch changes nothing");
		return exit_status();
	}
	if (!rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL)) {
		skip(1, "no rseq here");
		return exit_status();
	}
	ok(size0 == 0, "rseq_size is 0 in main() before any registration (%u)", size0);
	ok(rseq_current_cpu_raw() == RSEQ_ABI_CPU_ID_UNINITIALIZED, "main thread not registered: cpu_id -1 (%d)",
	   rseq_current_cpu_raw());
	r = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 1, (int)rseq_cpu_start());
	ok(r == -1 && v == 0 && rseq_current_cpu_raw() == -1 && rseq_size == 0,
	   "a critical section aborts and does not register (ret %d, cpu_id %d)", r, rseq_current_cpu_raw());
	errno = 0;
	r = (int)syscall(__NR_rseq, (void *)(uintptr_t)0xffffffffffffffe0ULL, 32, 0, RSEQ_SIG);
	err = errno;
	ok(r == -1 && err == EFAULT, "rseq() with an invalid area: EFAULT from the kernel (ret %d, errno %d)", r, err);
	r = rseq_register_current_thread();
	ok(r == 0 && rseq_current_cpu_raw() >= 0 && rseq_size > 0 && rseq_size != -1U,
	   "rseq_register_current_thread registers (%d); rseq_size now %u", r, rseq_size);
	r = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 1, rseq_current_cpu_raw());
	ok(r == 0 || r == -1, "critical sections run once registered (ret %d)", r);
	if (pthread_create(&t, NULL, unregistered_thread, res))
		bail_out("pthread_create");
	pthread_join(t, NULL);
	ok(res[0] == -1 && res[1] == 0 && res[2] >= 0 && res[3] == 0,
	   "a new thread starts unregistered (%d), registers (%d, cpu %d) and unregisters (%d) explicitly", res[0],
	   res[1], res[2], res[3]);
	ok(rseq_unregister_current_thread() == 0 && rseq_current_cpu_raw() == -1, "main thread unregisters explicitly");
	return exit_status();
}
