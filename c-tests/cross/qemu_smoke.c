/* SPDX-License-Identifier: MIT */
/*
 * aarch64 and riscv64 smoke test under qemu-user, which has no rseq system call (it
 * answers ENOSYS): checks that the library reports rseq as unavailable,
 * that every critical section aborts (-1) without committing anything,
 * that the CPU-number accessors fall back to sched_getcpu(), and that
 * nothing crashes, in the main thread and in a second thread.
 *
 * Then, since no kernel owns the area, it plays the kernel: it writes a
 * CPU number into the thread's area (cpu_id_start, cpu_id, mm_cid) and
 * checks what every section body does when its checks pass
 * (commit, compare failure, memcpy of every length up to 40 bytes), and
 * that it still aborts on a wrong CPU, on a CPU owned by a cpu-op (the
 * acquire load of the ownership word) and, in mm_cid mode, while cpu_id says
 * "not registered". It also checks the descriptor the section stored in
 * rseq_cs: version 0, post-commit offset sane, RSEQ_SIG before abort_ip.
 * Nothing restarts a section under qemu, so these results are exact.
 *
 * Not one of the native *_test.c programs (it expects rseq to be missing).
 * c-tests/cross/qemu-check.sh builds the library, compiles this file with
 * the cross compiler twice (inline sections and -DRSEQ_NO_INLINE) and runs
 * both under `qemu-ARCH -L /usr/ARCH-linux-gnu`:
 *
 *   c-tests/cross/qemu-check.sh [aarch64|riscv64]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include <rseq/rseq.h>

#include "tap.h"

struct node {
	intptr_t payload;
	struct node *next;
};

/* Every family, through both API generations: each must abort and leave
 * memory untouched, whatever CPU number it is given. */
static void check_sections(const char *who, int cpu)
{
	intptr_t v = 1, v2 = 2, load = 0;
	struct node n1 = { 1, NULL };
	intptr_t head = (intptr_t)&n1;
	struct { intptr_t pad; intptr_t *slot; } obj = { 0, &v2 };
	intptr_t base = (intptr_t)&obj;
	char src[24] = "abcdefghijklmnopqrstuvw", dst[24] = { 0 };
	int r[16], i, all = 1;

	r[0] = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 1, 5, cpu);
	r[1] = rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &head, 0,
							 offsetof(struct node, next), &load, cpu);
	r[2] = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_MM_CID, &v, 1, cpu);
	r[3] = rseq_load_add_load_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &base,
						       offsetof(__typeof__(obj), slot), 1, cpu);
	r[4] = rseq_load_cbne_store_store__ptr(RSEQ_MO_RELEASE, RSEQ_PERCPU_MM_CID, &v, 1, &v2, 3, 5, cpu);
	r[5] = rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 1, &v2, 2, 5, cpu);
	r[6] = rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 1, dst, src,
						sizeof(dst), 5, cpu);
	r[7] = rseq_cmpeqv_storev(&v, 1, 5, cpu);
	r[8] = rseq_cmpnev_storeoffp_load(&head, 0, (off_t)offsetof(struct node, next), &load, cpu);
	r[9] = rseq_addv(&v, 1, cpu);
	r[10] = rseq_offset_deref_addv(&base, offsetof(__typeof__(obj), slot), 1, cpu);
	r[11] = rseq_cmpeqv_trystorev_storev(&v, 1, &v2, 3, 5, cpu);
	r[12] = rseq_cmpeqv_trystorev_storev_release(&v, 1, &v2, 3, 5, cpu);
	r[13] = rseq_cmpeqv_cmpeqv_storev(&v, 1, &v2, 2, 5, cpu);
	r[14] = rseq_cmpeqv_trymemcpy_storev(&v, 1, dst, src, 9, 5, cpu);
	r[15] = rseq_cmpeqv_trymemcpy_storev_release(&v, 1, dst, src, 17, 5, cpu);
	for (i = 0; i < 16; i++) {
		if (r[i] != -1) {
			diag("%s: section %d returned %d", who, i, r[i]);
			all = 0;
		}
	}
	ok(all, "%s: every critical section aborts (cpu %d)", who, cpu);
	ok(v == 1 && v2 == 2 && head == (intptr_t)&n1 && load == 0 && dst[0] == 0,
	   "%s: no section committed anything", who);
}

