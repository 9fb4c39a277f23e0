/* SPDX-License-Identifier: MIT */
/*
 * rseq/rseq.h: restartable sequences, source-compatible with librseq.
 *
 * Link with `pkg-config --cflags --libs librseq`. Threads are registered
 * automatically; critical sections and CPU-number accessors are inline on
 * x86_64, i386, aarch64 and riscv64. Define RSEQ_NO_INLINE before
 * including this header to call the library's exported functions instead
 * (same behaviour).
 *
 * Other knobs, as in librseq (define them before including this header):
 * - RSEQ_INJECT_ASM(n), RSEQ_INJECT_C(n), ...: test hooks, see
 *   <rseq/inject.h>;
 * - RSEQ_COMPARE_TWICE: the inline sections re-check the CPU (mm_cid) and
 *   the compared values right before their commit, and call rseq_bug()
 *   when one changed (which only a kernel or library bug can cause);
 * - RSEQ_GET_ABI_OVERRIDE: this header does not define rseq_get_abi();
 *   the program declares or defines `struct rseq_abi *rseq_get_abi(void)`
 *   (a function or a macro, <rseq/abi.h> gives the type) before including
 *   it, and the inline accessors and sections use that area instead of
 *   the one at rseq_offset. The exported functions (RSEQ_NO_INLINE) keep
 *   using the library's area.
 */
#ifndef _RSEQ_RSEQ_H
#define _RSEQ_RSEQ_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
/* As librseq's: programs rely on it for exit(), abort(), perror(). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include <rseq/abi.h>
#include <rseq/arch.h>
#include <rseq/compiler.h>
#include <rseq/inject.h>
#include <rseq/thread-pointer.h>
#include <rseq/utils.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Offset of the calling thread's rseq area from the thread pointer. On
 * x86_64, before initialisation and after the library's destructor, the
 * offset of an idle area that reads as an unregistered thread's (every
 * critical section aborts there); 0 then on other architectures. */
extern ptrdiff_t rseq_offset;
/* Size of the active rseq feature set: 0 until a thread registered,
 * -1U before initialisation and after the library's destructor. */
extern unsigned int rseq_size;
/* Flags used at registration (0). */
extern unsigned int rseq_flags;

/* Library ABI: the cpu-op ownership table the inline sections check
 * (address of the slot of CPU 0). Not for direct use. Set by the
 * library's initialisation (before it: a boot table whose words are
 * owned forever, so that a section then aborts); const so that the
 * compiler keeps it in a register across the critical sections of a
 * loop. */
extern char *const rseq_cpu_op_owners;

enum rseq_mo {
	RSEQ_MO_RELAXED = 0,
	RSEQ_MO_CONSUME = 1,	/* Unused */
	RSEQ_MO_ACQUIRE = 2,	/* Unused */
	RSEQ_MO_RELEASE = 3,
	RSEQ_MO_ACQ_REL = 4,	/* Unused */
	RSEQ_MO_SEQ_CST = 5,	/* Unused */
};

enum rseq_percpu_mode {
	RSEQ_PERCPU_CPU_ID = 0,
	RSEQ_PERCPU_MM_CID = 1,
};

enum rseq_available_query {
	RSEQ_AVAILABLE_QUERY_KERNEL = 0,
	RSEQ_AVAILABLE_QUERY_LIBC = 1,
};

/* What rseq_init() returns when the library is initialised. */
#define RSEQ_INIT_OK	0

#ifdef __cplusplus
}
#endif

#include <rseq/generated/api.h>

/* An operation called with an order or mode its family does not accept. */
static inline int rseq_invalid_argument(void)
{
	errno = EINVAL;
	return -1;
}

#include <rseq/generated/sequences.h>

#if defined(RSEQ_NO_INLINE) || !defined(RSEQ_ARCH_HAS_SEQUENCES)
#ifdef RSEQ_GET_ABI_OVERRIDE
/* The program's rseq_get_abi() stays its own: the library's is declared
 * under another name. */
#pragma push_macro("rseq_get_abi")
#undef rseq_get_abi
#define rseq_get_abi rseq_get_abi_library
#endif
#include <rseq/generated/inline-api.h>
#ifdef RSEQ_GET_ABI_OVERRIDE
#undef rseq_get_abi
#pragma pop_macro("rseq_get_abi")
#endif
#else

#ifndef RSEQ_GET_ABI_OVERRIDE
/* The calling thread's rseq area. */
static inline struct rseq_abi *rseq_get_abi(void)
{
	return (struct rseq_abi *)((uintptr_t)rseq_thread_pointer() + rseq_offset);
}
#endif

/* Whether the calling thread has an area to read: rseq_offset is 0
 * before the library's initialisation and after its destructor, except
 * where it then designates the library's idle area (x86_64), which reads
 * as an unregistered thread's (cpu_id -1, cpu_id_start, node_id and
 * mm_cid 0). A program's own rseq_get_abi() always has one. */
