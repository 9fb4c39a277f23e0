#!/bin/sh
# Scaling curve: the per-CPU counter and list push+pop (inline, CPU_ID
# mode) against one shared atomic counter, with 1..N threads, one pinned
# per CPU (the benchmark uses every CPU of its affinity mask, so taskset
# sets N). Prints a Markdown table of median ns per operation per thread
# and the aggregate throughput ratio.
#
#   scaling.sh [BINDIR] [MAX]      (BINDIR default bin, MAX default nproc)
set -eu
bin=${1:-bin}
max=${2:-$(nproc)}
echo "| threads | counter (ns/op) | list push+pop (ns/op) | shared atomic (ns/op) | atomic / counter |"
echo "|---:|---:|---:|---:|---:|"
for n in 1 2 4 6 8 10 12 14 16 24 32 48 64; do
	[ "$n" -le "$max" ] || break
	out=$(taskset -c "0-$((n - 1))" "$bin/rseq_bench-inline" -w counter,list -M -r 5 -t 20 | grep -v '^#')
	pick() { printf '%s\n' "$out" | awk -F'\t' -v w="$1" -v v="$2" -v n="$n" '$1 == w && $2 == v && $3 == n { print $5; exit }'; }
	c=$(pick counter inline)
	l=$(pick list inline)
	a=$(pick counter.shared_atomic baseline)
	r=$(awk -v a="$a" -v c="$c" 'BEGIN { if (c > 0) printf "%.1fx", a / c; else print "-" }')
	echo "| $n | $c | $l | $a | $r |"
done
