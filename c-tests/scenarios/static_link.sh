#!/bin/sh
# speed: fast
# Static linking with librseq.a (-Wl,-Bstatic -lrseq -Wl,-Bdynamic plus
# `pkg-config --static --libs-only-l librseq` minus -lrseq): the library's
# constructor must run from the archive. scenarios/src/static_ctor.c
# (only the inline header) checks the data symbols and the main thread's
# registration before main() calls anything, then exact totals;
# exit_values.c the data symbols after the destructor; ops_test,
# cpu_op_test, registration_test, param_test (25%) and abi_only.c (x86_64)
# run as they do against the shared library. Every program runs with
# glibc's registration on and off and with no librseq.so on the library
# path.
. "$CTESTS/scenarios/src/common.sh"

[ -f "$STAGE/lib/librseq.a" ] || skip_all "no $STAGE/lib/librseq.a"
CFLAGS_CT="-I$CTESTS $(pkg-config --cflags librseq libcpu-op)"
LDIR=$(pkg-config --libs-only-L librseq)
PRIV=$(for l in $(pkg-config --static --libs-only-l librseq); do [ "$l" = -lrseq ] || printf '%s ' "$l"; done)
diag "link: $LDIR -Wl,-Bstatic -lrseq -Wl,-Bdynamic $PRIV"

progs="static_ctor exit_values ops_test ops_test-noinline cpu_op_test cpu_op_test-noinline registration_test param_test"
[ "$(uname -m)" = x86_64 ] && progs="$progs abi_only"
for p in $progs; do
	d=
	case $p in
	*-noinline) d=-DRSEQ_NO_INLINE ;;
	esac
	name=${p%-noinline}
	src=$CTESTS/$name.c
	[ -f "$src" ] || src=$SCEN_SRC/$name.c
	exe=$WORK/$p-static
	# shellcheck disable=SC2086
	cc $CSTD_FLAGS $d $CFLAGS_CT -o "$exe" "$src" $LDIR -Wl,-Bstatic -lrseq -Wl,-Bdynamic $PRIV -lpthread -ldl
	ok $? "$p links statically against librseq.a"
	! readelf -d "$exe" | grep -q 'NEEDED.*librseq' && nm "$exe" | grep -q ' [BD] rseq_offset$'
	ok $? "$p: no librseq.so needed, rseq_offset defined in the executable"
	args=
	case $p in
	param_test) args="-r 25" ;;
	abi_only) args="0 200000" ;;
	esac
	runner=run_tap
	[ $p = registration_test ] && runner=run_retry
	# shellcheck disable=SC2086
	$runner "$p (static), glibc registration on" env LD_LIBRARY_PATH= "$exe" $args
	# shellcheck disable=SC2086
	$runner "$p (static), GLIBC_TUNABLES=glibc.pthread.rseq=0" env LD_LIBRARY_PATH= GLIBC_TUNABLES=glibc.pthread.rseq=0 "$exe" $args
done
finish