static void check_thread(const char *who)
{
	intptr_t v = 41;
	int cpu, raw, ret;

	errno = 0;
	ok(!rseq_available(RSEQ_AVAILABLE_QUERY_KERNEL) && errno == ENOSYS,
	   "%s: rseq_available(KERNEL) is false with ENOSYS (errno %d)", who, errno);
	ok(!rseq_available(RSEQ_AVAILABLE_QUERY_LIBC), "%s: glibc owns no working registration", who);

	cpu = (int)rseq_current_cpu();
	ok(cpu >= 0 && cpu < rseq_get_max_nr_cpus(),
	   "%s: rseq_current_cpu() falls back to a possible CPU (%d of %d)", who, cpu,
	   rseq_get_max_nr_cpus());
	raw = rseq_current_cpu_raw();
	ok(raw < 0, "%s: rseq_current_cpu_raw() reports no registration (%d)", who, raw);
	ok(rseq_cpu_start() == 0, "%s: rseq_cpu_start() is 0 while unregistered", who);
	ok(rseq_fallback_current_cpu() >= 0, "%s: rseq_fallback_current_cpu() works", who);
	ok(rseq_fallback_current_node() >= 0, "%s: rseq_fallback_current_node() works", who);

	ret = rseq_addv(&v, 1, cpu);
	ok(ret == -1 && v == 41, "%s: rseq_addv returns -1 and adds nothing (ret %d, v %ld)", who, ret,
	   (long)v);
	ret = rseq_addv(&v, 1, raw);
	ok(ret == -1 && v == 41, "%s: rseq_addv with cpu = cpu_id (%d) aborts too", who, raw);

	check_sections(who, cpu);
	check_sections(who, (int)rseq_cpu_start());

	errno = 0;
	ok(rseq_register_current_thread() == -1 && errno == ENOSYS,
	   "%s: rseq_register_current_thread() fails with ENOSYS (errno %d)", who, errno);
	ok(rseq_current_cpu_raw() < 0, "%s: still unregistered after the failed registration", who);

	errno = 0;
	ok(rseq_load_add_store__ptr((enum rseq_mo)RSEQ_MO_ACQUIRE, RSEQ_PERCPU_CPU_ID, &v, 1, cpu) == -1 &&
	   errno == EINVAL && v == 41, "%s: an unsupported order is still rejected with EINVAL", who);

	(void)rseq_current_node_id();
	(void)rseq_current_mm_cid();
	rseq_clear_rseq_cs();
	rseq_prepare_unload();
	ok(1, "%s: accessors and rseq_prepare_unload() do not crash", who);
}

/* Plays the kernel: the area is not kernel-owned (registration failed). */
static void set_area(uint32_t cpu_id_start, uint32_t cpu_id, uint32_t mm_cid)
{
	struct rseq_abi *abi = rseq_get_abi();

	RSEQ_WRITE_ONCE(abi->cpu_id_start, cpu_id_start);
	RSEQ_WRITE_ONCE(abi->cpu_id, cpu_id);
	RSEQ_WRITE_ONCE(abi->mm_cid, mm_cid);
}

/* The ownership word a section for `n` checks (library ABI). */
static uint32_t *owner_word(int n, enum rseq_percpu_mode mode)
{
	return (uint32_t *)(rseq_cpu_op_owners + (intptr_t)n * RSEQ_CPU_OP_SLOT_SIZE +
			    (mode == RSEQ_PERCPU_MM_CID ? RSEQ_CPU_OP_WORD_MM_CID : RSEQ_CPU_OP_WORD_CPU_ID));
}

/* The descriptor the last section stored in rseq_cs looks right. */
/* Instruction alignment: riscv's compressed instructions are 2 bytes. */
#if defined(__riscv)
#define INSN_ALIGN_MASK 1
#else
#define INSN_ALIGN_MASK 3
#endif

