#!/bin/sh
# Runs the C tests on real Linux kernels in qemu-system virtual machines.
#
#   c-tests/vm/run.sh [--slow] [ARCH ...]     (default: x86_64 aarch64 riscv64)
#
# For each architecture (c-tests/vm/arch/ARCH.sh says how to build for it
# and boot it) this builds the library and the C tests for that
# architecture against a staged install, makes an initramfs holding them,
# their shared libraries (librseq.so.0 as a real .so, the architecture's
# glibc and loader), a static /init (init.c) and a plan (which binaries to
# run, in which modes), then boots each configuration of the architecture
# (kernel version, -smp topology, CPU model) with the console in a file,
# and summarises the TAP found there. --slow boots the slow configurations
# instead of the fast ones.
#
# Exits non-zero on any failure: a run that exits non-zero, prints
# "not ok", times out, or never ran (the machine died). Exits 0 with a
# SKIP line when qemu or a cross tool is missing (.ci/run installs them).
#
# Environment: VM_CACHE (kernel packages, default vm-cache/), VM_OUT
# (build and logs, default build-out/vm), VM_ACCEL (kvm or tcg: no probe),
# VM_BOOT_TIMEOUT (seconds per boot, default 900), VM_JOBS (machines
# booted at once, default 1), VM_ONLY (configuration names to boot),
# VM_TESTS (plan words replacing every machine's plan).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
here=c-tests/vm
slow=0
if [ "${1:-}" = --slow ]; then
	slow=1
	shift
fi
[ $# -gt 0 ] || set -- x86_64 aarch64 riscv64
cache=${VM_CACHE:-$root/vm-cache}
outroot=${VM_OUT:-$root/build-out/vm}
boot_timeout=${VM_BOOT_TIMEOUT:-900}
failed_total=0
VM_PROGRESS_DIVISOR_ENV=${VM_PROGRESS_DIVISOR:-}

# Plans: which test binaries a machine runs. A word is TEST (all four
# variants: the inline build and the RSEQ_NO_INLINE one, each with glibc's
# registration on and off) or TEST@VARIANT,... with VARIANT among inline,
# inline-off, noinline, noinline-off. An arch file may add to a plan
# with VM_PLAN_EXTRA_<plan>.
# quickA and quickB split the variants of the quick tests between two
# machines of an architecture (all four variants of the light tests run
# on the pair, registration_test and hotplug_test in two), to keep
# make check-vm within its budget; mini is the check of a topology.
LIGHT="cpu_test ops_test dlopen_test fork_exec_test cpu_op_test mm_cid_test"
PLAN_quickA="$(for t in $LIGHT; do printf '%s ' "$t@inline,noinline-off"; done) \
registration_test@inline hotplug_test@noinline-off"
PLAN_quickB="$(for t in $LIGHT; do printf '%s ' "$t@inline-off,noinline"; done) \
registration_test@noinline-off hotplug_test@inline"
PLAN_mini="cpu_test@inline mm_cid_test@noinline-off hotplug_test@inline-off"
PLAN_quick="$LIGHT registration_test hotplug_test"
PLAN_topology="cpu_test ops_test cpu_op_test mm_cid_test hotplug_test"
PLAN_full="$PLAN_quick cpu_op_concurrency_test cpu_op_progress_test param_test inject_test knobs_test"
# Arguments for the tests whose default size is for a native machine.
# VM_MM_CID_ITERS (an arch file's): mm_cid_test's operations per thread
# and workload, where emulation makes its contended cpu-ops slow.
# VM_PROGRESS_DIVISOR: cpu_op_progress_test's sizes are divided by it
# (a single step is a ptrace round trip, about 1 ms under TCG);
# VM_PROGRESS_DIVISOR in the environment overrides the arch files'.
test_args() {
	case $1 in
	param_test*) echo "-r 5" ;;
	mm_cid_test*) echo "${VM_MM_CID_ITERS:-}" ;;
	cpu_op_progress_test*) echo "${VM_PROGRESS_DIVISOR:-}" ;;
	*) echo "" ;;
	esac
}

# plan KIND: one line per run (see init.c for the format).
plan() {
	eval "words=\"\$PLAN_$1 \${VM_PLAN_EXTRA_$1:-}\""
	[ -z "${VM_TESTS:-}" ] || words=$VM_TESTS
	for w in $words; do
		t=${w%%@*}
		variants=inline,inline-off,noinline,noinline-off
		[ "$t" = "$w" ] || variants=${w#*@}
		for v in $(echo "$variants" | tr , ' '); do
			case $v in
			inline*) b=$t ;;
			*) b=$t-noinline ;;
			esac
			args=$(test_args "$b")
			case $v in
			*-off) echo "600 $b[glibc-rseq-off] GLIBC_TUNABLES=glibc.pthread.rseq=0 /bin/$b $args" ;;
			*) echo "600 $b /bin/$b $args" ;;
			esac
		done
	done
}

