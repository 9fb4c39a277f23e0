/* SPDX-License-Identifier: MIT */
/*
 * An ordinary multithreaded glibc program that knows nothing of rseq: for
 * LD_PRELOAD of the library. It exercises what a preloaded
 * pthread_create must not disturb: worker threads joined with results, a
 * custom stack size, detached threads, nested creation, pthread_exit with
 * a value, cancellation of a blocked thread (forced unwinding through the
 * start routine's frames), thread-local storage, thread-specific data
 * destructors, pthread_once, a mutex/condition-variable queue, fork() from
 * a thread, an atexit handler, and a deliberate exit status of 3.
 *
 * Its output is deterministic. With -p it also probes, in every thread it
 * creates and in main, whether the thread has an rseq area registered:
 * a raw rseq() registration of a private area fails with EINVAL when the
 * thread already has one, and succeeds (then undone) when it has none.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef __NR_rseq
# if defined(__x86_64__)
#  define __NR_rseq 334
# elif defined(__aarch64__)
#  define __NR_rseq 293
# endif
#endif

#define PROBE_SIG	0x53053053
#define WORKERS		6
#define ITEMS		20000
#define NESTED		3
#define DETACHED	4

static int probing;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long probe_registered, probe_unregistered, probe_errors, probe_total;

/* 0: the thread had an area registered; 1: it had none; -errno: other. */
static int probe_thread(void)
{
#ifdef __NR_rseq
	struct {
		uint32_t cpu_id_start, cpu_id;
		uint64_t rseq_cs;
		uint32_t flags;
		uint32_t pad[3];
	} __attribute__((aligned(32))) area;
	long r;

	memset(&area, 0, sizeof(area));
	area.cpu_id = (uint32_t)-1;
	r = syscall(__NR_rseq, &area, 32, 0, PROBE_SIG);
	if (r == 0) {
		/* It had none: undo ours before the stack frame goes. */
		if (syscall(__NR_rseq, &area, 32, 1 /* unregister */, PROBE_SIG))
			abort();
		return 1;
	}
	return errno == EINVAL ? 0 : -errno;
#else
	return -ENOSYS;
#endif
}

static void probe(void)
{
	int r;

	if (!probing)
		return;
	r = probe_thread();
	pthread_mutex_lock(&lock);
	probe_total++;
	if (r == 0)
		probe_registered++;
	else if (r == 1)
		probe_unregistered++;
	else
		probe_errors++;
	pthread_mutex_unlock(&lock);
}

/* ---- a queue: producers push numbers, consumers sum them ---- */
static long queue[64];
static int q_head, q_tail, q_count, producers_left;
static long consumed_sum;
static __thread long tls_sum;

static void *producer(void *arg)
{
	long base = (long)(intptr_t)arg;

	probe();
	for (long i = 1; i <= ITEMS; i++) {
		pthread_mutex_lock(&lock);
		while (q_count == 64)
			pthread_cond_wait(&cond, &lock);
		queue[q_tail] = base + i;
		q_tail = (q_tail + 1) % 64;
		q_count++;
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
	}
	pthread_mutex_lock(&lock);
	producers_left--;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	return NULL;
}

