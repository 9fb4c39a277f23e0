#!/bin/sh
# Fuzzes cpu_opv() (fuzz_targets/cpu_opv.rs: arbitrary vectors over a
# sandbox, checked against a reference model) for a bounded time.
#
#   fuzz/run.sh [SECONDS]          fuzz for SECONDS (default 60), starting
#                                  from a copy of the seed corpus (the
#                                  corpus in the repository is not changed)
#   fuzz/run.sh --reseed [SECONDS] regenerate the seed corpus: fuzz from
#                                  scratch for SECONDS (default 20), then
#                                  minimize into corpus/cpu_opv/ (cargo fuzz cmin, one
#                                  input per covered edge: -use_counters=0)
#
# Exits 0 when no input crashed or mismatched the model, 1 when one did
# (the input is kept under $FUZZ_ARTIFACTS, default a fresh temporary
# directory, and printed with a command that replays it), 77 when the
# toolchain (cargo, a nightly toolchain, cargo-fuzz) is missing and
# cannot be installed.
#
# Environment: CARGO_TARGET_DIR (default fuzz/target), FUZZ_SANITIZER
# (default none; address works where ASan does), FUZZ_ARTIFACTS.
set -u
here=$(cd "$(dirname "$0")" && pwd)
target=cpu_opv
reseed=0
if [ "${1:-}" = --reseed ]; then
	reseed=1
	shift
	secs=${1:-20}
else
	secs=${1:-60}
fi
case $secs in
''|*[!0-9]*) echo "usage: $0 [--reseed] [SECONDS]" >&2; exit 2 ;;
esac
target_dir=${CARGO_TARGET_DIR:-$here/target}
sanitizer=${FUZZ_SANITIZER:-none}

skip() {
	echo "SKIP: $*"
	exit 77
}
command -v cargo >/dev/null 2>&1 || skip "cargo not found"
cargo +nightly --version >/dev/null 2>&1 || skip "no nightly toolchain (rustup toolchain install nightly)"
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "# installing cargo-fuzz"
	cargo install --locked cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz >/dev/null 2>&1 ||
		skip "cargo-fuzz missing and cannot be installed"
fi

cd "$here" || exit 1
fuzz() {
	sub=$1
	shift
	cargo +nightly fuzz "$sub" -s "$sanitizer" --target-dir "$target_dir" "$@"
}
echo "# building the fuzz target ($(cargo +nightly --version))"
fuzz build "$target" >"${TMPDIR:-/tmp}/cpu_opv-fuzz-build.$$" 2>&1 || {
	cat "${TMPDIR:-/tmp}/cpu_opv-fuzz-build.$$"
	rm -f "${TMPDIR:-/tmp}/cpu_opv-fuzz-build.$$"
	echo "FAIL: the fuzz target does not build"
	exit 1
}
rm -f "${TMPDIR:-/tmp}/cpu_opv-fuzz-build.$$"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifacts=${FUZZ_ARTIFACTS:-$work/artifacts}
mkdir -p "$work/corpus" "$artifacts"
if [ "$reseed" -eq 0 ] && [ -d "corpus/$target" ]; then
	cp "corpus/$target"/* "$work/corpus/" 2>/dev/null
fi
seeds=$(ls "$work/corpus" | wc -l)
echo "# fuzzing $target for ${secs}s from $seeds seed inputs"
maxlen=
[ "$reseed" -eq 1 ] && maxlen=-max_len=360	# 17 operations of 20 bytes, plus 5
CPU_OPV_FUZZ_STATS=1 fuzz run "$target" "$work/corpus" -- $maxlen \
	-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$artifacts/" >"$work/log" 2>&1
status=$?
grep -E '^(cpu_opv stats|Done|#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss)' "$work/log" | tail -n 6 | sed 's/^/# /'
if [ "$status" -ne 0 ]; then
	grep -E -A20 'panicked|model mismatch|ERROR|deadly signal' "$work/log" | head -n 60 | sed 's/^/# /'
	if [ -z "${FUZZ_ARTIFACTS:-}" ]; then
		keep=$(mktemp -d "${TMPDIR:-/tmp}/cpu_opv-artifacts.XXXXXX")
		cp "$artifacts"/* "$keep/" 2>/dev/null
		artifacts=$keep
	fi
	for a in "$artifacts"/*; do
		[ -f "$a" ] && echo "# failing input: $a (replay: cd $here && cargo +nightly fuzz run $target -s $sanitizer $a)"
	done
	echo "FAIL: $target crashed or mismatched the model (exit $status)"
	exit 1
fi
echo "# corpus grew from $seeds to $(ls "$work/corpus" | wc -l) inputs"
if [ "$reseed" -eq 1 ]; then
	rm -rf "corpus/$target"
	mkdir -p "corpus/$target"
	cp "$work/corpus"/* "corpus/$target/"
	fuzz cmin "$target" "corpus/$target" -- -use_counters=0 >"$work/cmin.log" 2>&1 || { cat "$work/cmin.log"; exit 1; }
	echo "# seed corpus: $(ls "corpus/$target" | wc -l) inputs, $(du -sk "corpus/$target" | cut -f1) KiB"
fi
echo "PASS: $target, ${secs}s, no crash, no model mismatch"