static int descriptor_ok(void)
{
	const struct rseq_abi_cs *cs =
		(const struct rseq_abi_cs *)(uintptr_t)RSEQ_READ_ONCE(rseq_get_abi()->rseq_cs.arch.ptr);
	uint32_t sig;

	if (!cs || ((uintptr_t)cs & 31) || cs->version || cs->flags)
		return 0;
	if (!cs->post_commit_offset || cs->post_commit_offset > 512 || (cs->start_ip & INSN_ALIGN_MASK))
		return 0;
	if (cs->abort_ip >= cs->start_ip && cs->abort_ip < cs->start_ip + cs->post_commit_offset)
		return 0;
	memcpy(&sig, (const void *)(uintptr_t)(cs->abort_ip - 4), sizeof(sig));
	return sig == RSEQ_SIG;
}

static void simulate(int n, enum rseq_percpu_mode mode)
{
	const char *m = mode == RSEQ_PERCPU_MM_CID ? "mm_cid" : "cpu_id";
	struct node n2 = { 2, NULL }, n1 = { 1, &n2 };
	intptr_t v, v2, head, load = 0, counter = 7;
	struct { intptr_t pad; intptr_t *slot; } obj = { 0, &counter };
	intptr_t base = (intptr_t)&obj;
	long off = offsetof(__typeof__(obj), slot);
	char src[40], dst[41];
	size_t len, i;
	int r, mo, bad;
	/* In mm_cid mode the CPU number differs from the mm_cid. */
	int other = n + 1;

	if (mode == RSEQ_PERCPU_MM_CID)
		set_area((uint32_t)other, (uint32_t)other, (uint32_t)n);
	else
		set_area((uint32_t)n, (uint32_t)n, (uint32_t)other);

	v = 10;
	RSEQ_WRITE_ONCE(rseq_get_abi()->rseq_cs.arch.ptr, 0);
	r = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 10, 11, n);
	ok(r == 0 && v == 11, "simulated %s %d: load_cbne_store commits (%d, v %ld)", m, n, r, (long)v);
	ok(descriptor_ok(), "simulated %s: the section stored a valid descriptor in rseq_cs", m);
	r = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 10, 12, n);
	ok(r == 1 && v == 11, "simulated %s: load_cbne_store compare failure (%d)", m, r);
	r = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 11, 12, other + 1);
	ok(r == -1 && v == 11, "simulated %s: load_cbne_store wrong number aborts (%d)", m, r);

	__atomic_store_n(owner_word(n, mode), 1, __ATOMIC_RELEASE);
	r = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 11, 12, n);
	__atomic_store_n(owner_word(n, mode), 0, __ATOMIC_RELEASE);
	ok(r == -1 && v == 11, "simulated %s: a cpu-op owning the slot makes it abort (%d)", m, r);

	head = (intptr_t)&n1;
	r = rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, &head, 0, offsetof(struct node, next), &load, n);
	ok(r == 0 && load == (intptr_t)&n1 && head == (intptr_t)&n2, "simulated %s: list pop pops the head (%d)", m, r);
	r = rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, &head, 0, offsetof(struct node, next), &load, n);
	ok(r == 0 && load == (intptr_t)&n2 && head == 0, "simulated %s: list pop pops the last node (%d)", m, r);
	r = rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, mode, &head, 0, offsetof(struct node, next), &load, n);
	ok(r == 1 && head == 0, "simulated %s: list pop of an empty list returns 1 (%d)", m, r);

	v = 100;
	r = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &v, -5, n);
	ok(r == 0 && v == 95, "simulated %s: load_add_store adds (%d, v %ld)", m, r, (long)v);
	r = rseq_load_add_load_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &base, off, 3, n);
	ok(r == 0 && counter == 10, "simulated %s: load_add_load_load_add_store adds through the pointer (%d, %ld)",
	   m, r, (long)counter);

	for (mo = RSEQ_MO_RELAXED; mo <= RSEQ_MO_RELEASE; mo += RSEQ_MO_RELEASE) {
		const char *o = mo == RSEQ_MO_RELEASE ? "release" : "relaxed";

		v = 1;
		v2 = 0;
		r = rseq_load_cbne_store_store__ptr((enum rseq_mo)mo, mode, &v, 1, &v2, 22, 2, n);
		ok(r == 0 && v == 2 && v2 == 22, "simulated %s %s: load_cbne_store_store commits both (%d)", m, o, r);
		r = rseq_load_cbne_store_store__ptr((enum rseq_mo)mo, mode, &v, 1, &v2, 33, 3, n);
		ok(r == 1 && v == 2 && v2 == 22, "simulated %s %s: load_cbne_store_store compare failure (%d)", m, o, r);

		bad = 0;
		for (len = 0; len <= sizeof(src); len++) {
			for (i = 0; i < sizeof(src); i++)
				src[i] = (char)(i * 7 + len + 1);
			memset(dst, 0, sizeof(dst));
			v = 1;
			r = rseq_load_cbne_memcpy_store__ptr((enum rseq_mo)mo, mode, &v, 1, dst, src, len, 2, n);
			if (r != 0 || v != 2 || memcmp(dst, src, len) || dst[len] != 0) {
				diag("memcpy of %zu bytes: ret %d, v %ld", len, r, (long)v);
				bad = 1;
			}
		}
		ok(!bad, "simulated %s %s: load_cbne_memcpy_store copies exactly 0..%zu bytes", m, o, sizeof(src));
		memset(dst, 0, sizeof(dst));
		r = rseq_load_cbne_memcpy_store__ptr((enum rseq_mo)mo, mode, &v, 1, dst, src, 8, 3, n);
		ok(r == 1 && v == 2 && dst[0] == 0, "simulated %s %s: memcpy compare failure copies nothing (%d)", m, o, r);
	}

	v = 1;
	v2 = 2;
	r = rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, &v2, 2, 9, n);
	ok(r == 0 && v == 9, "simulated %s: load_cbne_load_cbne_store commits (%d)", m, r);
	r = rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, mode, &v, 9, &v2, 3, 10, n);
	ok(r == 1 && v == 9, "simulated %s: load_cbne_load_cbne_store second compare fails (%d)", m, r);

	if (mode == RSEQ_PERCPU_CPU_ID) {
		v = 5;
		ok(rseq_addv(&v, 2, n) == 0 && v == 7, "simulated: rseq_addv adds");
		ok(rseq_cmpeqv_storev(&v, 7, 8, n) == 0 && v == 8, "simulated: rseq_cmpeqv_storev commits");
	} else {
		/* mm_cid matches, but cpu_id says the thread is not registered. */
		set_area(0, (uint32_t)RSEQ_ABI_CPU_ID_REGISTRATION_FAILED, (uint32_t)n);
		v = 5;
		r = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, mode, &v, 1, n);
		ok(r == -1 && v == 5, "simulated mm_cid: aborts while cpu_id is negative (%d)", r);
	}

	/* Back to the state of a failed registration. */
	set_area(0, (uint32_t)RSEQ_ABI_CPU_ID_REGISTRATION_FAILED, 0);
	rseq_clear_rseq_cs();
	ok(RSEQ_READ_ONCE(rseq_get_abi()->rseq_cs.arch.ptr) == 0, "simulated %s: rseq_clear_rseq_cs() clears rseq_cs", m);
}

