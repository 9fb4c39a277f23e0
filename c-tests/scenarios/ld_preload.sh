#!/bin/sh
# speed: fast
# LD_PRELOAD of the library into ordinary multithreaded glibc programs that
# know nothing of rseq: scenarios/src/plain_mt.c (joined, detached, nested
# threads, a custom stack size, pthread_exit values, cancellation of a
# blocked thread, TLS, TSD destructors, pthread_once, a condvar queue,
# fork from a thread, atexit, exit status 3), GNU sort --parallel=4 and
# xz -T2 (12 blocks, compressed and decompressed by 2 threads). Each gives
# the same output and exit status with and without the library, with
# glibc's registration on and off. plain_mt -p probes every
# thread with a raw rseq() of a private area (EINVAL: already registered):
# with glibc.pthread.rseq=0 and the library preloaded only the main
# thread (registered by the library's constructor) is: registration is
# lazy and the other threads, the fork child's included, never use the
# library; without the library none is (control); with glibc's
# registration all are, preloaded or not.
. "$CTESTS/scenarios/src/common.sh"

LIB=$STAGE/lib/librseq.so.0
OFF=GLIBC_TUNABLES=glibc.pthread.rseq=0
cc $CSTD_FLAGS -o "$WORK/plain_mt" "$SCEN_SRC/plain_mt.c" -lpthread
ok $? "plain_mt.c builds without any rseq header or library"
readelf -d "$WORK/plain_mt" | grep -q 'NEEDED.*librseq'
[ $? -ne 0 ]
ok $? "plain_mt does not link librseq"
LD_TRACE_LOADED_OBJECTS=1 LD_PRELOAD=$LIB "$WORK/plain_mt" | grep -q "$LIB"
ok $? "with LD_PRELOAD the loader maps $LIB"

# run NAME ENV... -- CMD...: output (stdout+stderr) in $WORK/NAME.out,
# exit status in $WORK/NAME.rc
run() {
	_name=$1
	shift
	timeout "$TEST_TIMEOUT" env "$@" >"$WORK/$_name.out" 2>&1
	echo $? >"$WORK/$_name.rc"
}

same() {	# same REF NAME DESC
	cmp -s "$WORK/$1.out" "$WORK/$2.out" && cmp -s "$WORK/$1.rc" "$WORK/$2.rc"
	_st=$?
	ok $_st "$3: same output and exit status as without the library (exit $(cat "$WORK/$2.rc"))"
	[ $_st -eq 0 ] || { diff "$WORK/$1.out" "$WORK/$2.out" | head -n 20 | sed 's/^/# /'; }
}

run plain "$WORK/plain_mt"
[ "$(cat "$WORK/plain.rc")" = 3 ] && grep -q 'consumed sum exact' "$WORK/plain.out" &&
	grep -q 'cancel: cancelled, cleanup handler ran' "$WORK/plain.out" &&
	grep -q 'fork: child exit status 60' "$WORK/plain.out"
ok $? "plain_mt alone: exit 3, exact queue sum, cancellation and fork work"
run plain-off $OFF "$WORK/plain_mt"
run pre LD_PRELOAD="$LIB" "$WORK/plain_mt"
run pre-off LD_PRELOAD="$LIB" $OFF "$WORK/plain_mt"
same plain plain-off "plain_mt, glibc registration off, no library (reference)"
same plain pre "plain_mt + LD_PRELOAD, glibc registration on"
same plain pre-off "plain_mt + LD_PRELOAD, glibc registration off (library registers)"

# Registration probes.
probe() {	# probe NAME EXPECT DESC
	_line=$(grep '^probe: ' "$WORK/$1.out")
	_child=$(grep '^probe (fork child): ' "$WORK/$1.out")
	case $2 in
	all) _want=", 0 unregistered, 0 errors" _cwant=$_want ;;
	none) _want=", 0 registered, [0-9]* unregistered, 0 errors" _cwant=$_want ;;
	main) _want=", 1 registered, [0-9]* unregistered, 0 errors"
	      _cwant=", 0 registered, [0-9]* unregistered, 0 errors" ;;
	esac
	printf '%s\n' "$_line" | grep -q "$_want" && printf '%s\n' "$_child" | grep -q "$_cwant" &&
		[ "$(cat "$WORK/$1.rc")" = 3 ]
	ok $? "$3: ${_line#probe: }; fork child: ${_child#probe (fork child): }"
}
run p-plain "$WORK/plain_mt" -p
run p-pre LD_PRELOAD="$LIB" "$WORK/plain_mt" -p
run p-plain-off $OFF "$WORK/plain_mt" -p
run p-pre-off LD_PRELOAD="$LIB" $OFF "$WORK/plain_mt" -p
probe p-plain all "glibc registers every thread (no library)"
probe p-pre all "glibc registers every thread (library preloaded, glibc keeps ownership)"
probe p-plain-off none "control: glibc registration off, no library: no thread registered"
probe p-pre-off main "glibc registration off + LD_PRELOAD: the library registered the main thread only (lazy registration)"

# Real programs: GNU sort with threads, xz with threads.
awk 'BEGIN { srand(7); for (i = 0; i < 200000; i++) printf "%d %x\n", int(rand() * 1e9), i }' >"$WORK/input"
for prog in sort xz; do
	case $prog in
	sort) set -- sort --parallel=4 -S 2M -k1,1n "$WORK/input" ;;
	xz) command -v xz >/dev/null || { skip_one "xz not installed"; continue; }
	    set -- sh -c 'xz -T2 -0 --block-size=262144 -c "$1" | xz -d -T2 | cksum' sh "$WORK/input" ;;
	esac
	run "$prog" "$@"
	run "$prog-pre" LD_PRELOAD="$LIB" "$@"
	run "$prog-pre-off" LD_PRELOAD="$LIB" $OFF "$@"
	[ "$(cat "$WORK/$prog.rc")" = 0 ] && [ -s "$WORK/$prog.out" ]
	ok $? "$prog alone runs ($(wc -l <"$WORK/$prog.out") lines)"
	same "$prog" "$prog-pre" "$prog + LD_PRELOAD"
	same "$prog" "$prog-pre-off" "$prog + LD_PRELOAD, glibc registration off"
done
finish
