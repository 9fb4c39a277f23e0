/* SPDX-License-Identifier: MIT */
/*
 * The library's own per-thread storage, used when glibc does not own rseq
 * registration. It is C only because stable Rust cannot choose a TLS model.
 *
 * Both variables are initial-exec TLS:
 *  - the kernel ABI needs the rseq area at the same offset from the thread
 *    pointer in every thread (that offset is the exported rseq_offset), and
 *    only static TLS guarantees it, also when the library is dlopen'ed;
 *  - reaching static TLS never calls __tls_get_addr, so never allocates,
 *    so the registration code stays async-signal-safe.
 * The area is kept small (64 bytes, aligned 32) so that glibc's static TLS
 * surplus can hold it when the library is dlopen'ed; librseq's 1024-byte
 * aligned area cannot be. 32 is the alignment every kernel accepts for a
 * 32-byte registration; aligning to 64 made dlopen fail on aarch64 glibc
 * ("cannot allocate memory in static TLS block": its surplus is reserved
 * with less slack for alignment). Registration uses more than 32 bytes of
 * the area only when the kernel's feature size and AT_RSEQ_ALIGN allow it
 * (see registration.rs); a kernel that asks for 64-byte alignment (feature
 * size above 32) gets the original 32-byte registration.
 */
#include <stddef.h>
#include <stdint.h>
#include <rseq/thread-pointer.h>

#define RSEQ_IMPL_AREA_SIZE 64
#define RSEQ_IMPL_AREA_ALIGN 32

union rseq_impl_area {
	unsigned char bytes[RSEQ_IMPL_AREA_SIZE];
	struct {
		uint32_t cpu_id_start;
		uint32_t cpu_id;
	} head;
};

/* cpu_id starts at -1 (RSEQ_CPU_ID_UNINITIALIZED): an unregistered thread
 * must fail every critical section's CPU check. */
#if defined(__riscv)
/* On riscv the thread pointer points at the first TLS block itself, so the
 * area could sit at offset 0, the rseq_offset value that means "no area":
 * keep one aligned slot in front of it. */
static __thread union rseq_impl_area rseq_impl_area_lead[2]
	__attribute__((tls_model("initial-exec"), aligned(RSEQ_IMPL_AREA_ALIGN))) = {
	[1] = { .head = { .cpu_id_start = 0, .cpu_id = (uint32_t)-1 } },
};
#define rseq_impl_area (rseq_impl_area_lead[1])
#else
static __thread union rseq_impl_area rseq_impl_area
	__attribute__((tls_model("initial-exec"), aligned(RSEQ_IMPL_AREA_ALIGN))) = {
	.head = { .cpu_id_start = 0, .cpu_id = (uint32_t)-1 },
};
#endif

#if defined(__x86_64__)
/* The idle area: what rseq_offset designates before the library's
 * initialisation and after its destructor (x86_64), instead of 0. It is
 * never registered with the kernel: cpu_id reads -1
 * (RSEQ_CPU_ID_UNINITIALIZED) in every thread, so a critical section that
 * runs then (a constructor that runs before the library's in a static
 * link, another thread during exit()) fails its CPU check and aborts; its
 * rseq_cs store lands here, not in the thread control block, which is
 * what offset 0 would designate. The inline sections therefore need no
 * `rseq_offset == 0` test. 32 bytes: every field a section or accessor
 * reads (cpu_id_start, cpu_id, rseq_cs, node_id, mm_cid). */
__attribute__((visibility("hidden"), used))
__thread struct { uint32_t words[8]; } rseq_impl_idle_area
	__attribute__((tls_model("initial-exec"), aligned(RSEQ_IMPL_AREA_ALIGN))) = {
	.words = { 0, (uint32_t)-1 },
};

/* rseq_offset's initial value is this area's offset from the thread
 * pointer, which only the dynamic linker knows. The linkers refuse a
 * TPOFF64 data relocation in a shared object, so the value comes from an
 * IFUNC: the data word holds the "address" of rseq_impl_idle_offset,
 * resolved through an IRELATIVE relocation whose resolver returns the
 * offset. The resolver reads the offset from the GOT entry of an
 * initial-exec access (relocated before any IRELATIVE relocation of the
 * object, and a link-time constant in a static program), never %fs: the
 * thread pointer may not be set up yet when resolvers run. */
__asm__(".pushsection .text.rseq_impl_idle_offset,\"ax\",@progbits\n"
	".balign 16\n"
	".type rseq_impl_idle_offset_resolver,@function\n"
	"rseq_impl_idle_offset_resolver:\n"
	"	movq rseq_impl_idle_area@gottpoff(%rip), %rax\n"
	"	ret\n"
	".size rseq_impl_idle_offset_resolver, .-rseq_impl_idle_offset_resolver\n"
	".globl rseq_impl_idle_offset\n"
	".hidden rseq_impl_idle_offset\n"
	".type rseq_impl_idle_offset,@gnu_indirect_function\n"
	".set rseq_impl_idle_offset, rseq_impl_idle_offset_resolver\n"
	".popsection\n");

