# Attributes the sanitizer reports in a test's output, one line each:
#   LIB|TEST|OTHER <tab> kind <tab> where
# UBSan: "FILE:LINE:COL: runtime error: ..." (TEST when FILE is a test
# source under c-tests/, LIB when it is a header of the library).
# ASan/LSan: an "ERROR: AddressSanitizer/LeakSanitizer" block up to its
# SUMMARY (LIB when a frame is in librseq or a header of the library, TEST
# when the first frame outside the sanitizer runtime is in c-tests/).
function where_of(s) { sub(/^.* in /, "", s); return s }
/runtime error:/ {
	loc = $1
	sub(/:$/, "", loc)
	kind = $0
	sub(/^.*runtime error: /, "", kind)
	sub(/ 0x[0-9a-f]+/, "", kind)
	who = "OTHER"
	if (loc ~ /\/include\/rseq\//)
		who = "LIB"
	else if (loc ~ /c-tests\//)
		who = "TEST"
	print who "\t" "UBSan: " kind "\t" loc
	next
}
/ERROR: (AddressSanitizer|LeakSanitizer)/ {
	inrep = 1; lib = 0; first = ""; kind = $0
	sub(/^.*ERROR: /, "", kind)
	sub(/ on address.*| at pc.*/, "", kind)
	next
}
inrep && /Direct leak/ { kind = "LeakSanitizer: direct leak" }
inrep && /Indirect leak/ && kind !~ /direct leak/ { kind = "LeakSanitizer: indirect leak" }
inrep && /#[0-9]+ 0x/ {
	if ($0 ~ /librseq|\/include\/rseq\//)
		lib = 1
	if (first == "" && $0 !~ /libsanitizer|compiler-rt|asan_|interceptor|libasan|libubsan/)
		first = where_of($0)
}
inrep && /SUMMARY:/ {
	inrep = 0
	who = lib ? "LIB" : (first ~ /c-tests\// ? "TEST" : "OTHER")
	print who "\t" kind "\t" first
}
