/* SPDX-License-Identifier: MIT */
/*
 * <linux/cpu_opv.h>: the CPU op vector ABI of the 2017 "Restartable
 * sequences and CPU op vector" series (v12 numbering). The system call was
 * never merged; librseq's cpu_opv() provides it in user space with the
 * same layout. `pkg-config --cflags libcpu-op` puts this directory on the
 * include path so that <linux/cpu_opv.h> resolves here.
 */
#ifndef _UAPI_LINUX_CPU_OPV_H
#define _UAPI_LINUX_CPU_OPV_H

#include <stdint.h>

#ifdef __LP64__
# define LINUX_FIELD_u32_u64(field)			uint64_t field
# define LINUX_FIELD_u32_u64_INIT_ONSTACK(field, v)	field = (intptr_t)v
#else
# if (defined(__BYTE_ORDER__) && (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)) || defined(__BIG_ENDIAN)
#  define LINUX_FIELD_u32_u64(field)	uint32_t field ## _padding, field
#  define LINUX_FIELD_u32_u64_INIT_ONSTACK(field, v)	\
	field ## _padding = 0, field = (intptr_t)v
# else
#  define LINUX_FIELD_u32_u64(field)	uint32_t field, field ## _padding
#  define LINUX_FIELD_u32_u64_INIT_ONSTACK(field, v)	\
	field = (intptr_t)v, field ## _padding = 0
# endif
#endif

#define CPU_OP_VEC_LEN_MAX		16
#define CPU_OP_ARG_LEN_MAX		24
/* Maximum data len per operation. */
#define CPU_OP_DATA_LEN_MAX		4096
/* Maximum data len for the whole vector: one maximal copy plus 15 words. */
#define CPU_OP_VEC_DATA_LEN_MAX		(4096 + 15 * 8)

/* cpu_opv() flag (extension): cpu is an mm_cid, the vector is atomic with
 * respect to RSEQ_PERCPU_MM_CID critical sections holding that id. */
#define CPU_OP_VEC_FLAG_MM_CID		(1 << 0)

enum cpu_op_type {
	CPU_COMPARE_EQ_OP = 0,	/* compare */
	CPU_COMPARE_NE_OP = 1,	/* compare */
	CPU_MEMCPY_OP = 2,	/* memcpy */
	CPU_ADD_OP = 3,		/* arithmetic */
	CPU_OR_OP = 4,		/* bitwise */
	CPU_AND_OP = 5,		/* bitwise */
	CPU_XOR_OP = 6,		/* bitwise */
	CPU_LSHIFT_OP = 7,	/* shift */
	CPU_RSHIFT_OP = 8,	/* shift */
	CPU_MB_OP = 9,		/* memory barrier */
};

/* One operation of a vector: 32 bytes. */
struct cpu_op {
	int32_t op;	/* enum cpu_op_type. */
	uint32_t len;	/* data length, in bytes. */
	union {
		struct {
			LINUX_FIELD_u32_u64(a);
			LINUX_FIELD_u32_u64(b);
			uint8_t expect_fault_a;
			uint8_t expect_fault_b;
		} compare_op;
		struct {
			LINUX_FIELD_u32_u64(dst);
			LINUX_FIELD_u32_u64(src);
			uint8_t expect_fault_dst;
			uint8_t expect_fault_src;
		} memcpy_op;
		struct {
			LINUX_FIELD_u32_u64(p);
			int64_t count;
			uint8_t expect_fault_p;
		} arithmetic_op;
		struct {
			LINUX_FIELD_u32_u64(p);
			uint64_t mask;
			uint8_t expect_fault_p;
		} bitwise_op;
		struct {
			LINUX_FIELD_u32_u64(p);
			uint32_t bits;
			uint8_t expect_fault_p;
		} shift_op;
		char __padding[CPU_OP_ARG_LEN_MAX];
	} u;
};

#endif /* _UAPI_LINUX_CPU_OPV_H */
