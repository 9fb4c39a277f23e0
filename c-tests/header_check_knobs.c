/* Compiles the public headers with librseq's knobs defined (injection
 * hooks, RSEQ_COMPARE_TWICE, RSEQ_GET_ABI_OVERRIDE) and uses the names of
 * <rseq/compiler.h>, <rseq/arch.h>, <rseq/utils.h> and the newer
 * functions, as strict C11 and C++11 with -Wall -Wextra -Werror. */
#include <rseq/abi.h>

static unsigned long knob_hits, knob_failed;
static struct rseq_abi knob_abi;

#define RSEQ_INJECT_ASM(n)	"nop\n\t"
#define RSEQ_INJECT_C(n)	knob_hits += (n);
#define RSEQ_INJECT_INPUT	, [knob_in] "m" (knob_hits)
#define RSEQ_INJECT_CLOBBER
#define RSEQ_INJECT_FAILED	knob_failed++;
#define RSEQ_COMPARE_TWICE
#define RSEQ_GET_ABI_OVERRIDE
#define rseq_get_abi()		(&knob_abi)

#include <rseq/rseq.h>
#include <rseq/percpu-op.h>
#include <rseq/pseudocode.h>

int header_check_knobs(void);

#define KNOB_PASTE RSEQ_COMBINE_TOKENS(RSEQ_BITS_, PER_LONG)

int header_check_knobs(void)
{
	intptr_t v = 0, v2 = 0, *vp = &v;
	int cpu = (int)rseq_cpu_start();
	int r = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_MM_CID, &v, 0, 1, cpu);

	r += rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 0, &v2, 0, 1, cpu);
	r += rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 0, 0, v2 ? vp : &v2, cpu);
#ifdef rseq_arch_has_load_add_load_load_add_store
	r += rseq_load_add_load_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, &v, 0, 1, cpu);
#endif
	r += rseq_init() == RSEQ_INIT_OK;
	r += rseq_registered() + rseq_slice_ctrl_available();
	r += KNOB_PASTE + RSEQ_PARAM_SELECT_ARG1(0, 1, 2);
	rseq_smp_mb();
	rseq_smp_rmb();
	rseq_smp_wmb();
	rseq_smp_store_release(&v2, 1);
	r += (int)rseq_smp_load_acquire(&v2);
	rseq_smp_acquire__after_ctrl_dep();
	if (r < -100)
		rseq_bug("impossible %d", r);
	rseq_log("checked");
	return r + (int)knob_hits + (int)knob_failed + (int)rseq_current_cpu_raw() + (int)rseq_get_abi()->cpu_id;
}
