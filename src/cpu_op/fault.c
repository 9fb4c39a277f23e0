/* SPDX-License-Identifier: MIT */
/*
 * Recovering from a fault on a cpu_opv() address: the kernel's cpu_opv
 * pinned every page and returned EFAULT for a bad one; here the vector
 * touches the caller's memory directly, and a SIGSEGV or SIGBUS raised by
 * one of those accesses is turned back into a return with the faulting
 * address (see src/cpu_op/fault.rs for the design and its argument).
 *
 * C because it needs setjmp/longjmp (a fault cannot be returned from) and
 * the architectures' ucontext layouts. The compiler's __builtin_setjmp
 * (frame and stack pointer, resume address; the function that calls it
 * saves every callee-saved register itself) costs a few instructions,
 * glibc's _setjmp a call and pointer mangling; nothing here needs the
 * signal mask saved (the handler restores the faulting code's mask).
 *
 * - rseq_impl_fault_install() installs this library's SIGSEGV and SIGBUS
 *   handler once per process, keeping the previous actions, to which
 *   every signal that is not one of the library's faults is passed on.
 * - rseq_impl_fault_call(fn, arg, rec) runs fn(arg, rec) with rec as the
 *   calling thread's recovery point. A fault is the library's when the
 *   thread has a recovery point, the kernel raised it (si_code > 0), the
 *   faulting address lies in one of the page ranges fn declared in rec
 *   for the access it makes, and the interrupted instruction is in this
 *   library's code with the stack pointer inside the window below rec.
 *   The handler then records the address and jumps back:
 *   rseq_impl_fault_call returns -1.
 * - rseq_impl_fault_defer_begin/end bracket a cpu-op hold, during which
 *   every signal but SIGSEGV and SIGBUS is blocked: a SIGSEGV or SIGBUS
 *   sent by kill(), tgkill() or sigqueue() meanwhile is kept and sent
 *   again, with the same siginfo, once the hold is over (as a blocked
 *   signal would be delivered then), so that no handler of the program
 *   runs inside a hold.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <link.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* clang lowers __builtin_setjmp on x86 only: elsewhere glibc's. */
#if defined(__clang__) && !defined(__x86_64__) && !defined(__i386__)
#define RSEQ_IMPL_ENV jmp_buf env
#define RSEQ_IMPL_SETJMP(env) _setjmp(env)
#define RSEQ_IMPL_LONGJMP(env) _longjmp(env, 1)
#else
#define RSEQ_IMPL_ENV void *env[5]
#define RSEQ_IMPL_SETJMP(env) __builtin_setjmp(env)
#define RSEQ_IMPL_LONGJMP(env) __builtin_longjmp(env, 1)
#endif

/* Layout shared with src/cpu_op/fault.rs (struct Recovery there). */
struct rseq_impl_fault_rec {
	uintptr_t lo[2];	/* page ranges [lo, hi) of the current access */
	uintptr_t hi[2];
	uintptr_t addr;		/* out: the faulting address */
	RSEQ_IMPL_ENV;		/* the jump buffer */
	uintptr_t frame;	/* stack address of rseq_impl_fault_call's frame */
};

/* Window below the recovery frame in which the faulting stack pointer
 * must lie: the executor's frames are small. */
#define RSEQ_IMPL_FAULT_STACK_WINDOW (256 * 1024)

struct rseq_impl_fault_defer {
	int pending[2];
	siginfo_t info[2];
};

static __thread struct rseq_impl_fault_rec *rseq_impl_fault_current
	__attribute__((tls_model("initial-exec")));
static __thread struct rseq_impl_fault_defer *rseq_impl_fault_deferring
	__attribute__((tls_model("initial-exec")));

static struct sigaction rseq_impl_fault_prev[2];
static int rseq_impl_fault_state;	/* 0 not yet, 1 installing, 2 installed, 3 failed */
static uintptr_t rseq_impl_fault_text_lo, rseq_impl_fault_text_hi;

static int sig_index(int sig)
{
	return sig == SIGBUS;
}

static void interrupted(const void *ucv, uintptr_t *pc, uintptr_t *sp)
{
	const ucontext_t *uc = ucv;

#if defined(__x86_64__)
	*pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	*sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__i386__)
	*pc = (uintptr_t)uc->uc_mcontext.gregs[REG_EIP];
	*sp = (uintptr_t)uc->uc_mcontext.gregs[REG_ESP];
#elif defined(__aarch64__)
	*pc = (uintptr_t)uc->uc_mcontext.pc;
	*sp = (uintptr_t)uc->uc_mcontext.sp;
