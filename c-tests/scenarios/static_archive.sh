#!/bin/sh
# speed: fast
# The installed librseq.a as a packager ships it: its only global symbols
# are the C API (a subset of exported-symbols.txt; no Rust std, no
# compiler builtins, no rust_eh_personality), and Libs.private has no
# -lgcc_s. A C program links it together with another Rust staticlib
# (scenarios/src/other_rust.rs, its own std) and runs; a fully -static C
# program links with `pkg-config --static --libs librseq` and runs, with
# glibc's registration on and off.
. "$CTESTS/scenarios/src/common.sh"

a=$STAGE/lib/librseq.a
[ -f "$a" ] || skip_all "no $a"
globals=$(readelf -sW "$a" | awk '($5 == "GLOBAL" || $5 == "WEAK") && $7 != "UND" { print $8 }' | sort -u)
extra=$(printf '%s\n' "$globals" | grep -vxF -f "$CTESTS/exported-symbols.txt")
[ -z "$extra" ] && [ -n "$globals" ]
ok $? "librseq.a defines only C API globals ($(printf '%s\n' "$globals" | wc -l) symbols)"
[ -z "$extra" ] || printf '%s\n' "$extra" | head -n 10 | sed 's/^/# extra: /'
! printf '%s\n' "$globals" | grep -qE '^(rust_eh_personality|__rust_|_ZN|_RN)'
ok $? "no Rust std or allocator symbol is global"
! pkg-config --static --libs librseq | grep -q -- '-lgcc_s'
ok $? "Libs.private has no -lgcc_s: $(pkg-config --static --libs-only-l librseq)"

CF="$CSTD_FLAGS -I$CTESTS $(pkg-config --cflags librseq)"
LDIR=$(pkg-config --libs-only-L librseq)
PRIV=$(for l in $(pkg-config --static --libs-only-l librseq); do [ "$l" = -lrseq ] || printf '%s ' "$l"; done)

if command -v rustc >/dev/null 2>&1; then
	rustc --edition 2021 -O --crate-type staticlib --crate-name other_rust \
		-o "$WORK/libother_rust.a" "$SCEN_SRC/other_rust.rs" >"$WORK/rustc.out" 2>&1
	ok $? "another Rust staticlib builds"
	# shellcheck disable=SC2086
	cc $CF -DOTHER_RUST -o "$WORK/two_rust" "$SCEN_SRC/static_archive.c" \
		$LDIR -Wl,-Bstatic -lrseq -Wl,-Bdynamic "$WORK/libother_rust.a" $PRIV >"$WORK/cc.out" 2>&1
	ok $? "librseq.a and another Rust staticlib link into one program"
	sed 's/^/# /' "$WORK/cc.out" | grep -v 'statically linked' | head -n 10
	run_tap "both Rust archives in one program" env LD_LIBRARY_PATH= "$WORK/two_rust"
else
	skip_one "no rustc for the other Rust staticlib"
fi

# shellcheck disable=SC2086
cc $CF -static -o "$WORK/full_static" "$SCEN_SRC/static_archive.c" \
	$(pkg-config --static --libs librseq) >"$WORK/cc-static.out" 2>&1
rc=$?
ok $rc "a fully -static program links with pkg-config --static --libs librseq"
[ $rc -eq 0 ] || sed 's/^/# /' "$WORK/cc-static.out" | tail -n 10
! readelf -d "$WORK/full_static" 2>/dev/null | grep -q NEEDED
ok $? "it needs no shared library"
run_tap "fully static, glibc registration on" "$WORK/full_static"
run_tap "fully static, GLIBC_TUNABLES=glibc.pthread.rseq=0" env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$WORK/full_static"
finish
