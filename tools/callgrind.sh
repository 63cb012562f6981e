#!/bin/sh
# callgrind.sh BUILD_DIR [EVENTS]: instructions per appended and per replayed
# event, and per event of the orders projection's rebuild, counted by
# valgrind's callgrind: a figure that, unlike a time, does not move with the
# machine's noise.
#
# `evstore bench --child-instr append` appends EVENTS (default 20000)
# generated events in 100-event batches with durability none into a new
# store; `--child-instr replay` reads them all back; `--child-instr rebuild`
# loads EVENTS events of the benchmark's orders log (scenario 7) into
# another new store and rebuilds projections/orders.sql from it.  Only the loop is
# counted: --toggle-collect switches counting on inside the function that
# holds it (bench_instr_<mode>_region; the pattern also takes a compiler
# clone's suffix), so generating the events and opening the store are left
# out.  Counting is per thread, so start_thread is toggled too: the other
# threads of these runs are the library's own (an indexer works only for
# the appends it is handed), and their instructions belong to the appends.
set -eu

usage="usage: tools/callgrind.sh BUILD_DIR [EVENTS]"
build=${1:?$usage}
events=${2:-20000}
exe=$build/tools/evstore

if [ ! -x "$exe" ]; then
	echo "callgrind.sh: no $exe; build first (ninja -C $build)" >&2
	exit 1
fi
if ! command -v valgrind >/dev/null 2>&1; then
	echo "callgrind.sh: valgrind not found" >&2
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evstore-callgrind.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# count MODE [STORE]: prints the instructions per event of one mode, run on
# the store directory STORE (default: store) under the scratch directory.
count() {
	if ! valgrind --tool=callgrind --callgrind-out-file="$tmp/$1.out" \
		"--toggle-collect=bench_instr_$1_region*" \
		--toggle-collect=start_thread \
		"$exe" bench --child-instr "$1" --events "$events" \
		--dir "$tmp/${2:-store}" >"$tmp/$1.log" 2>&1; then
		cat "$tmp/$1.log" >&2
		echo "callgrind.sh: the $1 run failed" >&2
		exit 1
	fi
	ir=$(sed -n 's/^totals: *\([0-9][0-9]*\).*/\1/p' "$tmp/$1.out" | tail -n 1)
	if [ -z "$ir" ]; then
		echo "callgrind.sh: no totals in $1's callgrind output" >&2
		exit 1
	fi
	awk -v ir="$ir" -v n="$events" 'BEGIN { printf "%.0f\n", ir / n }'
}

append=$(count append)
replay=$(count replay)
rebuild=$(count rebuild orders-store)
echo "events: $events"
echo "instructions per appended event: $append"
echo "instructions per replayed event: $replay"
echo "instructions per event of the orders rebuild: $rebuild"
