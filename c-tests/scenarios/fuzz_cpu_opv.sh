# speed: slow
# Fuzzes cpu_opv() for 60 s (fuzz/run.sh: cargo-fuzz/libFuzzer, arbitrary
# vectors over a sandbox checked against a reference model), starting from
# the seed corpus in fuzz/corpus/cpu_opv/. Skips (77) without cargo, a
# nightly toolchain or cargo-fuzz. FUZZ_SECONDS changes the duration.
# The fuzz target builds the library from the source tree (not $STAGE).
root=$(cd "$CTESTS/.." && pwd)
echo "1..1"
sh "$root/fuzz/run.sh" "${FUZZ_SECONDS:-60}" >"$WORK/fuzz.log" 2>&1
status=$?
sed 's/^/# /' "$WORK/fuzz.log"
case $status in
0) echo "ok 1 - cpu_opv fuzzing for ${FUZZ_SECONDS:-60}s: no crash, no model mismatch" ;;
77) tail -n 1 "$WORK/fuzz.log"; exit 77 ;;
*) echo "not ok 1 - cpu_opv fuzzing: crash or model mismatch (exit $status)"; exit 1 ;;
esac