static void *thread_main(void *arg)
{
	(void)arg;
	check_thread("second thread");
	return NULL;
}

int main(void)
{
	pthread_t t;

	plan_no_plan();
	diag("rseq_offset %ld, rseq_size %u, rseq_flags %u, possible CPUs %d, inline %s",
	     (long)rseq_offset, rseq_size, rseq_flags, rseq_get_max_nr_cpus(),
#if defined(RSEQ_NO_INLINE) || !defined(RSEQ_ARCH_HAS_SEQUENCES)
	     "no"
#else
	     "yes"
#endif
	     );
	ok(rseq_size == 0, "rseq_size is 0: no registration succeeded (%u)", rseq_size);
	check_thread("main thread");
	if (rseq_current_cpu_raw() < 0) {
		simulate(0, RSEQ_PERCPU_CPU_ID);
		simulate(1, RSEQ_PERCPU_CPU_ID);
		simulate(0, RSEQ_PERCPU_MM_CID);
		simulate(1, RSEQ_PERCPU_MM_CID);
	} else {
		skip(1, "the area is not in the failed-registration state: no simulation");
	}
	if (pthread_create(&t, NULL, thread_main, NULL) != 0)
		bail_out("pthread_create failed");
	pthread_join(t, NULL);
	return exit_status();
}
