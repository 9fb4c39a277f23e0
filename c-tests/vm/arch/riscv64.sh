# riscv64 guest: cross-built (gcc-riscv64-linux-gnu, Rust target
# riscv64gc-unknown-linux-gnu), Debian 13 (trixie: bookworm has no
# riscv64) riscv64 kernel on the "virt" machine with qemu's OpenSBI
# firmware (package opensbi), TCG only. Sourced by c-tests/vm/run.sh.
VM_DEB_ARCH=riscv64
VM_RUST_TRIPLE=riscv64gc-unknown-linux-gnu
VM_CC=${VM_CC_RISCV64:-riscv64-linux-gnu-gcc}
VM_STRIP=riscv64-linux-gnu-strip
VM_LIB_DIRS="/usr/riscv64-linux-gnu/lib"
VM_QEMU=qemu-system-riscv64
VM_QEMU_ARGS="-machine virt -m 1G -nic none"
VM_TCG_CPU=rv64
VM_KVM_CPU=                           # never KVM: the host is x86_64
VM_CONSOLE=ttyS0
VM_DEBIAN_SUITE=trixie
export VM_DEBIAN_SUITE
VM_KERNEL_6_12=linux-image-riscv64    # trixie's kernel: 6.12, with mm_cid
VM_MM_CID_ITERS=500
: "${VM_PROGRESS_DIVISOR:=16}"
# The sequences' first real kernel: a smoke plan in check-vm (every
# light test in two variants, and the progress guarantees), the full
# cross product in check-vm-slow.
VM_PLAN_EXTRA_quickA="cpu_op_progress_test@noinline-off"
VM_CONFIGS_FAST="
6.12-rv64 6.12 2 rv64 quickA
"
VM_CONFIGS_SLOW="
6.12-rv64-full 6.12 2 rv64 full
"
