/* SPDX-License-Identifier: MIT */
/*
 * rseq/pseudocode.h: the vocabulary of the operation names (librseq-
 * compatible). Documentation only: this header defines nothing.
 *
 * Each operation of <rseq/rseq.h> is named after the steps it runs, in
 * order, between the start of its critical section and its commit:
 *
 *   load     read a word from memory (the first operand)
 *   store    write a word to memory; the last store is the commit, and
 *            nothing before it is visible as committed
 *   cbne     compare the last loaded word with a value; if Not Equal,
 *            leave the section and return 1 (nothing committed)
 *   cbeq     compare; if EQual, leave the section and return 1
 *   add      add a value to the last loaded word (or to an offset)
 *   memcpy   copy a buffer inside the section (speculative until the
 *            commit: a restart may leave it partly written)
 *
 * so rseq_load_cbne_store__ptr(mo, mode, v, expect, newv, cpu) is
 *   load *v; if it differs from expect -> 1; store newv to *v (commit)
 * and rseq_load_add_load_load_add_store__ptr(mo, mode, ptr, off, inc, cpu)
 *   load *ptr; add off; load the pointer there; load *that; add inc;
 *   store it back (commit).
 *
 * Every section first checks that the thread runs on `cpu` (or holds
 * mm_cid `cpu`) and returns -1 otherwise, and returns -1 whenever the
 * kernel aborts it (preemption, migration, signal). `mo` orders the
 * commit: RSEQ_MO_RELAXED, or RSEQ_MO_RELEASE (a store-release) for the
 * families with a store before the commit.
 */
#ifndef _RSEQ_PSEUDOCODE_H
#define _RSEQ_PSEUDOCODE_H
#endif /* _RSEQ_PSEUDOCODE_H */
