/* SPDX-License-Identifier: MIT */
/*
 * rseq/inject.h: the code-injection hooks of the inline critical sections
 * (librseq-compatible), for stress tests. Each hook expands to nothing
 * unless the program defines it before including <rseq/rseq.h>, so normal
 * programs get exactly the library's sections.
 *
 *   RSEQ_INJECT_ASM(n)   assembly text (string literals) inserted at
 *                        injection point n of every inline section:
 *                        1 before the section starts, 2 right after its
 *                        start, 3 after the CPU (mm_cid) and ownership
 *                        checks, then one point after each compare of
 *                        the family and before its commit (4, 5), and
 *                        the last one right after the commit (4 for the
 *                        add families, 5 for load_cbne_store and
 *                        load_cbeq_store_add_load_store, 6 for the
 *                        others). Points 2 up to the one before the
 *                        commit are inside the section: an interruption
 *                        there aborts it. The text may use the
 *                        scratch register the architecture leaves dead
 *                        at every point (%rax/%eax on x86_64, x15/w15
 *                        on aarch64), the flags, and registers it names
 *                        in RSEQ_INJECT_CLOBBER other than those the
 *                        sections use themselves (%rcx, %rsi, %rdi on
 *                        x86_64; x14 on aarch64). It must not touch the
 *                        stack, and may define local labels 222 and 333
 *                        (no others). On aarch64 load_cbeq_store_add_
 *                        load_store has no point 4.
 *   RSEQ_INJECT_INPUT    extra input operands of those sections, each
 *                        preceded by a comma: , [name] "m" (var)
 *   RSEQ_INJECT_CLOBBER  extra clobbers, each preceded by a comma
 *   RSEQ_INJECT_C(n)     C statements; point 9 runs at the top of every
 *                        inline section (outside it), once per attempt
 *   RSEQ_INJECT_FAILED   C statements run when a section aborted (before
 *                        it returns -1)
 *
 * With RSEQ_NO_INLINE the operations run inside the library, whose
 * sections have no injection points: the hooks then have no effect.
 */
#ifndef _RSEQ_INJECT_H
#define _RSEQ_INJECT_H

#ifndef RSEQ_INJECT_ASM
#define RSEQ_INJECT_ASM(n)
#endif

#ifndef RSEQ_INJECT_C
#define RSEQ_INJECT_C(n)
#endif

#ifndef RSEQ_INJECT_INPUT
#define RSEQ_INJECT_INPUT
#endif

#ifndef RSEQ_INJECT_CLOBBER
#define RSEQ_INJECT_CLOBBER
#endif

#ifndef RSEQ_INJECT_FAILED
#define RSEQ_INJECT_FAILED
#endif

#endif /* _RSEQ_INJECT_H */