#elif defined(__riscv)
	*pc = (uintptr_t)uc->uc_mcontext.__gregs[0];
	*sp = (uintptr_t)uc->uc_mcontext.__gregs[2];
#elif defined(__arm__)
	*pc = (uintptr_t)uc->uc_mcontext.arm_pc;
	*sp = (uintptr_t)uc->uc_mcontext.arm_sp;
#else
#error "unsupported architecture"
#endif
}

static int in_range(const struct rseq_impl_fault_rec *r, uintptr_t a)
{
	for (int k = 0; k < 2; k++)
		if (a >= r->lo[k] && a < r->hi[k])
			return 1;
	return 0;
}

/* Whether the fault is one of the library's recoverable accesses. */
static int ours(const struct rseq_impl_fault_rec *r, const siginfo_t *si, const void *uc)
{
	uintptr_t pc, sp;

	if (!r || si->si_code <= 0 || !in_range(r, (uintptr_t)si->si_addr))
		return 0;
	interrupted(uc, &pc, &sp);
	return pc >= rseq_impl_fault_text_lo && pc < rseq_impl_fault_text_hi && sp < r->frame &&
	       r->frame - sp < RSEQ_IMPL_FAULT_STACK_WINDOW;
}

static void raw_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	syscall(SYS_rt_sigprocmask, how, set, old, (size_t)8);
}

/* Passes a signal that is not the library's to the previous action, as
 * the kernel would have run it. */
static void chain(int sig, siginfo_t *si, void *uc)
{
	const struct sigaction *p = &rseq_impl_fault_prev[sig_index(sig)];
	int handler = (p->sa_flags & SA_SIGINFO) ? p->sa_sigaction != NULL
						  : (p->sa_handler != SIG_DFL && p->sa_handler != SIG_IGN);

	if (handler) {
		sigset_t mask = p->sa_mask, old;

		if (!(p->sa_flags & SA_NODEFER))
			sigaddset(&mask, sig);
		raw_sigmask(SIG_BLOCK, &mask, &old);
		if (p->sa_flags & SA_SIGINFO)
			p->sa_sigaction(sig, si, uc);
		else
			p->sa_handler(sig);
		raw_sigmask(SIG_SETMASK, &old, NULL);
		return;
	}
	if (p->sa_flags & SA_SIGINFO || p->sa_handler != SIG_IGN || si->si_code > 0) {
		/* The default action (a fault cannot be ignored: the kernel
		 * kills for an ignored one too): restore it; a fault then
		 * happens again on return, a sent signal is sent again. */
		struct sigaction dfl;

		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(sig, &dfl, NULL);
		if (si->si_code <= 0)
			syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
	}
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	struct rseq_impl_fault_rec *r = rseq_impl_fault_current;
	struct rseq_impl_fault_defer *d = rseq_impl_fault_deferring;

	if (ours(r, si, uc)) {
		r->addr = (uintptr_t)si->si_addr;
		rseq_impl_fault_current = NULL;
		/* Back to the mask of the faulting code, which sigreturn would
		 * have restored: a handler that chained to this one (installed
		 * after it, without SA_NODEFER) blocked SIGSEGV meanwhile. */
		raw_sigmask(SIG_SETMASK, &((ucontext_t *)uc)->uc_sigmask, NULL);
		RSEQ_IMPL_LONGJMP(r->env);
	}
	if (d && si->si_code <= 0) {
		int k = sig_index(sig);

		d->info[k] = *si;
		d->pending[k] = 1;
		return;
	}
	chain(sig, si, uc);
}

