/* SPDX-License-Identifier: MIT */
/*
 * rseq/abi.h: the kernel's restartable-sequences ABI (librseq-compatible
 * names). struct rseq_abi is the per-thread area, struct rseq_abi_cs a
 * critical-section descriptor.
 */
#ifndef _RSEQ_ABI_H
#define _RSEQ_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum rseq_abi_cpu_id_state {
	RSEQ_ABI_CPU_ID_UNINITIALIZED		= -1,
	RSEQ_ABI_CPU_ID_REGISTRATION_FAILED	= -2,
};

enum rseq_abi_flags {
	RSEQ_ABI_FLAG_UNREGISTER = (1 << 0),
};

enum rseq_abi_cs_flags_bit {
	RSEQ_ABI_CS_FLAG_NO_RESTART_ON_PREEMPT_BIT	= 0,
	RSEQ_ABI_CS_FLAG_NO_RESTART_ON_SIGNAL_BIT	= 1,
	RSEQ_ABI_CS_FLAG_NO_RESTART_ON_MIGRATE_BIT	= 2,
};

enum rseq_abi_cs_flags {
	RSEQ_ABI_CS_FLAG_NO_RESTART_ON_PREEMPT	= (1U << RSEQ_ABI_CS_FLAG_NO_RESTART_ON_PREEMPT_BIT),
	RSEQ_ABI_CS_FLAG_NO_RESTART_ON_SIGNAL	= (1U << RSEQ_ABI_CS_FLAG_NO_RESTART_ON_SIGNAL_BIT),
	RSEQ_ABI_CS_FLAG_NO_RESTART_ON_MIGRATE	= (1U << RSEQ_ABI_CS_FLAG_NO_RESTART_ON_MIGRATE_BIT),
};

/* A critical-section descriptor; 32-byte aligned so it never straddles a
 * cache line. */
struct rseq_abi_cs {
	uint32_t version;		/* 0 */
	uint32_t flags;			/* enum rseq_abi_cs_flags (deprecated) */
	uint64_t start_ip;
	uint64_t post_commit_offset;	/* from start_ip */
	uint64_t abort_ip;		/* preceded by RSEQ_SIG */
} __attribute__((aligned(4 * sizeof(uint64_t))));

/* The per-thread area. The kernel fills in rseq_size bytes of it (see
 * <rseq/rseq.h>); fields beyond that are not maintained. */
struct rseq_abi {
	uint32_t cpu_id_start;		/* always a possible CPU */
	uint32_t cpu_id;		/* current CPU, or enum rseq_abi_cpu_id_state */
	union {
		uint64_t ptr64;
#ifdef __LP64__
		uint64_t ptr;
#else
		struct {
#if (defined(__BYTE_ORDER__) && (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)) || defined(__BIG_ENDIAN)
			uint32_t padding;
			uint32_t ptr32;
#else
			uint32_t ptr32;
			uint32_t padding;
#endif
		} ptr;
#endif
		struct {
#ifdef __LP64__
			uint64_t ptr;
#elif (defined(__BYTE_ORDER__) && (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)) || defined(__BIG_ENDIAN)
			uint32_t padding;
			uint32_t ptr;
#else
			uint32_t ptr;
			uint32_t padding;
#endif
		} arch;
	} rseq_cs;			/* struct rseq_abi_cs * of the section in progress */
	uint32_t flags;			/* deprecated, 0 */
	uint32_t node_id;		/* NUMA node (Linux 6.3+) */
	uint32_t mm_cid;		/* memory-map concurrency id (Linux 6.3+) */
	char end[];			/* newer kernels add fields here */
} __attribute__((aligned(4 * sizeof(uint64_t))));

#ifdef __cplusplus
}
#endif

#endif /* _RSEQ_ABI_H */
