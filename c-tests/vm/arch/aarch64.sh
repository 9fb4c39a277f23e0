# aarch64 guest: cross-built (gcc-aarch64-linux-gnu, Rust target
# aarch64-unknown-linux-gnu), Debian arm64 kernels on the "virt" machine,
# TCG only. Sourced by c-tests/vm/run.sh.
VM_DEB_ARCH=arm64
VM_RUST_TRIPLE=aarch64-unknown-linux-gnu
VM_CC=${VM_CC_AARCH64:-aarch64-linux-gnu-gcc}
VM_STRIP=aarch64-linux-gnu-strip
VM_LIB_DIRS="/usr/aarch64-linux-gnu/lib"
VM_QEMU=qemu-system-aarch64
VM_QEMU_ARGS="-machine virt -m 1G -nic none"
VM_TCG_CPU=max
VM_KVM_CPU=                           # never KVM: the host is x86_64
VM_CONSOLE=ttyAMA0
VM_KERNEL_6_1=linux-image-arm64
VM_KERNEL_6_12=linux-image-6.12-arm64
# The single-step progress guarantee depends on the CPU's atomics
# (cortex-a57: ARMv8.0, LL/SC only; max: LSE), so check-vm runs
# cpu_op_progress_test on both (see below). On cortex-a57 it failed until
# the last LDXR/STXR loop of the fallback path (the abort counter's
# atomic add) became bounded (issue #10).
# mm_cid_test on 6.1 (no mm_cid: every operation is a contended cpu-op)
# with -cpu cortex-a57 (no LSE: the words are taken with FUTEX_LOCK_PI,
# handed from waiter to waiter) ran 155 s and 211 s under TCG with 4000
# operations per thread (0.4 s on -cpu max); 500 keeps check-vm in budget.
VM_MM_CID_ITERS=500
# cpu_op_progress_test at a 16th of its native size: its single-step part
# costs about 1 ms per step under TCG (125 s on -cpu max at full size),
# and its contended cpu-ops on cortex-a57 go through FUTEX_LOCK_PI.
: "${VM_PROGRESS_DIVISOR:=16}"
# The progress guarantees (single-step, seccomp, affinity) on both CPUs:
# cortex-a57 has no LSE atomics, so single-stepped LDXR/STXR loops never
# complete there (issue #10); max has them.
VM_PLAN_EXTRA_quickA="cpu_op_progress_test@inline"
VM_PLAN_EXTRA_quickB="cpu_op_progress_test@noinline-off"
VM_CONFIGS_FAST="
6.1-a57 6.1 2 cortex-a57 quickA
6.12-max 6.12 2 max quickB
"
VM_CONFIGS_SLOW="
6.1-a57-full 6.1 2 cortex-a57 full
6.12-a57-full 6.12 2 cortex-a57 full
6.1-max-full 6.1 2 max full
6.12-max-full 6.12 2 max full
"
