#!/bin/sh
# bench-http.sh: `evstore serve` under wrk on loopback, beside the same work
# in process (issue #7).
#
#   tools/bench-http.sh BUILD [REPS] [SECONDS]
#
# 1. In process: `evstore bench --only 2,7`: durable single-event appends
#    from 16 threads, and by_id point queries on the orders read model.
# 2. Over HTTP: a store with EVENTS generated orders and the orders
#    projection caught up, served by `evstore serve` (durability sync);
#    wrk appends one ~330-byte event a request to random streams over 32
#    keep-alive connections, then asks by_id for random orders over one
#    connection (latency) and over 8 (throughput).
# Each wrk run lasts SECONDS (default 10), REPS times (default 3); the
# rows give the median, min and max.  wrk and the server share the
# machine's cores.
set -eu

BUILD=${1:?usage: tools/bench-http.sh BUILD [REPS] [SECONDS]}
REPS=${2:-3}
SECS=${3:-10}
EVENTS=${EVENTS:-100000}
EVSTORE=$BUILD/tools/evstore
SRC=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk >/dev/null || { echo "bench-http: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/evs-bench-http.XXXXXX")
SERVER=
cleanup() {
	[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "bench-http: in process (evstore bench --only 2,7 --events $EVENTS --reps $REPS)" >&2
"$EVSTORE" bench --only 2,7 --events "$EVENTS" --reps "$REPS" --dir "$WORK" \
	>"$WORK/inproc.md" 2>/dev/null
INPROC_APPEND=$(grep -m1 '^| 2\. ' "$WORK/inproc.md" | cut -d'|' -f3 | sed 's/^ *//; s/ .*//')
INPROC_P50=$(grep -m1 'by_id, p50' "$WORK/inproc.md" | cut -d'|' -f3 | sed 's/^ *//; s/ .*//')
INPROC_P99=$(grep -m1 'by_id, p99' "$WORK/inproc.md" | cut -d'|' -f3 | sed 's/^ *//; s/ .*//')

echo "bench-http: generating $EVENTS order events" >&2
mkdir -p "$WORK/proj"
cp "$SRC/projections/orders.sql" "$WORK/proj/"
"$EVSTORE" generate "$WORK/store" --events "$EVENTS" --durability none >/dev/null 2>&1
"$EVSTORE" serve "$WORK/store" --port 0 --no-schemas --projections "$WORK/proj" \
	>"$WORK/hello" 2>"$WORK/server.err" &
SERVER=$!
for _ in $(seq 100); do [ -s "$WORK/hello" ] && break; sleep 0.1; done
URL=$(sed 's/.*"listening":"\([^"]*\)".*/\1/' "$WORK/hello")
# wait for the orders read model to reach the head
for _ in $(seq 600); do
	curl -sf "$URL/projections" | grep -q '"lag":0,' && break
	sleep 0.1
done

cat >"$WORK/append.lua" <<'EOF'
-- one ~330-byte order event a request, to a random stream
local pad = string.rep("x", 120)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
	local n = math.random(1, 1000000)
	local body = '{"type":"ItemAdded","data":{"order_id":"' .. n ..
		'","sku":"TEA-101","qty":2,"price":1500,"note":"' .. pad ..
		'"},"metadata":{"correlation_id":"0193a000-0000-7000-8000-000000000001"}}'
	return wrk.format(nil, "/streams/http-" .. n, nil, body)
end
EOF
cat >"$WORK/query.lua" <<EOF
-- by_id on a random one of the generated orders
request = function()
	return wrk.format("GET", "/projections/orders/queries/by_id?id=order-" ..
		math.random(1, 10000))
end
EOF

# run_wrk NAME CONNECTIONS SCRIPT: appends "rps p50_us p99_us non2xx" to WORK/NAME
run_wrk() {
	threads=2
	[ "$2" -lt 2 ] && threads=1
	wrk -t"$threads" -c"$2" -d"${SECS}s" --latency -s "$3" "$URL" >"$WORK/wrk.out" 2>&1
	awk '
	function us(v) {
		if (v ~ /us$/) { sub(/us$/, "", v); return v + 0 }
		if (v ~ /ms$/) { sub(/ms$/, "", v); return v * 1000 }
		if (v ~ /s$/)  { sub(/s$/, "", v); return v * 1000000 }
		return v
	}
	$1 == "50%" { p50 = us($2) }
	$1 == "99%" { p99 = us($2) }
	$1 == "Requests/sec:" { rps = $2 }
	/Non-2xx/ { bad = $NF }
	END { printf "%s %s %s %s\n", rps, p50, p99, bad + 0 }' "$WORK/wrk.out" >>"$WORK/$1"
}

for r in $(seq "$REPS"); do
	echo "bench-http: rep $r of $REPS" >&2
	run_wrk append 32 "$WORK/append.lua"
	run_wrk query 1 "$WORK/query.lua"
	run_wrk queries 8 "$WORK/query.lua"
done

# median (min-max) of column COL of file F
stat() {
	sort -n -k"$2" "$WORK/$1" | awk -v c="$2" '
	{ v[NR] = $c }
	END { printf "%.1f (%.1f–%.1f)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
median() {
	sort -n -k"$2" "$WORK/$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}
BAD=$(awk '{ s += $4 } END { print s + 0 }' "$WORK/append" "$WORK/query" "$WORK/queries")

echo "| scenario | over HTTP | in process | HTTP / in process |"
echo "| --- | --- | --- | --- |"
A=$(median append 1)
printf '| durable 1-event appends (events/s): wrk, 32 connections / bench 2, 16 threads | %s | %s | %s |\n' \
	"$(stat append 1)" "$INPROC_APPEND" \
	"$(awk -v a="$A" -v b="$INPROC_APPEND" 'BEGIN { sub(/k$/, "", b); printf "%.2fx", a / (b * 1000) }')"
Q50=$(median query 2)
Q99=$(median query 3)
printf '| orders by_id p50 (µs): wrk, 1 connection / bench 7 | %s | %s | %s |\n' \
	"$(stat query 2)" "$INPROC_P50" "$(awk -v a="$Q50" -v b="$INPROC_P50" 'BEGIN { printf "%.2fx", b / a }')"
printf '| orders by_id p99 (µs): wrk, 1 connection / bench 7 | %s | %s | %s |\n' \
	"$(stat query 3)" "$INPROC_P99" "$(awk -v a="$Q99" -v b="$INPROC_P99" 'BEGIN { printf "%.2fx", b / a }')"
printf '| orders by_id queries/s over HTTP, 8 connections | %s | — | — |\n' "$(stat queries 1)"
echo
echo "($EVENTS generated events, $REPS runs of ${SECS} s each; non-2xx answers: $BAD; ratios under 1 mean HTTP is slower)"
