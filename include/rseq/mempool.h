/* SPDX-License-Identifier: MIT */
/*
 * rseq/mempool.h: the per-CPU memory pool, source-compatible with
 * librseq's <rseq/mempool.h>.
 *
 * A per-CPU pool hands out items that exist once per CPU: the pointer
 * returned (type-annotated __rseq_percpu) is CPU 0's copy, and CPU n's
 * copy is at ptr + n * stride; rseq_percpu_ptr(ptr, cpu[, stride])
 * computes it. The stride (default RSEQ_MEMPOOL_STRIDE, 64 KiB) must be
 * the same in rseq_mempool_create() (through the attribute),
 * rseq_percpu_ptr() and rseq_mempool_percpu_free(). A global pool has a
 * single copy (rseq_mempool_malloc(), rseq_mempool_free()).
 *
 * Pools, sets and attributes are thread-safe; see README.md ("Memory
 * pool") for the populate policies, robust mode and error handling.
 */
#ifndef _RSEQ_MEMPOOL_H
#define _RSEQ_MEMPOOL_H

#include <rseq/compiler.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Default distance between two CPUs' copies of an item (64 KiB). */
#define RSEQ_MEMPOOL_STRIDE	(1U << 16)

/* Marks pointers to per-CPU items (CPU 0's copy); no effect on the code. */
#define __rseq_percpu

struct rseq_mempool;
struct rseq_mempool_attr;
struct rseq_mempool_set;

/*
 * RSEQ_MEMPOOL_POPULATE_COW_INIT (default): every CPU's slice is a
 * copy-on-write view of shared initial values; a CPU's pages are
 * populated only when that CPU's copy is written. Not usable across fork
 * (destroying the pool in the child is fine).
 * RSEQ_MEMPOOL_POPULATE_COW_ZERO: copy-on-write from the zero page; as
 * long as items are zero-initialised, CPUs that never write keep no pages.
 */
enum rseq_mempool_populate_policy {
	RSEQ_MEMPOOL_POPULATE_COW_INIT = 0,
	RSEQ_MEMPOOL_POPULATE_COW_ZERO = 1,
};

#ifdef __cplusplus
}
#endif

#include <rseq/generated/mempool-api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Single-copy views of the allocation functions (global pools). */
static inline void *rseq_mempool_malloc(struct rseq_mempool *pool)
{
	return (void *) rseq_mempool_percpu_malloc(pool);
}

static inline void *rseq_mempool_zmalloc(struct rseq_mempool *pool)
{
	return (void *) rseq_mempool_percpu_zmalloc(pool);
}

static inline void *rseq_mempool_malloc_init(struct rseq_mempool *pool, void *init_ptr, size_t init_len)
{
	return (void *) rseq_mempool_percpu_malloc_init(pool, init_ptr, init_len);
}

static inline void *rseq_mempool_set_malloc(struct rseq_mempool_set *pool_set, size_t len)
{
	return (void *) rseq_mempool_set_percpu_malloc(pool_set, len);
}

static inline void *rseq_mempool_set_zmalloc(struct rseq_mempool_set *pool_set, size_t len)
{
	return (void *) rseq_mempool_set_percpu_zmalloc(pool_set, len);
}

static inline void *rseq_mempool_set_malloc_init(struct rseq_mempool_set *pool_set, void *init_ptr, size_t len)
{
	return (void *) rseq_mempool_set_percpu_malloc_init(pool_set, init_ptr, len);
}

#ifdef __cplusplus
}
#endif

/*
 * rseq_mempool_percpu_free(ptr[, stride]), rseq_mempool_free(ptr[, stride]):
 * free an item; the stride defaults to RSEQ_MEMPOOL_STRIDE.
 */
#define rseq_mempool_percpu_free(_ptr, _stride...)				\
	librseq_mempool_percpu_free((void *) (_ptr),				\
		RSEQ_PARAM_SELECT_ARG1(_, ##_stride, RSEQ_MEMPOOL_STRIDE))

#define rseq_mempool_free(_ptr, _stride...)					\
	librseq_mempool_percpu_free((void __rseq_percpu *) (_ptr),		\
		RSEQ_PARAM_SELECT_ARG1(_, ##_stride, RSEQ_MEMPOOL_STRIDE))

/*
 * rseq_percpu_ptr(ptr, cpu[, stride]): CPU `cpu`'s copy of the per-CPU
 * item `ptr`, with ptr's type; the stride defaults to RSEQ_MEMPOOL_STRIDE.
 */
#define rseq_percpu_ptr(_ptr, _cpu, _stride...)					\
	((__typeof__(*(_ptr)) *) ((uintptr_t) (_ptr) +				\
		((unsigned int) (_cpu) *					\
		 (uintptr_t) RSEQ_PARAM_SELECT_ARG1(_, ##_stride, RSEQ_MEMPOOL_STRIDE))))

#endif /* _RSEQ_MEMPOOL_H */
