/* SPDX-License-Identifier: MIT */
/*
 * glibc_pthread_create(): creates a thread with glibc's own
 * pthread_create, bypassing the library's interposer, as a thread created
 * before the library was loaded (or by a library calling glibc
 * internally) would be: it starts without the library's registration and
 * tests the first-use path of automatic registration.
 */
#ifndef RSEQ_TESTS_GLIBC_THREAD_H
#define RSEQ_TESTS_GLIBC_THREAD_H

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

typedef int (*pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static inline int glibc_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	void *sym = libc ? dlsym(libc, "pthread_create") : NULL;
	pthread_create_fn create;

	if (!sym)
		return -1;
	memcpy(&create, &sym, sizeof(create));
	return create(t, attr, fn, arg);
}

#endif /* RSEQ_TESTS_GLIBC_THREAD_H */
