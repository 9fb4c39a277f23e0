# x86_64 guest: native build, Debian amd64 kernels, KVM when it works
# (probed with one empty boot), else TCG. Sourced by c-tests/vm/run.sh;
# see README there for what each variable means.
VM_DEB_ARCH=amd64
VM_RUST_TRIPLE=                      # empty: the host target
VM_CC=${VM_CC_X86_64:-cc}
VM_STRIP=strip
VM_LIB_DIRS="/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64"
VM_QEMU=qemu-system-x86_64
VM_QEMU_ARGS="-machine q35 -m 1G -nic none"
VM_TCG_CPU=max
VM_KVM_CPU=host
VM_CONSOLE=ttyS0
VM_KERNEL_6_1=linux-image-amd64       # bookworm: 6.1
VM_KERNEL_6_12=linux-image-6.12-amd64 # bookworm-security: 6.12
# NAME KERNEL SMP CPU PLAN (CPU "-": the accelerator's default)
VM_CONFIGS_FAST="
6.1-smp2 6.1 2 - quickA
6.12-smp2 6.12 2 - quickB
6.1-smp4max16 6.1 4,maxcpus=16 - mini
6.12-smp4max16 6.12 4,maxcpus=16 - mini
6.1-smp8 6.1 8 - mini
6.12-smp8 6.12 8 - mini
"
VM_CONFIGS_SLOW="
6.1-smp2-full 6.1 2 - full
6.12-smp2-full 6.12 2 - full
6.1-smp4max16-full 6.1 4,maxcpus=16 - full
6.12-smp4max16-full 6.12 4,maxcpus=16 - full
6.1-smp8-topology 6.1 8 - topology
6.12-smp8-topology 6.12 8 - topology
"
