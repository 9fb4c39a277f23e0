/* SPDX-License-Identifier: MIT */
/*
 * rseq/percpu-op.h: per-CPU operations that always complete (2017 API).
 *
 * Each percpu_* operation makes one rseq attempt on `cpu`; a compare
 * failure (> 0) is returned as is; when the attempt aborts (preemption,
 * migration, a signal, a single-stepping debugger, rseq refused by a
 * sandbox, `cpu` not the current CPU), it runs the cpu-op equivalent on
 * the same `cpu`, which completes. Returns 0, > 0 (compare failed), or -1
 * with errno from the cpu-op (see <rseq/cpu-op.h>); the traditional loop
 * `while (ret < 0 && errno == EAGAIN)` stays correct. The _mode variants
 * take an enum rseq_percpu_mode first (with RSEQ_PERCPU_MM_CID, `cpu` is an
 * mm_cid).
 *
 * With RSEQ_NO_INLINE (or on an architecture without inline sequences)
 * these are calls to the library's exported functions, which behave the
 * same.
 */
#ifndef _RSEQ_PERCPU_OP_H
#define _RSEQ_PERCPU_OP_H

#include <rseq/rseq.h>
#include <rseq/cpu-op.h>

#if defined(RSEQ_NO_INLINE) || !defined(RSEQ_ARCH_HAS_SEQUENCES)
#include <rseq/generated/percpu-api.h>
#else

static inline __attribute__((always_inline))
int percpu_cmpeqv_storev_mode(enum rseq_percpu_mode mode, intptr_t *v, intptr_t expect, intptr_t newv, int cpu)
{
	int ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, v, expect, newv, cpu);

	if (rseq_likely(ret >= 0))
		return ret;
	percpu_op_note_fallback(cpu);
	return cpu_op_cmpeqv_storev_mode(mode, v, expect, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_storev(intptr_t *v, intptr_t expect, intptr_t newv, int cpu)
{
	return percpu_cmpeqv_storev_mode(RSEQ_PERCPU_CPU_ID, v, expect, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpnev_storeoffp_load_mode(enum rseq_percpu_mode mode, intptr_t *v, intptr_t expectnot, off_t voffp, intptr_t *load, int cpu)
{
	int ret = rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, v, expectnot, (long)voffp, load, cpu);

	if (rseq_likely(ret >= 0))
		return ret;
	percpu_op_note_fallback(cpu);
	return cpu_op_cmpnev_storeoffp_load_mode(mode, v, expectnot, voffp, load, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpnev_storeoffp_load(intptr_t *v, intptr_t expectnot, off_t voffp, intptr_t *load, int cpu)
{
	return percpu_cmpnev_storeoffp_load_mode(RSEQ_PERCPU_CPU_ID, v, expectnot, voffp, load, cpu);
}

static inline __attribute__((always_inline))
int percpu_addv_mode(enum rseq_percpu_mode mode, intptr_t *v, intptr_t count, int cpu)
{
	int ret = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, v, count, cpu);

	if (rseq_likely(ret >= 0))
		return ret;
	percpu_op_note_fallback(cpu);
	return cpu_op_addv_mode(mode, v, (int64_t)count, cpu);
}

static inline __attribute__((always_inline))
int percpu_addv(intptr_t *v, intptr_t count, int cpu)
{
	return percpu_addv_mode(RSEQ_PERCPU_CPU_ID, v, count, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_storev_storev_mode(enum rseq_percpu_mode mode, intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t newv2, intptr_t newv, int cpu)
{
	int ret = rseq_load_cbne_store_store__ptr(RSEQ_MO_RELAXED, mode, v, expect, v2, newv2, newv, cpu);

	if (rseq_likely(ret >= 0))
		return ret;
	percpu_op_note_fallback(cpu);
	return cpu_op_cmpeqv_storev_storev_mode(mode, v, expect, v2, newv2, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_storev_storev(intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t newv2, intptr_t newv, int cpu)
{
	return percpu_cmpeqv_storev_storev_mode(RSEQ_PERCPU_CPU_ID, v, expect, v2, newv2, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_storev_storev_release_mode(enum rseq_percpu_mode mode, intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t newv2, intptr_t newv, int cpu)
{
	int ret = rseq_load_cbne_store_store__ptr(RSEQ_MO_RELEASE, mode, v, expect, v2, newv2, newv, cpu);

	if (rseq_likely(ret >= 0))
		return ret;
	percpu_op_note_fallback(cpu);
	return cpu_op_cmpeqv_storev_storev_release_mode(mode, v, expect, v2, newv2, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_storev_storev_release(intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t newv2, intptr_t newv, int cpu)
{
	return percpu_cmpeqv_storev_storev_release_mode(RSEQ_PERCPU_CPU_ID, v, expect, v2, newv2, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_cmpeqv_storev_mode(enum rseq_percpu_mode mode, intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t expect2, intptr_t newv, int cpu)
{
	int ret = rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, v, expect, v2, expect2, newv, cpu);

	if (rseq_likely(ret >= 0))
		return ret;
	percpu_op_note_fallback(cpu);
	return cpu_op_cmpeqv_cmpeqv_storev_mode(mode, v, expect, v2, expect2, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_cmpeqv_storev(intptr_t *v, intptr_t expect, intptr_t *v2, intptr_t expect2, intptr_t newv, int cpu)
{
	return percpu_cmpeqv_cmpeqv_storev_mode(RSEQ_PERCPU_CPU_ID, v, expect, v2, expect2, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_memcpy_storev_mode(enum rseq_percpu_mode mode, intptr_t *v, intptr_t expect, void *dst, void *src, size_t len, intptr_t newv, int cpu)
{
	int ret = rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELAXED, mode, v, expect, dst, src, len, newv, cpu);

	if (rseq_likely(ret >= 0))
		return ret;
	percpu_op_note_fallback(cpu);
	return cpu_op_cmpeqv_memcpy_storev_mode(mode, v, expect, dst, src, len, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_memcpy_storev(intptr_t *v, intptr_t expect, void *dst, void *src, size_t len, intptr_t newv, int cpu)
{
	return percpu_cmpeqv_memcpy_storev_mode(RSEQ_PERCPU_CPU_ID, v, expect, dst, src, len, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_memcpy_storev_release_mode(enum rseq_percpu_mode mode, intptr_t *v, intptr_t expect, void *dst, void *src, size_t len, intptr_t newv, int cpu)
{
	int ret = rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELEASE, mode, v, expect, dst, src, len, newv, cpu);

	if (rseq_likely(ret >= 0))
		return ret;
	percpu_op_note_fallback(cpu);
	return cpu_op_cmpeqv_memcpy_storev_release_mode(mode, v, expect, dst, src, len, newv, cpu);
}

static inline __attribute__((always_inline))
int percpu_cmpeqv_memcpy_storev_release(intptr_t *v, intptr_t expect, void *dst, void *src, size_t len, intptr_t newv, int cpu)
{
	return percpu_cmpeqv_memcpy_storev_release_mode(RSEQ_PERCPU_CPU_ID, v, expect, dst, src, len, newv, cpu);
}

#endif /* inline */

#endif /* _RSEQ_PERCPU_OP_H */
