// SPDX-License-Identifier: MIT
//
// A C++11 program using the library the way C++ code does: <rseq/rseq.h>
// inline critical sections and <rseq/percpu-op.h> from std::thread
// workers (lambdas), with exact totals. Per thread and iteration:
//   - rseq_load_add_store__ptr on the current CPU, retried until it
//     commits (counter A);
//   - percpu_addv (counter B) and a per-CPU list pop/push with
//     percpu_cmpnev_storeoffp_load / percpu_cmpeqv_storev;
//   - every 64 iterations an exception thrown and caught in the thread;
// and at thread exit a thread_local object's destructor does one more
// percpu_addv (counter B), after the thread's last regular operation.
// Prints TAP.
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <rseq/rseq.h>
#include <rseq/percpu-op.h>

namespace {

struct alignas(128) Slot {
	intptr_t a;
	intptr_t b;
	intptr_t head;
};

struct Node {
	Node *next;
	long uses;
};

const int kIters = 20000;
const int kNodesPerCpu = 8;

Slot *slots;
int nr_cpus;
std::atomic<long> errors(0), caught(0), tls_dtors(0);
std::mutex out_lock;
int test_no, failed_no;

void ok(bool cond, const char *fmt, long a = 0, long b = 0, long c = 0)
{
	std::lock_guard<std::mutex> g(out_lock);
	char buf[256];

	std::snprintf(buf, sizeof(buf), fmt, a, b, c);
	++test_no;
	if (!cond)
		++failed_no;
	std::printf("%sok %d - %s\n", cond ? "" : "not ", test_no, buf);
}

struct AtExit {
	~AtExit()
	{
		int cpu = percpu_current_cpu();

		if (percpu_addv(&slots[cpu].b, 1, cpu) != 0)
			++errors;
		++tls_dtors;
	}
	void touch() {}
};

thread_local AtExit at_exit;

void pop_push()
{
	intptr_t load = 0;
	int cpu, ret;

	do {
		cpu = percpu_current_cpu();
		ret = percpu_cmpnev_storeoffp_load(&slots[cpu].head, 0, (off_t)offsetof(Node, next), &load, cpu);
	} while (ret < 0 && errno == EAGAIN);
	if (ret == 1)
		return;	// this CPU's list is empty right now
	if (ret != 0) {
		++errors;
		return;
	}
	Node *n = reinterpret_cast<Node *>(load);
	++n->uses;
	for (;;) {
		cpu = percpu_current_cpu();
		intptr_t expect = __atomic_load_n(&slots[cpu].head, __ATOMIC_RELAXED);
		n->next = reinterpret_cast<Node *>(expect);
		ret = percpu_cmpeqv_storev(&slots[cpu].head, expect, reinterpret_cast<intptr_t>(n), cpu);
		if (ret == 0)
			return;
		if (ret < 0 && errno != EAGAIN) {
			++errors;
			return;
		}
	}
}

void work()
{
	at_exit.touch();
	for (int i = 0; i < kIters; ++i) {
		for (long tries = 0;; ++tries) {
			int cpu = static_cast<int>(rseq_cpu_start());

			if (rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &slots[cpu].a, 1, cpu) == 0)
				break;
			if (tries > 10000000L) {
				++errors;
				break;
			}
		}
		int cpu = percpu_current_cpu();
		if (percpu_addv(&slots[cpu].b, 1, cpu) != 0)
			++errors;
		pop_push();
		if (i % 64 == 0) {
			try {
				throw std::runtime_error("thrown in a worker");
			} catch (const std::exception &) {
				++caught;
			}
		}
	}
}

}  // namespace

int main()
{
	unsigned int hw = std::thread::hardware_concurrency();
	int nthreads = 4 * static_cast<int>(hw ? hw : 1);
	void *mem = nullptr;

	nr_cpus = rseq_get_max_nr_cpus();
	if (posix_memalign(&mem, 128, sizeof(Slot) * static_cast<size_t>(nr_cpus)))
		return 2;
	slots = static_cast<Slot *>(mem);
	std::memset(static_cast<void *>(slots), 0, sizeof(Slot) * static_cast<size_t>(nr_cpus));
	std::vector<Node> nodes(static_cast<size_t>(kNodesPerCpu * nr_cpus));
	for (size_t i = 0; i < nodes.size(); ++i) {
		Slot &s = slots[i % static_cast<size_t>(nr_cpus)];

		nodes[i].next = reinterpret_cast<Node *>(s.head);
		nodes[i].uses = 0;
		s.head = reinterpret_cast<intptr_t>(&nodes[i]);
	}

	std::vector<std::thread> threads;
	for (int i = 0; i < nthreads; ++i)
		threads.emplace_back([] { work(); });
	for (auto &t : threads)
		t.join();

	long a = 0, b = 0, found = 0, uses = 0;
	for (int c = 0; c < nr_cpus; ++c) {
		a += slots[c].a;
		b += slots[c].b;
		long steps = 0;
		for (Node *n = reinterpret_cast<Node *>(slots[c].head); n && steps <= (long)nodes.size(); n = n->next, ++steps)
			++found;
	}
	for (const Node &n : nodes)
		uses += n.uses;
	long expect = static_cast<long>(nthreads) * kIters;
	std::printf("# %d std::threads x %d iterations, %ld pops, built with %s\n", nthreads, kIters, uses,
#if defined(__clang__)
		    "clang++"
#else
		    "g++"
#endif
		    );
	ok(errors == 0, "no operation failed (%ld)", errors.load());
	ok(a == expect, "inline rseq_load_add_store__ptr: exact total %ld (expected %ld)", a, expect);
	ok(tls_dtors == nthreads && b == expect + nthreads,
	   "percpu_addv, plus one per thread_local destructor at thread exit: exact total %ld (expected %ld)", b,
	   expect + nthreads);
	ok(found == (long)nodes.size(), "percpu list: every node is on a list at the end (%ld of %ld)", found,
	   (long)nodes.size());
	ok(caught == static_cast<long>(nthreads) * ((kIters + 63) / 64),
	   "exceptions thrown and caught in the workers (%ld)", caught.load());
	std::printf("1..%d\n", test_no);
	std::free(mem);
	return failed_no ? 1 : 0;
}
