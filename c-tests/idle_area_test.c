/* SPDX-License-Identifier: MIT */
/*
 * Critical sections that run before the library's constructor and after
 * its destructor abort cleanly and leave memory and the thread control
 * block alone.
 *
 * Before: a DT_PREINIT_ARRAY function of this program runs before every
 * shared object's constructor (the library's included), after the dynamic
 * linker applied every relocation. It runs sections (inline and, in the
 * -noinline build, the exported functions) with the CPU number the
 * accessors give, with -1 (the cpu_id of an unregistered thread, which
 * gets past the CPU check to the ownership check) and in MM_CID mode, and
 * records what they did: nothing may commit, and the first 64 bytes at
 * the thread pointer (glibc's TCB header; offset 8, where a section with
 * rseq_offset 0 would store rseq_cs, is its dtv pointer on x86_64) stay
 * as they were. On x86_64 rseq_offset then designates the library's idle
 * area (never 0).
 *
 * After: main() calls the library's own destructors (its DT_FINI_ARRAY,
 * found with dl_iterate_phdr), which the real exit later calls again
 * (they are idempotent). When the library owned registration, rseq_offset
 * is back to its uninitialised value and every section aborts; with glibc
 * owning registration the area stays glibc's and sections still commit
 * (as with librseq).
 */
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <rseq/rseq.h>
#include <stdint.h>
#include <string.h>

#include "tap.h"

#define TCB_BYTES 64

struct early {
	bool ran;
	ptrdiff_t offset;
	int32_t cpu_raw;
	uint32_t cpu_start;
	int ret_start, ret_minus1, ret_mm_cid, ret_api;
#if defined(RSEQ_ARCH_HAS_SEQUENCES) && !defined(RSEQ_NO_INLINE) && RSEQ_ARCH_ALWAYS_AN_AREA
	bool arch_level;
#endif
	intptr_t counter;
	bool tcb_same;
};

static struct early early;
static unsigned char tcb_copy[TCB_BYTES];

static void save_tcb(void)
{
	memcpy(tcb_copy, rseq_thread_pointer(), TCB_BYTES);
}

static bool tcb_unchanged(void)
{
	return memcmp(tcb_copy, rseq_thread_pointer(), TCB_BYTES) == 0;
}

/* The sections an early or late caller would run. The arch-level inline
 * functions report an abort without the library's slow path (which
 * initialises the library: after the first public call, the library is
 * up). */
static void run_sections(struct early *e)
{
	e->offset = rseq_offset;
	e->cpu_raw = rseq_current_cpu_raw();
	e->cpu_start = rseq_cpu_start();
	save_tcb();
#if defined(RSEQ_ARCH_HAS_SEQUENCES) && !defined(RSEQ_NO_INLINE) && RSEQ_ARCH_ALWAYS_AN_AREA
	e->arch_level = true;
	e->ret_start = rseq_arch_load_add_store_relaxed_cpu_id(RSEQ_ARCH_AREA(),
		rseq_cpu_op_owner_word((int)e->cpu_start, RSEQ_CPU_OP_WORD_CPU_ID), (int)e->cpu_start,
		&e->counter, 1);
	e->ret_minus1 = rseq_arch_load_add_store_relaxed_cpu_id(RSEQ_ARCH_AREA(),
		rseq_cpu_op_owner_word(-1, RSEQ_CPU_OP_WORD_CPU_ID), -1, &e->counter, 1);
	e->ret_mm_cid = rseq_arch_load_add_store_relaxed_mm_cid(RSEQ_ARCH_AREA(),
		rseq_cpu_op_owner_word((int)rseq_current_mm_cid(), RSEQ_CPU_OP_WORD_MM_CID),
		(int)rseq_current_mm_cid(), &e->counter, 1);
#else
	e->ret_start = e->ret_minus1 = e->ret_mm_cid = -1;
#endif
	/* The public path last (its slow path may initialise the library). */
	e->ret_api = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &e->counter, 1, -1);
	e->tcb_same = tcb_unchanged();
	e->ran = true;
}

static void preinit(int argc, char **argv, char **envp)
{
	(void)argc;
	(void)argv;
	(void)envp;
	run_sections(&early);
}

__attribute__((section(".preinit_array"), used))
static void (*const preinit_entry)(int, char **, char **) = preinit;