static void *consumer(void *arg)
{
	(void)arg;
	probe();
	tls_sum = 0;
	for (;;) {
		long v;

		pthread_mutex_lock(&lock);
		while (q_count == 0 && producers_left > 0)
			pthread_cond_wait(&cond, &lock);
		if (q_count == 0) {
			pthread_mutex_unlock(&lock);
			break;
		}
		v = queue[q_head];
		q_head = (q_head + 1) % 64;
		q_count--;
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
		tls_sum += v;
	}
	pthread_mutex_lock(&lock);
	consumed_sum += tls_sum;
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* ---- nested creation, pthread_exit, TSD destructors, once ---- */
static pthread_key_t key;
static int destructor_runs, once_runs;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void destructor(void *p)
{
	pthread_mutex_lock(&lock);
	destructor_runs++;
	pthread_mutex_unlock(&lock);
	free(p);
}

static void once_init(void)
{
	once_runs++;
}

static void *leaf(void *arg)
{
	probe();
	pthread_once(&once, once_init);
	pthread_setspecific(key, malloc(16));
	pthread_exit((void *)((intptr_t)arg * 10));
}

static void *nester(void *arg)
{
	pthread_t t[NESTED];
	intptr_t sum = 0;

	probe();
	pthread_setspecific(key, malloc(16));
	for (intptr_t i = 0; i < NESTED; i++)
		if (pthread_create(&t[i], NULL, leaf, (void *)(i + 1)))
			abort();
	for (int i = 0; i < NESTED; i++) {
		void *r;

		pthread_join(t[i], &r);
		sum += (intptr_t)r;
	}
	(void)arg;
	return (void *)sum;
}

/* ---- detached threads ---- */
static int detached_done;

static void *detached(void *arg)
{
	(void)arg;
	probe();
	pthread_mutex_lock(&lock);
	detached_done++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* ---- cancellation ---- */
static int cleanup_ran;

static void cleanup(void *arg)
{
	(void)arg;
	cleanup_ran = 1;
}

static void *cancellable(void *arg)
{
	int *started = arg;

	probe();
	pthread_cleanup_push(cleanup, NULL);
	pthread_mutex_lock(&lock);
	*started = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (;;)
		pause();	/* a cancellation point */
	pthread_cleanup_pop(0);
	return NULL;
}

/* ---- fork from a thread ---- */
static void *forker(void *arg)
{
	pid_t pid;
	int st = 0;

	(void)arg;
	probe();
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* The child: one thread, which can create more. */
		pthread_t t;
		void *r = NULL;

		probe_total = probe_registered = probe_unregistered = probe_errors = 0;
		probe();
		if (pthread_create(&t, NULL, nester, NULL) || pthread_join(t, &r))
			_exit(99);
		if (probing)
			printf("probe (fork child): %ld threads, %ld registered, %ld unregistered, %ld errors\n",
			       probe_total, probe_registered, probe_unregistered, probe_errors);
		fflush(stdout);
		_exit((int)(intptr_t)r);	/* 10 + 20 + 30 */
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return (void *)-1;
	return (void *)(intptr_t)(WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st));
}

static void at_exit(void)
{
	printf("atexit handler ran\n");
	if (probing)
		printf("probe: %ld threads, %ld registered, %ld unregistered, %ld errors\n", probe_total,
		       probe_registered, probe_unregistered, probe_errors);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	pthread_t prod[WORKERS / 2], cons[WORKERS / 2], n, c, f, d;
	pthread_attr_t attr;
	long expect = 0;
	void *r;
	int started = 0;

	probing = argc > 1 && !strcmp(argv[1], "-p");
	setvbuf(stdout, NULL, _IOLBF, 0);
	atexit(at_exit);
	probe();
	pthread_key_create(&key, destructor);

	/* Producers and consumers, the consumers with a 256 KiB stack. */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	producers_left = WORKERS / 2;
	for (int i = 0; i < WORKERS / 2; i++) {
		if (pthread_create(&prod[i], NULL, producer, (void *)(intptr_t)(i * 1000000L)) ||
		    pthread_create(&cons[i], &attr, consumer, NULL))
			abort();
		for (long k = 1; k <= ITEMS; k++)
			expect += i * 1000000L + k;
	}
	for (int i = 0; i < WORKERS / 2; i++) {
		pthread_join(prod[i], NULL);
		pthread_join(cons[i], NULL);
	}
	printf("queue: consumed sum %s (%ld)\n", consumed_sum == expect ? "exact" : "WRONG", consumed_sum);

	/* Nested creation with pthread_exit values and TSD destructors. */
	if (pthread_create(&n, NULL, nester, NULL) || pthread_join(n, &r))
		abort();
	printf("nested: pthread_exit values sum %ld, destructors %d, once %d\n", (long)(intptr_t)r, destructor_runs,
	       once_runs);

	/* Detached threads. */
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < DETACHED; i++)
		if (pthread_create(&d, &attr, detached, NULL))
			abort();
	pthread_mutex_lock(&lock);
	while (detached_done < DETACHED)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	printf("detached: %d finished\n", detached_done);
	pthread_attr_destroy(&attr);

	/* Cancellation of a thread blocked in pause(). */
	if (pthread_create(&c, NULL, cancellable, &started))
		abort();
	pthread_mutex_lock(&lock);
	while (!started)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	pthread_cancel(c);
	pthread_join(c, &r);
	printf("cancel: %s, cleanup handler %s\n", r == PTHREAD_CANCELED ? "cancelled" : "NOT cancelled",
	       cleanup_ran ? "ran" : "did NOT run");

	/* fork() from a thread; the child creates nested threads. */
	if (pthread_create(&f, NULL, forker, NULL) || pthread_join(f, &r))
		abort();
	printf("fork: child exit status %ld\n", (long)(intptr_t)r);
	exit(3);
}
