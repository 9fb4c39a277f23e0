#!/bin/sh
# speed: fast
# Issue 14: the system calls a thread costs (scenarios/src/syscall_count.c
# under strace -f, 20 threads created and joined one by one, inline and
# RSEQ_NO_INLINE builds). Per worker thread, the library's own calls are
# the thread's rseq and rt_sigprocmask calls minus those of the same
# thread in a build without the library (glibc's: its pthread_create
# masks signals, and with its registration on it registers the thread).
# With glibc's registration off (the library registers): a thread that
# never touches the library makes 0 library calls; one that uses inline
# sections 1 rseq and no rt_sigprocmask; one that registers and
# unregisters explicitly, twice each (librseq's style), 2 rseq. With
# glibc's registration on: 0 in every mode. Skips without strace (or when
# ptrace is refused).
. "$CTESTS/scenarios/src/common.sh"

command -v strace >/dev/null 2>&1 || skip_all "strace not installed"
strace -f -qq -o /dev/null /bin/true 2>/dev/null || skip_all "strace cannot trace here (ptrace refused)"
N=20
OFF=GLIBC_TUNABLES=glibc.pthread.rseq=0

cc $CSTD_FLAGS -DNO_LIBRARY -o "$WORK/count_base" "$SCEN_SRC/syscall_count.c" -lpthread
ok $? "syscall_count.c builds without the library (baseline)"
build "$WORK/count" "$SCEN_SRC/syscall_count.c"
ok $? "syscall_count.c builds (inline)"
build "$WORK/count-noinline" "$SCEN_SRC/syscall_count.c" -DRSEQ_NO_INLINE
ok $? "syscall_count.c builds (RSEQ_NO_INLINE)"

# trace OUT ENV CMD...: per worker thread "rseq sigprocmask", one
# distinct line per combination with its number of threads, into OUT;
# the main thread's counts into OUT.main.
trace() {
	_out=$1
	shift
	_env=$1
	shift
	timeout "$TEST_TIMEOUT" env "$_env" strace -f -qq -e trace=rseq,rt_sigprocmask,getppid -o "$WORK/trace" "$@" \
		>"$WORK/trace.stdout" 2>&1
	_rc=$?
	awk -v out="$_out" '
		NR == 1 { main = $1 }
		$2 ~ /^getppid\(/ { worker[$1] = 1 }
		$2 ~ /^rseq\(/ { rseq[$1]++ }
		$2 ~ /^rt_sigprocmask\(/ { sig[$1]++ }
		END {
			for (p in worker) combo[(rseq[p] + 0) " " (sig[p] + 0)]++
			for (c in combo) print c " x" combo[c] > out
			print (rseq[main] + 0) " " (sig[main] + 0) > (out ".main")
		}' "$WORK/trace"
	return $_rc
}

# expect DESC FILE BASE_SIG RSEQ: every one of the N workers made RSEQ
# rseq calls and exactly BASE_SIG rt_sigprocmask calls.
expect() {
	_got=$(cat "$2")
	[ "$_got" = "$4 $3 x$N" ]
	ok $? "$1: per thread $4 rseq, $3 rt_sigprocmask (got: $_got; main thread: $(cat "$2.main"))"
}

for glibc in on off; do
	if [ $glibc = on ]; then envs="RSEQ_UNUSED=1"; else envs=$OFF; fi
	trace "$WORK/base-$glibc" $envs "$WORK/count_base" idle $N
	ok $? "baseline run, glibc registration $glibc"
	base_rseq=$(cut -d' ' -f1 "$WORK/base-$glibc")
	base_sig=$(cut -d' ' -f2 "$WORK/base-$glibc")
	diag "glibc alone, registration $glibc: per thread $(cat "$WORK/base-$glibc")"
	for b in count count-noinline; do
		for mode in idle inline explicit; do
			trace "$WORK/$b-$mode-$glibc" $envs "$WORK/$b" $mode $N
			ok $? "$b $mode, glibc registration $glibc: runs, exact total"
			if [ $glibc = on ]; then
				want=$base_rseq
			else
				case $mode in idle) want=0 ;; inline) want=1 ;; explicit) want=2 ;; esac
			fi
			expect "$b $mode, glibc registration $glibc" "$WORK/$b-$mode-$glibc" "$base_sig" "$want"
		done
	done
done
finish