static int find_text(struct dl_phdr_info *info, size_t size, void *data)
{
	uintptr_t me = (uintptr_t)data;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && me >= lo && me < lo + ph->p_memsz) {
			rseq_impl_fault_text_lo = lo;
			rseq_impl_fault_text_hi = lo + ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

static int install_one(int sig)
{
	struct sigaction mine, before, now;

	/* Zeroed: compared byte by byte below, padding included. */
	memset(&before, 0, sizeof(before));
	memset(&now, 0, sizeof(now));
	if (sigaction(sig, NULL, &before))
		return -1;
	memset(&mine, 0, sizeof(mine));
	mine.sa_sigaction = on_fault;
	mine.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART | (before.sa_flags & SA_ONSTACK);
	sigemptyset(&mine.sa_mask);
	rseq_impl_fault_prev[sig_index(sig)] = before;
	if (sigaction(sig, &mine, &now))
		return -1;
	/* Changed between the two calls: keep the one really replaced. */
	if (memcmp(&now, &before, sizeof(now)))
		rseq_impl_fault_prev[sig_index(sig)] = now;
	return 0;
}

/* 0 once the handlers are installed, -1 if they cannot be. Thread-safe;
 * the first call pays four sigaction() calls and a phdr walk. */
int rseq_impl_fault_install(void)
{
	int s = __atomic_load_n(&rseq_impl_fault_state, __ATOMIC_ACQUIRE);

	while (s < 2) {
		int zero = 0;

		if (s == 0 && __atomic_compare_exchange_n(&rseq_impl_fault_state, &zero, 1, 0, __ATOMIC_ACQ_REL,
							  __ATOMIC_ACQUIRE)) {
			int ok = dl_iterate_phdr(find_text, (void *)(uintptr_t)&on_fault) == 1 &&
				 install_one(SIGSEGV) == 0 && install_one(SIGBUS) == 0;

			__atomic_store_n(&rseq_impl_fault_state, ok ? 2 : 3, __ATOMIC_RELEASE);
			return ok ? 0 : -1;
		}
		s = __atomic_load_n(&rseq_impl_fault_state, __ATOMIC_ACQUIRE);
	}
	return s == 2 ? 0 : -1;
}

/* 1 when the library's handler is the current action of both SIGSEGV
 * and SIGBUS (two system calls): a hold may then leave them open, since
 * a sent one reaches this handler first and is kept (see the top). */
int rseq_impl_fault_handler_current(void)
{
	struct sigaction cur;

	for (int k = 0; k < 2; k++)
		if (sigaction(k ? SIGBUS : SIGSEGV, NULL, &cur) || !(cur.sa_flags & SA_SIGINFO) ||
		    cur.sa_sigaction != on_fault)
			return 0;
	return 1;
}

/* Runs fn(arg, rec) with rec as the thread's recovery point: its return
 * value, or -1 after a fault on one of the ranges fn declared in rec
 * (rec->addr: the address). fn must leave nothing to clean up when a
 * fault cuts it short (no destructor, no lock). */
__attribute__((noinline)) int rseq_impl_fault_call(int (*fn)(void *, struct rseq_impl_fault_rec *), void *arg,
			 struct rseq_impl_fault_rec *rec)
{
	struct rseq_impl_fault_rec *volatile outer = rseq_impl_fault_current;
	int ret;

	rec->lo[0] = rec->lo[1] = rec->hi[0] = rec->hi[1] = 0;
	rec->addr = 0;
	rec->frame = (uintptr_t)__builtin_frame_address(0);
	if (RSEQ_IMPL_SETJMP(rec->env)) {
		rseq_impl_fault_current = outer;
		return -1;
	}
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	rseq_impl_fault_current = rec;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	ret = fn(arg, rec);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	rseq_impl_fault_current = outer;
	return ret;
}

/* Write access check that changes nothing: a compare-and-swap of the
 * aligned 32-bit word holding the byte with itself, retried until it
 * succeeds (a real write access: it faults on a read-only or unmapped
 * page; the compiler cannot turn it into a load, as it may an atomic add
 * of 0; atomic, so a concurrent store to the word is never lost). The
 * word is within the byte's page; a word, not the byte, because riscv
 * has no byte compare-and-swap outside libatomic. */
void rseq_impl_fault_probe_write(uintptr_t addr)
{
	uint32_t *w = (uint32_t *)(addr & ~(uintptr_t)3);
	uint32_t v = *(volatile uint32_t *)w;

	while (!__atomic_compare_exchange_n(w, &v, v, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void rseq_impl_fault_defer_begin(struct rseq_impl_fault_defer *d)
{
	d->pending[0] = d->pending[1] = 0;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	rseq_impl_fault_deferring = d;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

/* After the hold's mask is restored: sends every kept signal again. */
void rseq_impl_fault_defer_end(struct rseq_impl_fault_defer *d)
{
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	rseq_impl_fault_deferring = NULL;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	for (int k = 0; k < 2; k++)
		if (d->pending[k])
			syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), k ? SIGBUS : SIGSEGV,
				&d->info[k]);
}

/* Size of struct rseq_impl_fault_defer and of struct rseq_impl_fault_rec,
 * for the Rust side's opaque buffers. */
size_t rseq_impl_fault_sizes(int which)
{
	return which ? sizeof(struct rseq_impl_fault_rec) : sizeof(struct rseq_impl_fault_defer);
}