/* The same offset, for the library's own code (the destructor stores it
 * back into rseq_offset). */
__attribute__((visibility("hidden")))
ptrdiff_t rseq_impl_idle_area_offset(void)
{
	return (char *)&rseq_impl_idle_area - (char *)rseq_thread_pointer();
}
#endif

/* Private per-thread registration state (never kernel-owned memory),
 * updated with atomic read-modify-write operations (8-aligned for them on
 * 32-bit targets too). */
static __thread uint64_t rseq_impl_thread_state
	__attribute__((tls_model("initial-exec"), aligned(8)));

__attribute__((visibility("hidden")))
ptrdiff_t rseq_impl_area_offset(void)
{
	return (char *)&rseq_impl_area - (char *)rseq_thread_pointer();
}

__attribute__((visibility("hidden")))
unsigned int rseq_impl_area_size(void)
{
	return sizeof(rseq_impl_area);
}

__attribute__((visibility("hidden")))
unsigned int rseq_impl_area_align(void)
{
	return __alignof__(rseq_impl_area);
}

__attribute__((visibility("hidden")))
uint64_t *rseq_impl_thread_state_ptr(void)
{
	return &rseq_impl_thread_state;
}

/* The thread pointer, for architectures whose Rust code has no inline
 * assembly of its own (see src/arch/unsupported.rs). */
__attribute__((visibility("hidden")))
void *rseq_impl_thread_pointer(void)
{
	return rseq_thread_pointer();
}

/* The calling thread's kernel thread id, cached by the cpu-op engine
 * (0: not cached yet; the fork child handler resets it). The ownership
 * words hold their owner's tid (priority-inheritance futexes). Static
 * TLS: no allocation on first use, safe in signal handlers. */
static __thread int32_t rseq_impl_cpu_op_tid
	__attribute__((tls_model("initial-exec")));

__attribute__((visibility("hidden")))
int32_t *rseq_impl_cpu_op_tid_ptr(void)
{
	return &rseq_impl_cpu_op_tid;
}

/* The calling thread's scheduling-policy cache of the abort slow path
 * (owner.rs, caller_is_real_time): (CLOCK_MONOTONIC ns << 1) | real-time,
 * 0 when never asked. Static TLS, as above. */
static __thread int64_t rseq_impl_policy_cache
	__attribute__((tls_model("initial-exec")));

__attribute__((visibility("hidden")))
int64_t *rseq_impl_policy_cache_ptr(void)
{
	return &rseq_impl_policy_cache;
}

/* The anchor: what a second copy of the library loaded into the same
 * process (librseq.a linked into the executable plus librseq.so
 * dlopen'ed, say) needs to share this copy's ownership table and
 * registration (see src/anchor.rs). Hidden: never interposed, so each
 * copy has its own; copies find each other through the ELF note below,
 * which dl_iterate_phdr reaches in every loaded object, exported symbols
 * or not. */
struct rseq_impl_anchor {
	uint64_t words[12];
};

__attribute__((visibility("hidden")))
struct rseq_impl_anchor rseq_impl_anchor;

__attribute__((visibility("hidden")))
struct rseq_impl_anchor *rseq_impl_anchor_ptr(void)
{
	return &rseq_impl_anchor;
}

/* Note "rseqimpl", type 0x52534551: a 4-byte descriptor holding the
 * anchor's address relative to the descriptor itself (resolved by the
 * static linker: no dynamic relocation in the read-only note; a 32-bit
 * PC-relative relocation exists on every architecture). "R"
 * (SHF_GNU_RETAIN) keeps it through --gc-sections. */
__asm__(".pushsection .note.rseq_impl,\"aR\",%note\n"
	".balign 4\n"
	".long 9\n"
	".long 4\n"
	".long 0x52534551\n"
	".asciz \"rseqimpl\"\n"
	".balign 4\n"
	".long rseq_impl_anchor - .\n"
	".popsection\n");

/* glibc's pthread_create under its internal name, for a fully static
 * program, where dlsym(RTLD_NEXT) finds nothing. Weak: a dynamic libc does
 * not export the name (this is then NULL, and dlsym finds the function);
 * a static link gets it with -Wl,-u,__pthread_create_2_1, which
 * `pkg-config --static --libs librseq` adds (the member it pulls from
 * libc.a defines pthread_create weak, so the library's stays in use). */
#include <pthread.h>
extern int __pthread_create_2_1(pthread_t *, const pthread_attr_t *,
				void *(*)(void *), void *) __attribute__((weak));

__attribute__((visibility("hidden")))
void *rseq_impl_static_pthread_create(void)
{
	return (void *)__pthread_create_2_1;
}
