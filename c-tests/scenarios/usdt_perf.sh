#!/bin/sh
# speed: fast
# The USDT probes as perf sees them (not only gdb): perf probe places a
# uprobe on every cpu_op:begin and cpu_op:end site of the installed
# librseq.so.0, and 1000 cpu-ops (scenarios/src/usdt_hits.c) must give
# exactly 1000 hits of each (`perf stat`), and every recorded begin must
# carry the right arguments (target 0, mode 0: `perf record` + `perf
# script`). A library whose segment layout misplaces the uprobes (rust-lld's
# code segment, file offset 0x1000 away from its address, with perf 6.1)
# gives a few hits, garbage arguments, or a crashed program. Both paths
# of a cpu-op are run: pinned on the target CPU (the own-CPU rseq
# section, whose probes fire after its commit) and pinned elsewhere (the
# remote engine); a CI run caught the first firing no probe at all.
# SKIP only when perf is missing, the kernel refuses uprobes or
# perf_event_open, or uprobes are placed but never fire: a control
# uprobe on the test program's own function (usdt_control_step, once per
# cpu-op) must count 1000, or the machine loses uprobes whatever the
# library does.
# Runs are serialised with flock: the probe events are global.
. "$CTESTS/scenarios/src/common.sh"

command -v perf >/dev/null 2>&1 || skip_all "perf not installed (apt-get install linux-perf)"
[ -f "$STAGE/lib/librseq.so.0" ] || skip_all "no $STAGE/lib/librseq.so.0"
# The installed library's bytes, copied beside the program: the control
# probe and the library then live on one filesystem, so a control that
# fires says uprobes work where the library is too.
mkdir -p "$WORK/lib"
cp "$STAGE/lib/librseq.so.0" "$WORK/lib/librseq.so.0"
lib=$WORK/lib/librseq.so.0
LD_LIBRARY_PATH=$WORK/lib:$LD_LIBRARY_PATH
export LD_LIBRARY_PATH
tracefs=/sys/kernel/tracing
if [ ! -e "$tracefs/uprobe_events" ]; then
	mount -t tracefs nodev "$tracefs" >/dev/null 2>&1
	[ -e "$tracefs/uprobe_events" ] || skip_all "no tracefs uprobe_events (kernel without CONFIG_UPROBE_EVENTS, or tracefs cannot be mounted)"
fi
build "$WORK/usdt_hits" "$SCEN_SRC/usdt_hits.c"
ok $? "usdt_hits.c builds"

lock=${TMPDIR:-/tmp}/rseq-usdt-perf.lock
exec 9>"$lock"
command -v flock >/dev/null 2>&1 && flock -w 300 9
cleanup() {
	perf probe -q -d 'sdt_cpu_op:*' >/dev/null 2>&1
	perf probe -q -d 'usdt_ctl:*' >/dev/null 2>&1
}
trap cleanup EXIT
cleanup

# HOME: perf keeps its build-id cache there; keep it out of the user's.
export HOME=$WORK
if ! perf probe -x "$lib" -a sdt_cpu_op:begin >"$WORK/probe.out" 2>&1 ||
	! perf probe -x "$lib" -a sdt_cpu_op:end >>"$WORK/probe.out" 2>&1; then
	if grep -qiE 'permission|not permitted|denied|not supported|no such file' "$WORK/probe.out"; then
		sed 's/^/# /' "$WORK/probe.out" | tail -n 5
		skip_all "the kernel refuses uprobes here"
	fi
	ok 1 "perf probe -x librseq.so.0 sdt_cpu_op:begin/end"
	sed 's/^/# /' "$WORK/probe.out" | tail -n 20
	finish
fi
if ! perf probe -x "$WORK/usdt_hits" -a usdt_ctl:step=usdt_control_step >>"$WORK/probe.out" 2>&1; then
	sed 's/^/# /' "$WORK/probe.out" | tail -n 5
	skip_all "perf probe cannot place the control uprobe on usdt_hits:usdt_control_step"
