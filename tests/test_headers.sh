#!/usr/bin/env bash
# Each public header compiles on its own with -std=c11 -pedantic -Werror,
# and as C++ (the extern "C" wrapping), and exposes nothing without the
# evs_/EVS_ prefixes.  Usage: test_headers.sh CC INCLUDE_DIR
set -u
cc=$1
inc=$2
cxx=${CXX:-c++}
passed=0
failed=0
for h in "$inc"/evstore.h "$inc"/evstore/*.h; do
	rel=${h#"$inc"/}
	if printf '#include "%s"\n#include "%s"\nint main(void) { return 0; }\n' "$rel" "$rel" |
		"$cc" -std=c11 -pedantic -Wall -Wextra -Werror -I"$inc" -x c -o /dev/null - 2>/tmp/hdr.$$; then
		passed=$((passed + 1))
	else
		echo "FAIL: $rel does not compile alone as C11:"; cat /tmp/hdr.$$
		failed=$((failed + 1))
	fi
	if command -v "$cxx" >/dev/null; then
		if printf '#include "%s"\nint main() { return 0; }\n' "$rel" |
			"$cxx" -std=c++11 -pedantic -Wall -Werror -I"$inc" -x c++ -o /dev/null - 2>/tmp/hdr.$$; then
			passed=$((passed + 1))
		else
			echo "FAIL: $rel does not compile as C++:"; cat /tmp/hdr.$$
			failed=$((failed + 1))
		fi
	fi
done
rm -f /tmp/hdr.$$
# Every declared function is evs_-prefixed.
bad=$(grep -hoE '^EVS_EXTERN [^(]*\(' "$inc"/evstore/*.h | grep -vE '[ *]evs_[a-z0-9_]+\($' || true)
if [ -n "$bad" ]; then
	echo "FAIL: unprefixed public functions: $bad"
	failed=$((failed + 1))
else
	passed=$((passed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