#if defined(RSEQ_GET_ABI_OVERRIDE) || (defined(RSEQ_ARCH_ALWAYS_AN_AREA) && RSEQ_ARCH_ALWAYS_AN_AREA)
#define RSEQ_HAS_AREA()	1
#else
#define RSEQ_HAS_AREA()	(rseq_offset != 0)
#endif

/* Reads a 32-bit field of the calling thread's area (RSEQ_HAS_AREA()
 * must hold). On x86 one %fs-relative (x86_64) or %gs-relative (i386)
 * load, without a separate read of the thread pointer; volatile, since
 * the kernel changes the fields. */
/* The sanitizers instrument a %fs-relative load as an ordinary one (and
 * fault on the shadow of the small offset): they get the asm load. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSEQ_AREA_NO_SEG_FS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
	__has_feature(memory_sanitizer)
#define RSEQ_AREA_NO_SEG_FS 1
#endif
#endif
#if defined(__x86_64__) && defined(__SEG_FS) && !defined(__STRICT_ANSI__) && \
	!defined(__cplusplus) && !defined(RSEQ_GET_ABI_OVERRIDE) && !defined(RSEQ_AREA_NO_SEG_FS)
/* A C load through GCC's (and clang's) %fs address space: the compiler
 * may fold it into what uses the value (a movslq that sign-extends the
 * CPU number for indexing, say), which an asm statement prevents. */
#define RSEQ_AREA_READ_U32(field)						\
	(*(volatile __seg_fs const uint32_t *)((uintptr_t)rseq_offset +	\
		offsetof(struct rseq_abi, field)))
#elif (defined(__x86_64__) || defined(__i386__)) && !defined(RSEQ_GET_ABI_OVERRIDE)
#if defined(__x86_64__)
#define RSEQ_AREA_SEGMENT "%%fs"
#else
#define RSEQ_AREA_SEGMENT "%%gs"
#endif
#define RSEQ_AREA_READ_U32(field)						\
	__extension__ ({							\
		uint32_t __rseq_v;						\
		__asm__ __volatile__ ("movl " RSEQ_AREA_SEGMENT ":%c1(%2), %0"	\
			: "=r" (__rseq_v)					\
			: "i" (offsetof(struct rseq_abi, field)), "r" (rseq_offset)); \
		__rseq_v;							\
	})
#else
#define RSEQ_AREA_READ_U32(field)	RSEQ_READ_ONCE(rseq_get_abi()->field)
#endif

/* cpu_id: the current CPU, or -1 (not registered) / -2 (registration
 * failed). */
static inline int32_t rseq_current_cpu_raw(void)
{
	if (rseq_unlikely(!RSEQ_HAS_AREA()))
		return RSEQ_ABI_CPU_ID_UNINITIALIZED;
	return (int32_t)RSEQ_AREA_READ_U32(cpu_id);
}

/* cpu_id_start: always a possible CPU (0 when not registered). Pass it to
 * a critical section, which checks it against cpu_id. */
static inline uint32_t rseq_cpu_start(void)
{
	if (rseq_unlikely(!RSEQ_HAS_AREA()))
		return 0;
	return RSEQ_AREA_READ_U32(cpu_id_start);
}

/* The current CPU, through sched_getcpu() when the thread has no rseq
 * registration (which it then tries to get). */
static inline uint32_t rseq_current_cpu(void)
{
	int32_t cpu = rseq_current_cpu_raw();

	if (rseq_unlikely(cpu < 0))
		cpu = rseq_fallback_current_cpu();
	return (uint32_t)cpu;
}

static inline bool rseq_node_id_available(void)
{
	return (int)rseq_size >= (int)rseq_offsetofend(struct rseq_abi, node_id);
}

/* NUMA node of the current CPU (when rseq_node_id_available()). */
static inline uint32_t rseq_current_node_id(void)
{
	if (rseq_unlikely(!RSEQ_HAS_AREA()))
		return 0;
	return RSEQ_AREA_READ_U32(node_id);
}

static inline bool rseq_mm_cid_available(void)
{
	return (int)rseq_size >= (int)rseq_offsetofend(struct rseq_abi, mm_cid);
}

/* The thread's memory-map concurrency id (when rseq_mm_cid_available()). */
static inline uint32_t rseq_current_mm_cid(void)
{
	if (rseq_unlikely(!RSEQ_HAS_AREA()))
		return 0;
	return RSEQ_AREA_READ_U32(mm_cid);
}

static inline void rseq_clear_rseq_cs(void)
{
	if (rseq_unlikely(!RSEQ_HAS_AREA()))
		return;
	RSEQ_WRITE_ONCE(rseq_get_abi()->rseq_cs.arch.ptr, 0);
}

/* Call in each thread between its last critical section and the unload of
 * the code holding that section (or the reuse of JIT memory). */
static inline void rseq_prepare_unload(void)
{
	rseq_clear_rseq_cs();
}

#endif /* inline API */

#endif /* _RSEQ_RSEQ_H */