fi
sites=$(perf probe -l 2>/dev/null | grep -c 'sdt_cpu_op:begin')
ok 0 "perf probe placed uprobes on sdt_cpu_op:begin and :end ($sites begin sites)"

# Each path of a cpu-op must fire the probes once: pinned on CPU 0 the
# call takes the own-CPU rseq section, pinned elsewhere the remote
# engine. The program runs under its own timeout (perf follows it): a
# misplaced uprobe can corrupt an instruction and leave it spinning.
other=$(awk '/^Cpus_allowed_list/ { print $2 }' /proc/self/status | tr ',' '\n' |
	sed 's/.*-//' | sort -n | tail -n 1)
pins="0:own"
command -v taskset >/dev/null 2>&1 || pins="any:any"
[ "$pins" = "0:own" ] && [ -n "$other" ] && [ "$other" != 0 ] && pins="$pins $other:remote"
for pin in $pins; do
	cpu=${pin%%:*}
	path=${pin#*:}
	runner=""
	[ "$cpu" = any ] || runner="taskset -c $cpu"
	# shellcheck disable=SC2086
	timeout 120 perf stat -x, -e sdt_cpu_op:begin -e sdt_cpu_op:end -e usdt_ctl:step \
		$runner timeout -s KILL 60 "$WORK/usdt_hits" 1000 0 >"$WORK/stat.out" 2>&1
	rc=$?
	if [ $rc -ne 0 ] && grep -qiE 'perf_event_open|permission|not permitted|No permission' "$WORK/stat.out"; then
		sed 's/^/# /' "$WORK/stat.out" | tail -n 5
		skip_all "the kernel refuses perf_event_open here"
	fi
	begin=$(awk -F, '$3 == "sdt_cpu_op:begin" { print $1 }' "$WORK/stat.out")
	end=$(awk -F, '$3 == "sdt_cpu_op:end" { print $1 }' "$WORK/stat.out")
	ctl=$(awk -F, '$3 == "usdt_ctl:step" { print $1 }' "$WORK/stat.out")
	if [ "$ctl" != 1000 ]; then
		sed 's/^/# /' "$WORK/stat.out" | tail -n 10
		ldd "$WORK/usdt_hits" 2>/dev/null | grep rseq | sed 's/^/# /'
		df -T "$WORK" 2>/dev/null | sed 's/^/# /'
		skip_all "uprobes are placed but do not fire here: the control probe on the program's own function counted ${ctl:-?} of 1000 (filesystem or kernel that loses uprobes)"
	fi
	[ $rc -eq 0 ] && [ "$begin" = 1000 ] && [ "$end" = 1000 ]
	ok $? "perf stat, on CPU $cpu ($path path): 1000 cpu-ops on CPU 0 -> ${begin:-?} cpu_op:begin, ${end:-?} cpu_op:end hits (exit $rc)"
	[ "$begin" = 1000 ] || sed 's/^/# /' "$WORK/stat.out" | tail -n 10
done

timeout 120 perf record -q -o "$WORK/perf.data" -e sdt_cpu_op:begin \
	timeout -s KILL 60 "$WORK/usdt_hits" 200 >"$WORK/record.out" 2>&1
rc=$?
perf script -i "$WORK/perf.data" >"$WORK/script.out" 2>/dev/null
n=$(grep -c 'sdt_cpu_op:begin' "$WORK/script.out")
good=$(grep -c 'sdt_cpu_op:begin:.* arg1=0 arg2=0 arg3=[0-4]$' "$WORK/script.out")
[ $rc -eq 0 ] && [ "$n" = 200 ] && [ "$good" = 200 ]
ok $? "perf record: 200 cpu_op:begin events, $good with target 0, mode 0, a fence kind 0-4"
[ "$good" = 200 ] || sed 's/^/# /' "$WORK/script.out" | head -n 5
finish