# Shared libraries an ELF file needs, recursively, found in $VM_LIB_DIRS
# and the staged library directory; prints "name path" lines.
needed_libs() {
	todo="$*" seen=""
	while [ -n "$todo" ]; do
		set -- $todo
		f=$1
		shift
		todo="$*"
		for lib in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
			case " $seen " in *" $lib "*) continue ;; esac
			seen="$seen $lib"
			found=""
			for d in "$stage/lib" $VM_LIB_DIRS; do
				if [ -e "$d/$lib" ]; then
					found=$d/$lib
					break
				fi
			done
			if [ -z "$found" ]; then
				echo "missing $lib" 
				continue
			fi
			echo "$lib $found"
			todo="$todo $found"
		done
	done
}

build_arch() {
	arch=$1
	out=$outroot/$arch
	stage=$out/stage
	rm -rf "$out/stage" "$out/bin" "$out/root"
	mkdir -p "$out" || return 1
	echo "# $arch: building the library, the C tests and /init into $out"
	if [ -n "$VM_RUST_TRIPLE" ]; then
		triple_env=$(echo "$VM_RUST_TRIPLE" | tr 'a-z-' 'A-Z_')
		env "CARGO_TARGET_${triple_env}_LINKER=$VM_CC" "CC_$(echo "$VM_RUST_TRIPLE" | tr - _)=$VM_CC" \
			make install PREFIX="$stage" TARGET="$VM_RUST_TRIPLE" >"$out/build.log" 2>&1
	else
		make install PREFIX="$stage" >"$out/build.log" 2>&1
	fi || { sed 's/^/# /' "$out/build.log" | tail -n 40; echo "Bail out! $arch: library build failed"; return 1; }
	# No C++ test in the VMs (no cross g++ needed): the C++ build of the
	# pool test runs natively and in the i386 check.
	make -C c-tests bins STAGE="$stage" BIN="$out/bin" CC="$VM_CC" CXX_TESTS= >>"$out/build.log" 2>&1 ||
		{ sed 's/^/# /' "$out/build.log" | tail -n 40; echo "Bail out! $arch: C tests build failed"; return 1; }
	r=$out/root
	mkdir -p "$r/bin" "$r/lib" || return 1
	$VM_CC -static -O2 -Wall -Wextra -Werror -o "$r/init" "$here/init.c" >>"$out/build.log" 2>&1 ||
		{ echo "Bail out! $arch: static /init does not build ($VM_CC -static: is libc6-dev installed?)"; return 1; }
	for b in "$out/bin"/*_test "$out/bin"/*_test-noinline; do
		$VM_STRIP --strip-debug -o "$r/bin/$(basename "$b")" "$b" || return 1
	done
	libs=$(needed_libs "$r/bin"/* "$stage/lib/librseq.so.0")
	if printf '%s\n' "$libs" | grep -q '^missing '; then
		printf '%s\n' "$libs" | grep '^missing ' | sed 's/^/# /'
		echo "Bail out! $arch: shared libraries not found in $VM_LIB_DIRS"
		return 1
	fi
	# librseq.so.0 too (dlopen_test loads it without linking it).
	libs="$libs
librseq.so.0 $stage/lib/librseq.so.0"
	printf '%s\n' "$libs" | while read -r name path; do
		[ -n "$name" ] || continue
		$VM_STRIP --strip-debug -o "$r/lib/$name" "$(readlink -f "$path")" || exit 1
	done || return 1
	interp=$(readelf -l "$r/bin/cpu_test" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
	if [ ! -e "$r$interp" ]; then
		mkdir -p "$r$(dirname "$interp")"
		for d in $VM_LIB_DIRS; do
			if [ -e "$d/$(basename "$interp")" ]; then
				cp "$(readlink -f "$d/$(basename "$interp")")" "$r$interp" && break
			fi
		done
	fi
	[ -e "$r$interp" ] || { echo "Bail out! $arch: no loader $interp"; return 1; }
	return 0
}

# Decides the accelerator: KVM when the arch allows it and an empty boot
# with it reaches /init's last line, else TCG.
pick_accel() {
	kernel=$1
	if [ -n "${VM_ACCEL:-}" ]; then
		echo "$VM_ACCEL"
		return
	fi
	if [ -z "$VM_KVM_CPU" ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		echo tcg
		return
	fi
	probe=$out/probe
	rm -rf "$probe"
	mkdir -p "$probe/root"
	cp "$out/root/init" "$probe/root/init"
	: >"$probe/root/plan"
	(cd "$probe/root" && find . | cpio -o -H newc --quiet) >"$probe/initrd" || { echo tcg; return; }
	# shellcheck disable=SC2086
	timeout 15 $VM_QEMU $VM_QEMU_ARGS -accel kvm -cpu "$VM_KVM_CPU" -smp 1 -kernel "$kernel" \
		-initrd "$probe/initrd" -append "console=$VM_CONSOLE panic=-1 quiet" \
		-display none -serial "file:$probe/console.log" -no-reboot >/dev/null 2>&1
	if grep -q '^@@@ done 0' "$probe/console.log" 2>/dev/null; then echo kvm; else echo tcg; fi
}

# boot NAME KERNEL SMP CPU PLAN: one machine, then the summary of its log.
boot() {
	name=$1 kver=$2 smp=$3 cpu=$4 kind=$5
	case $kver in
	6.1) meta=$VM_KERNEL_6_1 ;;
	6.12) meta=$VM_KERNEL_6_12 ;;
	*) echo "Bail out! unknown kernel $kver"; return 1 ;;
	esac
	kernel=$("$here/fetch-kernel.sh" "$VM_DEB_ARCH" "$meta" "$cache" 2>"$out/fetch.log") || {
		sed 's/^/# /' "$out/fetch.log"
		echo "not ok - $arch $name: cannot fetch $meta"
		return 1
	}
	[ -n "${accel:-}" ] || accel=$(pick_accel "$kernel")
	if [ "$cpu" = - ]; then
		if [ "$accel" = kvm ]; then cpu=$VM_KVM_CPU; else cpu=$VM_TCG_CPU; fi
	fi
	dir=$out/$name
	rm -rf "$dir"
	mkdir -p "$dir"
	plan "$kind" >"$out/root/plan"
	(cd "$out/root" && find . | cpio -o -H newc --quiet) >"$dir/initrd" || return 1
	echo "# $arch $name: $(basename "$kernel"), -smp $smp, -cpu $cpu, $accel, plan $kind ($(grep -c . "$out/root/plan") runs)"
	start=$(date +%s)
	for attempt in 1 2; do
		# shellcheck disable=SC2086
		timeout "$boot_timeout" $VM_QEMU $VM_QEMU_ARGS -accel "$accel" -cpu "$cpu" -smp "$smp" \
			-kernel "$kernel" -initrd "$dir/initrd" \
			-append "console=$VM_CONSOLE panic=-1 quiet loglevel=1" \
			-display none -serial "file:$dir/console.log" -no-reboot >"$dir/qemu.log" 2>&1
		qemu_status=$?
		# The kernel dying before /init ran is not the library's doing
		# (TCG sometimes breaks the kernel's boot-time text patching: an
		# int3 Oops in 6.12 with -cpu max): boot once more, and say so.
		grep -aq '^@@@ kernel' "$dir/console.log" && break
		[ $attempt = 2 ] && break
		echo "# $arch $name: the kernel died before /init ($(grep -a -m 1 -o 'Oops.*\|Kernel panic.*' "$dir/console.log" | tr -d '\r')); booting again"
		cp "$dir/console.log" "$dir/console-1.log"
	done
	echo "# $arch $name: $(($(date +%s) - start)) s, console in $dir/console.log"
	"$here/summarise.sh" "$arch $name" "$dir/console.log" "$(grep -c . "$out/root/plan")" ||
		{ [ $qemu_status -eq 0 ] || echo "# qemu exit status $qemu_status: $(tail -n 3 "$dir/qemu.log")"; return 1; }
}

for arch in "$@"; do
	conf=$here/arch/$arch.sh
	[ -f "$conf" ] || { echo "Bail out! no $conf"; exit 1; }
	VM_KVM_CPU= VM_RUST_TRIPLE= VM_FAST_NOTE= VM_PLAN_EXTRA_quickA= VM_PLAN_EXTRA_quickB= VM_MM_CID_ITERS= VM_DEBIAN_SUITE=bookworm VM_PROGRESS_DIVISOR=${VM_PROGRESS_DIVISOR_ENV:-}
	VM_KERNEL_6_1= VM_KERNEL_6_12=
	export VM_DEBIAN_SUITE
	# shellcheck disable=SC1090
	. "$conf"
	missing=""
	for tool in "$VM_QEMU" "$VM_CC" "$VM_STRIP" cpio readelf dpkg-deb apt-get; do
		command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
	done
	if [ -n "$VM_RUST_TRIPLE" ] && ! [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/$VM_RUST_TRIPLE" ]; then
		missing="$missing rust-target-$VM_RUST_TRIPLE"
	fi
	if [ -n "$missing" ]; then
		echo "1..0 # SKIP $arch VM tests: missing$missing"
		continue
	fi
	accel=""
	out=$outroot/$arch
	build_arch "$arch" || { failed_total=$((failed_total + 1)); continue; }
	if [ $slow = 1 ]; then configs=$VM_CONFIGS_SLOW; else configs=$VM_CONFIGS_FAST; fi
	[ $slow = 1 ] || [ -z "${VM_FAST_NOTE:-}" ] || echo "# $arch: NOT in check-vm: $VM_FAST_NOTE"
	echo "$configs" | {
		f=0
		while read -r name kver smp cpu kind; do
			[ -n "$name" ] || continue
			if [ -n "${VM_ONLY:-}" ]; then
				case " $VM_ONLY " in *" $name "*) ;; *) continue ;; esac
			fi
			boot "$name" "$kver" "$smp" "$cpu" "$kind" || f=$((f + 1))
		done
		exit $f
	} || failed_total=$((failed_total + $?))
done
if [ $failed_total -ne 0 ]; then
	echo "VM tests: $failed_total machine(s) or builds FAILED"
	exit 1
fi
echo "VM tests: all passed"
