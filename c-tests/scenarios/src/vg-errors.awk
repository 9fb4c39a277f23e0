# Summarises a memcheck --xml file: one line per error,
#   LIB|OTHER <tab> kind <tab> what <tab> first librseq frame (fn file:line)
# LIB when any frame of the error's stack (or of its auxiliary stack) is in
# librseq. Leak kinds that do not count as errors are left out.
/<error>/ { inerr = 1; lib = 0; kind = ""; what = ""; where = ""; want = 0; next }
!inerr { next }
/<kind>/ { k = $0; gsub(/.*<kind>|<\/kind>.*/, "", k); kind = k }
(/<what>/ || /<text>/) && what == "" { w = $0; gsub(/.*<(what|text)>|<\/(what|text)>.*/, "", w); what = w }
/<obj>.*librseq/ { lib = 1; if (where == "") want = 1 }
want && /<fn>/ { f = $0; gsub(/.*<fn>|<\/fn>.*/, "", f); fn = f }
want && /<file>/ { f = $0; gsub(/.*<file>|<\/file>.*/, "", f); file = f }
want && /<line>/ { l = $0; gsub(/.*<line>|<\/line>.*/, "", l); line = l }
/<\/frame>/ { if (want) { where = fn " " file ":" line; want = 0 }; fn = ""; file = ""; line = "" }
/<\/error>/ {
	inerr = 0
	if (kind ~ /Leak_(PossiblyLost|StillReachable|IndirectlyLost)/)
		next
	print (lib ? "LIB" : "OTHER") "\t" kind "\t" what "\t" where
}
