/* SPDX-License-Identifier: MIT */
/*
 * CPU hotplug and never-present CPUs (the hotplug part runs as root in
 * the test VMs, c-tests/vm/; it is skipped elsewhere unless
 * RSEQ_TEST_HOTPLUG=1 or RSEQ_TEST_IN_VM=1 says that offlining CPUs is
 * allowed; part 1 runs everywhere).
 *
 * Twice: with membarrier, then with membarrier refused (a seccomp filter
 * makes it fail with ENOSYS, as on kernels before 5.10 or in sandboxes),
 * so that cpu-op fences migrate onto their target instead:
 *  1. a cpu-op and a percpu_addv on every possible CPU, also the possible
 *     CPUs that are not present (qemu -smp 4,maxcpus=16) and offline ones:
 *     all succeed, totals exact;
 *  2. a CPU goes offline and comes back several times while 6 x CPUs
 *     threads run cpu-ops, percpu_addv and rseq sections on it (some
 *     pinned to it, every thread yielding): no operation fails, totals
 *     exact, the CPU is online at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>
#include <rseq/percpu-op.h>

#include "tap.h"

#define ROUNDS		2	/* offline/online cycles per phase */
#define MIN_OPS		500	/* per thread, at least */

struct slot {
	intptr_t v;
} __attribute__((aligned(128)));

static struct slot *slots;
static int nr_possible, target;
static volatile int stop;


static int write_online(int cpu, int on)
{
	char path[64];
	snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/online", cpu);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	/* The write returns once the transition is complete. */
	ssize_t n = write(fd, on ? "1" : "0", 1);
	close(fd);
	return n == 1 ? 0 : -1;
}

static int read_online(int cpu)
{
	char path[64], c = '?';
	snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/online", cpu);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	if (read(fd, &c, 1) != 1)
		c = '?';
	close(fd);
	return c == '1' ? 1 : c == '0' ? 0 : -1;
}

static int refuse_membarrier(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
}

struct worker {
	pthread_t tid;
	int idx;
	long ops, errors, last_errno, sections;
	unsigned int seed;
};

static void *work(void *arg)
{
	struct worker *w = arg;

	if (w->idx % 4 == 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(target, &set);
		sched_setaffinity(0, sizeof(set), &set); /* may fail while offline */
	}
	while (w->ops < MIN_OPS || !__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		int r = 0;
		w->seed = w->seed * 1103515245u + 12345u;
		switch ((w->seed >> 16) % 3) {
		case 0:
			errno = 0;
			r = cpu_op_addv(&slots[target].v, 1, target);
			break;
		case 1:
			errno = 0;
			r = percpu_addv(&slots[target].v, 1, target);
			break;
		default:
			for (;;) {
				int cpu = (int)rseq_cpu_start();
				if (rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &slots[cpu].v, 1, cpu) == 0)
					break;
				/* Not registered or rseq refused: the cpu-op path. */
				if (rseq_current_cpu_raw() < 0) {
					r = percpu_addv(&slots[cpu].v, 1, cpu);
					break;
				}
			}
			w->sections++;
			break;
		}
		if (r != 0) {
			w->errors++;
			w->last_errno = errno;
		} else {
			w->ops++;
		}
		if (w->ops % 37 == 0)
			sched_yield();
	}
	return NULL;
}

static intptr_t total(void)
{
	intptr_t s = 0;
	for (int i = 0; i < nr_possible; i++)
		s += slots[i].v;
	return s;
}

/* 1: every possible CPU, present or not, online or not. */
static void phase_possible(const char *label)
{
	long errors = 0, last = 0, n = 0;
	for (int i = 0; i < nr_possible; i++)
		slots[i].v = 0;
	for (int cpu = 0; cpu < nr_possible; cpu++) {
		for (int k = 0; k < 3; k++) {
			errno = 0;
			if (cpu_op_addv(&slots[cpu].v, 1, cpu) != 0) {
				errors++;
				last = errno;
			}
			errno = 0;
			if (percpu_addv(&slots[cpu].v, 1, cpu) != 0) {
				errors++;
				last = errno;
			}
			n += 2;
		}
	}
	ok(errors == 0 && total() == n, "%s: cpu-ops and percpu_addv on all %d possible CPUs: %ld errors (last errno %ld), "
	   "total %ld of %ld", label, nr_possible, errors, last, (long)total(), n);
}

/* 2: the target goes offline and back while threads use it. */
static void phase_hotplug(const char *label)
{
	long errors, last;
	int nthreads = 6 * (int)sysconf(_SC_NPROCESSORS_ONLN);
	struct worker *ws = calloc((size_t)nthreads, sizeof(*ws));
	if (!ws)
		bail_out("out of memory");
	for (int i = 0; i < nr_possible; i++)
		slots[i].v = 0;
	stop = 0;
	for (int i = 0; i < nthreads; i++) {
		ws[i].idx = i;
		ws[i].seed = 31u * (unsigned)(i + 1);
		if (pthread_create(&ws[i].tid, NULL, work, &ws[i]))
			bail_out("pthread_create failed");
	}
	int rounds = 0, toggle_errors = 0;
	for (; rounds < ROUNDS; rounds++) {
		if (write_online(target, 0) || write_online(target, 1))
			toggle_errors++;
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	long ops = 0, sections = 0;
	errors = 0;
	last = 0;
	for (int i = 0; i < nthreads; i++) {
		pthread_join(ws[i].tid, NULL);
		ops += ws[i].ops;
		errors += ws[i].errors;
		sections += ws[i].sections;
		if (ws[i].errors)
			last = ws[i].last_errno;
	}
	ok(toggle_errors == 0 && read_online(target) == 1, "%s: CPU %d offline and online %d times (%d failed writes)",
	   label, target, rounds, toggle_errors);
	ok(errors == 0, "%s: no operation failed during the transitions (%ld errors, last errno %ld)", label, errors,
	   last);
	ok(total() == ops, "%s: total exact (%ld of %ld; %ld rseq sections, %d threads)", label, (long)total(), ops,
	   sections, nthreads);
	free(ws);
}

int main(void)
{
	int allowed = getenv("RSEQ_TEST_HOTPLUG") || getenv("RSEQ_TEST_IN_VM");

	nr_possible = rseq_get_max_nr_cpus();
	target = -1;
	for (int cpu = nr_possible - 1; cpu > 0 && allowed && geteuid() == 0; cpu--)
		if (read_online(cpu) == 1) {
			target = cpu;
			break;
		}
	plan(8);
	slots = zalloc_aligned(sizeof(*slots) * (size_t)(nr_possible > 0 ? nr_possible : 1));
	diag("%d possible CPUs, %ld online, target CPU %d", nr_possible, sysconf(_SC_NPROCESSORS_ONLN), target);
	const char *why = !allowed ? "offlines CPUs: only in the test VMs (c-tests/vm) or with RSEQ_TEST_HOTPLUG=1"
				   : "no CPU that can go offline (need root and two online CPUs)";
	phase_possible("membarrier");
	if (target >= 0)
		phase_hotplug("membarrier");
	else
		skip(3, why);
	if (refuse_membarrier())
		bail_out("seccomp filter refused: %s", strerror(errno));
	phase_possible("no membarrier");
	if (target >= 0)
		phase_hotplug("no membarrier");
	else
		skip(3, why);
	free(slots);
	return exit_status();
}
