#!/bin/sh
# speed: slow
# The pure-Rust logic under Miri (`cargo +nightly miri test --lib`, test-
# name filters): vector validation and layout (cpu_op::vector::tests), the
# registration size/alignment rules (registration::tests), CPU-list
# parsing (cpu::tests::parses_cpu_lists), the UAPI layouts
# (abi::tests::layouts_match_the_uapi) and, when the crate has them, the
# ownership-word state machine (cpu_op::engine::tests: the futex mutex of
# a slot, with Miri's data-race detector checking that lock/unlock order
# the data they protect; run again over 16 scheduler seeds). Tests that
# call the OS or run inline assembly are not selected.
#
# Target directory: $RSEQ_MIRI_TARGET_DIR, else $CARGO_TARGET_DIR, else
# cargo's default (target/miri). Needs the nightly toolchain with the miri
# and rust-src components; SKIP otherwise.
. "$CTESTS/scenarios/src/common.sh"

ROOT=$(cd "$CTESTS/.." && pwd)
command -v cargo >/dev/null || skip_all "cargo not installed"
cargo +nightly miri --version >/dev/null 2>&1 || skip_all "no nightly toolchain with miri (rustup +nightly component add miri rust-src)"
tdir=${RSEQ_MIRI_TARGET_DIR:-${CARGO_TARGET_DIR:-}}
[ -z "$tdir" ] || { CARGO_TARGET_DIR=$tdir; export CARGO_TARGET_DIR; }
diag "$(cargo +nightly miri --version 2>&1), target dir ${tdir:-default}"

cargo +nightly miri setup >"$WORK/setup.out" 2>&1 || { sed 's/^/# /' "$WORK/setup.out" | tail -n 20; skip_all "cargo miri setup failed (offline without a cached sysroot?)"; }

PURE="cpu_op::vector::tests registration::tests cpu::tests::parses_cpu_lists abi::tests::layouts_match_the_uapi cpu_op::engine::tests"
# shellcheck disable=SC2086
(cd "$ROOT" && cargo +nightly miri test --lib -- $PURE) >"$WORK/miri.out" 2>&1
rc=$?
passed=$(sed -n 's/^test result: .* \([0-9]*\) passed.*/\1/p' "$WORK/miri.out" | head -n 1)
ok $rc "cargo +nightly miri test --lib -- $PURE (exit $rc, ${passed:-0} passed)"
if [ $rc -ne 0 ]; then
	grep -v '^ *Compiling' "$WORK/miri.out" | grep -A 12 -m 3 'error\|panicked\|FAILED' | sed 's/^/# | /' | head -n 60
	if grep -q 'clashes with a built-in shim' "$WORK/miri.out"; then
		diag "The crate exports a symbol Miri implements itself (pthread_create, from"
		diag "src/capi/interpose.rs): every test thread that libtest spawns hits it."
		diag "Needed in src/capi/mod.rs: #[cfg(not(miri))] on \`mod interpose;\`."
	fi
fi

# One assertion per selected test that exists, so that a test lost from the
# selection shows.
for t in cpu_op::vector::tests::layout_is_v12 cpu_op::vector::tests::validation_matches_the_kernel \
	cpu_op::vector::tests::ranges_follow_the_kernel_order registration::tests::sizes_follow_librseq \
	registration::tests::own_registration_uses_the_kernel_sizes cpu::tests::parses_cpu_lists \
	abi::tests::layouts_match_the_uapi; do
	grep -q "^test $t \.\.\. ok" "$WORK/miri.out"
	ok $? "miri: $t"
done
engine=$(sed -n 's/^test \(cpu_op::engine::tests::[a-z_0-9]*\) \.\.\. .*/\1/p' "$WORK/miri.out")
if [ -z "$engine" ]; then
	skip_one "cpu_op::engine::tests: the crate has no Miri-runnable test of the ownership word yet"
else
	for t in $engine; do
		grep -q "^test $t \.\.\. ok" "$WORK/miri.out"
		ok $? "miri: $t"
	done
	(cd "$ROOT" && MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-many-seeds=0..16" cargo +nightly miri test --lib -- cpu_op::engine::tests) \
		>"$WORK/seeds.out" 2>&1
	rc=$?
	ok $rc "miri: cpu_op::engine::tests over 16 scheduler seeds (exit $rc)"
	[ $rc -eq 0 ] || grep -v '^ *Compiling' "$WORK/seeds.out" | grep -A 12 -m 3 'error\|panicked' | sed 's/^/# | /' | head -n 40
fi
finish