/* The library's DT_FINI_ARRAY, found among the loaded objects. */
struct fini {
	void (**array)(void);
	size_t n;
};

static int find_fini(struct dl_phdr_info *info, size_t size, void *data)
{
	struct fini *f = data;

	(void)size;
	if (!info->dlpi_name || !strstr(info->dlpi_name, "librseq.so"))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		if (info->dlpi_phdr[i].p_type != PT_DYNAMIC)
			continue;
		const ElfW(Dyn) *d = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
		uintptr_t arr = 0;
		size_t sz = 0;

		for (; d->d_tag != DT_NULL; d++) {
			if (d->d_tag == DT_FINI_ARRAY)
				arr = d->d_un.d_ptr;
			else if (d->d_tag == DT_FINI_ARRAYSZ)
				sz = d->d_un.d_val;
		}
		if (arr) {
			/* glibc leaves DT_FINI_ARRAY unrelocated in l_ld. */
			f->array = (void (**)(void))(info->dlpi_addr + arr);
			f->n = sz / sizeof(void *);
		}
		return 1;
	}
	return 0;
}

int main(void)
{
	bool glibc_owns = rseq_available(RSEQ_AVAILABLE_QUERY_LIBC);

	plan(14);
	ok(early.ran, "the preinit function ran (before every constructor)");
	diag("before the constructor: rseq_offset %td, cpu_id %d, cpu_id_start %u; returns %d %d %d, api %d",
	     early.offset, early.cpu_raw, early.cpu_start, early.ret_start, early.ret_minus1, early.ret_mm_cid,
	     early.ret_api);
#if RSEQ_ARCH_ALWAYS_AN_AREA
	ok(early.offset != 0, "x86_64: rseq_offset designates the idle area before the constructor (%td)",
	   early.offset);
#else
	ok(early.offset == 0, "rseq_offset is 0 before the constructor");
#endif
	ok(early.cpu_raw == RSEQ_ABI_CPU_ID_UNINITIALIZED, "rseq_current_cpu_raw() is -1 before the constructor");
	ok(early.cpu_start == 0, "rseq_cpu_start() is 0 before the constructor");
	ok(early.ret_start == -1, "a section with rseq_cpu_start()'s CPU aborts before the constructor");
	ok(early.ret_minus1 == -1, "a section with CPU -1 (gets to the ownership check) aborts");
	ok(early.ret_mm_cid == -1, "an MM_CID section aborts before the constructor");
	ok(early.ret_api == -1, "rseq_load_add_store__ptr() with CPU -1 aborts before the constructor");
	ok(early.counter == 0, "no early section committed (counter %ld)", (long)early.counter);
	ok(early.tcb_same, "the thread control block is unchanged by the early sections");

	/* After the library's destructor. */
	struct fini f = { 0 };

	dl_iterate_phdr(find_fini, &f);
	ok(f.array && f.n > 0, "found the library's DT_FINI_ARRAY (%zu entries)", f.n);
	for (size_t i = 0; f.array && i < f.n; i++)
		f.array[i]();
	struct early late = { 0 };

	run_sections(&late);
	diag("after the destructor: rseq_offset %td, cpu_id %d; returns %d %d %d, api %d; glibc owns %d",
	     late.offset, late.cpu_raw, late.ret_start, late.ret_minus1, late.ret_mm_cid, late.ret_api,
	     glibc_owns);
	if (glibc_owns) {
		/* glibc's area stays in use, as with librseq. */
		ok(late.offset != 0 && late.cpu_raw >= 0, "glibc owns: its area stays in use after the destructor");
		ok(late.ret_minus1 == -1 && late.ret_api == -1, "sections with CPU -1 abort");
	} else {
		ok(late.cpu_raw == RSEQ_ABI_CPU_ID_UNINITIALIZED,
		   "library owned: rseq_current_cpu_raw() is -1 after the destructor");
		ok(late.ret_start == -1 && late.ret_minus1 == -1 && late.ret_mm_cid == -1 && late.counter == 0,
		   "library owned: every section aborts after the destructor (counter %ld)", (long)late.counter);
	}
	ok(late.tcb_same, "the thread control block is unchanged by the late sections");
	return exit_status();
}
