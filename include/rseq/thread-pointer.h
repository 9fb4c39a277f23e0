/* SPDX-License-Identifier: MIT */
/*
 * rseq/thread-pointer.h: the thread pointer, from which rseq_offset is
 * measured. Part of the librseq-compatible public API.
 */
#ifndef _RSEQ_THREAD_POINTER_H
#define _RSEQ_THREAD_POINTER_H

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the calling thread's thread pointer (what %fs:0 / tpidr_el0 hold). */
static inline __attribute__((always_inline))
void *rseq_thread_pointer(void)
{
#if defined(__x86_64__)
	void *__result;
	__asm__ ("mov %%fs:0, %0" : "=r" (__result));
	return __result;
#elif defined(__i386__)
	void *__result;
	__asm__ ("mov %%gs:0, %0" : "=r" (__result));
	return __result;
#elif defined(__aarch64__)
	void *__result;
	__asm__ ("mrs %0, tpidr_el0" : "=r" (__result));
	return __result;
#else
	return __builtin_thread_pointer();
#endif
}

#ifdef __cplusplus
}
#endif

#endif /* _RSEQ_THREAD_POINTER_H */
