# speed: fast
# A template: scenarios print TAP and exit 0 (pass), 1 (fail) or 77 (skip).
echo "1..1"
[ -f "$STAGE/lib/librseq.so.0" ] && echo "ok 1 - the staged library exists" || { echo "not ok 1 - no staged library"; exit 1; }
