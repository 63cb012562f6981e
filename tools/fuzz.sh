#!/bin/sh
# fuzz.sh BUILD_DIR [SECONDS] [JOBS]: runs every libFuzzer target of
# tests/fuzz for SECONDS (default 60) each, JOBS (default 2) at a time.
#
# BUILD_DIR must be configured with clang and -Dfuzz=true, e.g.
#   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
# Each target starts from its corpus, tests/fuzz/<name>/ (read only here);
# what it learns goes to BUILD_DIR/fuzz-corpus/<name>/, a crash to
# BUILD_DIR/fuzz-crash-<name>-*.  On a crash the script prints the
# target's log and exits 1: copy the crash file into tests/fuzz/<name>/,
# fix the bug, and `meson test` replays it from then on.
set -eu

usage="usage: tools/fuzz.sh BUILD_DIR [SECONDS] [JOBS]"
build=${1:?$usage}
seconds=${2:-60}
jobs=${3:-2}
src=$(cd "$(dirname "$0")/.." && pwd)
targets="segment event projection schema batch"

for t in $targets; do
	if [ ! -x "$build/tests/fuzz/fuzz_$t" ]; then
		echo "fuzz.sh: no $build/tests/fuzz/fuzz_$t; configure with -Dfuzz=true and build" >&2
		exit 1
	fi
done

run_one() {
	t=$1
	mkdir -p "$build/fuzz-corpus/$t"
	if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
		"$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=20 \
		-rss_limit_mb=4096 -print_final_stats=1 \
		-artifact_prefix="$build/fuzz-crash-$t-" \
		"$build/fuzz-corpus/$t" "$src/tests/fuzz/$t" >"$build/fuzz-$t.log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/fuzz-$t.log")
		corpus=$(ls "$build/fuzz-corpus/$t" | wc -l)
		echo "fuzz $t: ${runs:-?} runs in ${seconds} s, no crash ($corpus new inputs)"
	else
		echo "fuzz $t: FAILED, log follows" >&2
		cat "$build/fuzz-$t.log" >&2
		return 1
	fi
}

status=0
set -- $targets
while [ $# -gt 0 ]; do
	pids=""
	n=0
	while [ $# -gt 0 ] && [ $n -lt "$jobs" ]; do
		run_one "$1" &
		pids="$pids $!"
		n=$((n + 1))
		shift
	done
	for p in $pids; do
		wait "$p" || status=1
	done
done
exit $status
