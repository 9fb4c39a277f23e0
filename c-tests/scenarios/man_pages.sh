#!/bin/sh
# speed: fast
# The installed man pages: every page under $STAGE/share/man/man3 renders
# with `man -l` (MANWIDTH=80) to non-empty text, and `groff -man -ww -z`
# reports no warning; every alias symlink resolves; `man -M` finds cpu_opv(3)
# and rseq_register_current_thread(3) by name.
. "$CTESTS/scenarios/src/common.sh"

command -v man >/dev/null 2>&1 || skip_all "man not installed (apt-get install man-db groff-base)"
dir=$STAGE/share/man/man3
[ -d "$dir" ] || skip_all "no $dir"
pages=0
for p in "$dir"/*.3; do
	[ -L "$p" ] && continue
	pages=$((pages + 1))
	# man -l shows what users see; groff -ww -z reports every warning
	# (man-db does not pass them on).
	MANWIDTH=80 man -l "$p" >"$WORK/out" 2>"$WORK/err"
	rc=$?
	if command -v groff >/dev/null 2>&1; then
		groff -man -ww -z "$p" 2>>"$WORK/err" || rc=1
	fi
	[ $rc -eq 0 ] && [ ! -s "$WORK/err" ] && [ "$(wc -l <"$WORK/out")" -gt 10 ]
	ok $? "man -l $(basename "$p"): renders without warnings ($(wc -l <"$WORK/out") lines)"
	sed 's/^/# /' "$WORK/err" | head -n 5
done
[ $pages -ge 7 ]
ok $? "$pages pages installed"
dangling=
for l in "$dir"/*.3; do
	[ -L "$l" ] && [ ! -e "$l" ] && dangling="$dangling $(basename "$l")"
done
[ -z "$dangling" ] && [ "$(find "$dir" -type l | wc -l)" -gt 20 ]
ok $? "alias symlinks resolve ($(find "$dir" -type l | wc -l) aliases)${dangling:+, dangling:$dangling}"
for name in cpu_opv rseq_register_current_thread rseq_unregister_current_thread percpu_addv librseq; do
	MANWIDTH=80 man -M "$STAGE/share/man" 3 "$name" 2>/dev/null | grep -q "$name"
	ok $? "man -M STAGE/share/man 3 $name"
done
finish
