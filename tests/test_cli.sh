#!/usr/bin/env bash
#
# test_cli.sh: end-to-end tests of the evstore command-line tool.
#
#   tests/test_cli.sh path/to/evstore
#
# Every assertion compares a command's exit status and its whole output (or,
# for error messages, the part the tool itself writes) with the exact
# expected text.  Events are appended with fixed ids so that lines can be
# compared whole; only what varies from run to run is cut out first: the
# "timestamp" of events, the "created" time of a stream, the log's size in
# bytes and the generator's timing.  The store lives in a fresh temporary
# directory, removed at exit.  Prints "N passed, M failed" at the end and
# exits non-zero when anything failed.

set -u

EVSTORE=${1:?usage: test_cli.sh path/to/evstore}
if [ ! -x "$EVSTORE" ]; then
	echo "test_cli.sh: '$EVSTORE' is not an executable" >&2
	exit 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/evstore-cli.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT

S=$TMP/store
passed=0
failed=0
failures=()

# ---------------------------------------------------------------------
# Helpers

# Every file under $TMP but the runs' own output (and SQLite's -shm files,
# which readers write, and empty -wal files, which a last close removes),
# taken before each run so that `err` can
# check that a failed command changed nothing: the content's hash, or for
# files over 1 MiB (preallocated segments) the size and modification time.
tmp_files() {
	(cd "$TMP" && {
		find . -type f ! -name out ! -name err ! -name '*-shm' \
			! \( -name '*-wal' -empty \) -size -1025k -print0 |
			xargs -0 -r sha256sum
		find . -type f -size +1024k -printf '%s %T@  %p\n'
	} | LC_ALL=C sort -k2)
}

# run ARGS...: runs evstore with an empty stdin; sets OUT, ERR and RC.
run() {
	PRE=$(tmp_files)
	"$EVSTORE" "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
	RC=$?
	OUT=$(<"$TMP/out")
	ERR=$(<"$TMP/err")
}

# run_in INPUT ARGS...: the same with INPUT on stdin.
run_in() {
	local input=$1
	shift
	PRE=$(tmp_files)
	printf '%s' "$input" | "$EVSTORE" "$@" >"$TMP/out" 2>"$TMP/err"
	RC=$?
	OUT=$(<"$TMP/out")
	ERR=$(<"$TMP/err")
}

# The output with what varies between runs cut out.
stable() {
	printf '%s\n' "$1" | sed -e 's/"timestamp":"[^"]*",//g' \
		-e 's/,"created":"[^"]*"//' \
		-e 's/"log_bytes":[0-9]*/"log_bytes":N/' \
		-e 's/"seconds":[^,]*,"events_per_second":[0-9]*,//'
}

pass() {
	passed=$((passed + 1))
}

fail() {
	failed=$((failed + 1))
	failures+=("$1")
	printf 'FAIL: %s\n' "$1"
	shift
	[ $# -gt 0 ] && printf '    %s\n' "$@"
}

# eq NAME EXPECTED ACTUAL
eq() {
	if [ "$2" == "$3" ]; then
		pass
	else
		fail "$1" "expected: ${2//$'\n'/$'\n'              }" \
			"actual:   ${3//$'\n'/$'\n'              }"
	fi
}

# has NAME NEEDLE TEXT: TEXT contains NEEDLE.
has() {
	case "$3" in
	*"$2"*) pass ;;
	*) fail "$1" "wanted: $2" "in:     $3" ;;
	esac
}

# matches NAME REGEX TEXT (extended regex, whole text).
matches() {
	if [[ $3 =~ $2 ]]; then
		pass
	else
		fail "$1" "wanted: /$2/" "got:    $3"
	fi
}

# ok NAME EXPECTED_OUTPUT: the last run exited 0 and printed exactly that
# (after `stable`), with nothing on stderr.
ok() {
	eq "$1: exit status" 0 "$RC"
	eq "$1: output" "$2" "$(stable "$OUT")"
	eq "$1: stderr" "" "$ERR"
}

# err NAME STATUS NEEDLE: the last run exited STATUS, printed nothing on
# stdout, and its stderr holds NEEDLE.
err() {
	eq "$1: exit status" "$2" "$RC"
	eq "$1: no output" "" "$OUT"
	has "$1: message" "$3" "$ERR"
	eq "$1: no file written" "$PRE" "$(tmp_files)"
}

# The store's whole content, for "nothing changed" checks.
snapshot() {
	"$EVSTORE" read-all "$1" </dev/null 2>&1
	echo "exit $?"
}

# The bytes of every file under a store: bad input must not change one.
files_of() {
	(cd "$1" 2>/dev/null && find . -type f | LC_ALL=C sort | xargs -r sha256sum)
}

ID1=00000000-0000-4000-8000-000000000001
ID2=00000000-0000-4000-8000-000000000002
ID3=00000000-0000-4000-8000-000000000003
ID4=00000000-0000-4000-8000-000000000004
ID5=00000000-0000-4000-8000-000000000005
ID6=00000000-0000-4000-8000-000000000006
ID7=00000000-0000-4000-8000-000000000007
ID8=00000000-0000-4000-8000-000000000008

# The events the main store will hold, as read prints them (sans timestamp).
E1='{"position":1,"stream":"order-1","version":1,"id":"'$ID1'","type":"OrderPlaced","schema_version":1,"metadata":{"user":"u1"},"data":{"total":100}}'
E2='{"position":2,"stream":"order-1","version":2,"id":"'$ID2'","type":"ItemAdded","schema_version":1,"data":{"sku":"A","qty":2}}'
E3='{"position":3,"stream":"order-1","version":3,"id":"'$ID3'","type":"ItemAdded","schema_version":2,"data":{"sku":"B","qty":1}}'
E4='{"position":4,"stream":"order-2","version":1,"id":"'$ID4'","type":"OrderPlaced","schema_version":1,"data":{"total":5}}'
E5='{"position":5,"stream":"order-2","version":2,"id":"'$ID5'","type":"OrderPaid","schema_version":1,"data":{"amount":5}}'
E6='{"position":6,"stream":"order-1","version":4,"id":"'$ID6'","type":"OrderPaid","schema_version":1,"data":{"amount":100}}'
E7='{"position":7,"stream":"invoice-1","version":1,"id":"'$ID7'","type":"InvoiceIssued","schema_version":1,"metadata":{},"data":{"number":"2026-001","lines":[1,2],"paid":false,"note":null}}'

lines() {
	printf '%s\n' "$@"
}

# ---------------------------------------------------------------------
# init

run init "$S"
ok "init creates" '{"store":"'$S'","created":true}'
run init "$S"
ok "init again" '{"store":"'$S'","created":false}'
mkdir "$TMP/empty"
run init "$TMP/empty"
ok "init in an empty directory" '{"store":"'$TMP/empty'","created":true}'
run init
err "init without DIR" 2 "evstore: init: missing DIR"

# ---------------------------------------------------------------------
# append: inline, stdin, every expected-version spelling

run append "$S" order-1 '{"type":"OrderPlaced","id":"'$ID1'","data":{"total":100},"metadata":{"user":"u1"}}'
ok "append inline" '{"stream":"order-1","first_version":1,"last_version":1,"first_position":1,"last_position":1,"idempotent":false}'

run_in '{"type":"ItemAdded","id":"'$ID2'","data":{"sku":"A","qty":2}}

{"type":"ItemAdded","id":"'$ID3'","data":{"sku" : "B", "qty" : 1},"schema_version":2}
' append "$S" order-1 --expected-version 1
ok "append stdin, expected version 1" '{"stream":"order-1","first_version":2,"last_version":3,"first_position":2,"last_position":3,"idempotent":false}'

run append "$S" order-2 --expected-version no_stream '{"type":"OrderPlaced","id":"'$ID4'","data":{"total":5}}'
ok "append no_stream" '{"stream":"order-2","first_version":1,"last_version":1,"first_position":4,"last_position":4,"idempotent":false}'

run append "$S" order-2 --expected-version=exists '{"type":"OrderPaid","id":"'$ID5'","data":{"amount":5}}'
ok "append exists" '{"stream":"order-2","first_version":2,"last_version":2,"first_position":5,"last_position":5,"idempotent":false}'

run append "$S" order-1 '{"type":"OrderPaid","id":"'$ID6'","data":{"amount":100}}' --expected-version 3 --durability none
ok "append exact version" '{"stream":"order-1","first_version":4,"last_version":4,"first_position":6,"last_position":6,"idempotent":false}'

run append "$S" --expected-version any -- invoice-1 '{"type":"InvoiceIssued","id":"'$ID7'","metadata":{},"data":{"number":"2026-001","lines":[1,2],"paid":false,"note":null}}'
ok "append any" '{"stream":"invoice-1","first_version":1,"last_version":1,"first_position":7,"last_position":7,"idempotent":false}'

ALL=$(lines "$E1" "$E2" "$E3" "$E4" "$E5" "$E6" "$E7")
BEFORE=$(snapshot "$S")
eq "store holds 7 events" "$ALL
exit 0" "$(stable "$BEFORE")"

# Conflicts: exit 1, the current version named, nothing written.
NEW='{"type":"X","id":"'$ID8'","data":{}}'
run append "$S" order-1 --expected-version no_stream "$NEW"
err "conflict no_stream" 1 "evstore: append: stream 'order-1': wrong expected version: expected no_stream, current version is 4"
run append "$S" invoice-9 --expected-version exists "$NEW"
err "conflict exists" 1 "evstore: append: stream 'invoice-9': wrong expected version: expected exists, current version is 0 (no stream)"
run append "$S" order-2 --expected-version 1 "$NEW"
err "conflict exact" 1 "evstore: append: stream 'order-2': wrong expected version: expected 1, current version is 2"
run append "$S" order-1 --expected-version 0 "$NEW"
err "conflict version 0" 1 "current version is 4"
eq "conflicts wrote nothing" "$BEFORE" "$(snapshot "$S")"

# ---------------------------------------------------------------------
# append: bad input is refused whole, with the line number

GOOD='{"type":"X","data":{}}'
bad_input() {
	# bad_input NAME STATUS NEEDLE INPUT [ARGS...]
	local name=$1 status=$2 needle=$3 input=$4 bytes
	shift 4
	bytes=$(files_of "$S")
	run_in "$input" append "$S" order-1 "$@"
	err "$name" "$status" "$needle"
	eq "$name: nothing appended" "$BEFORE" "$(snapshot "$S")"
	eq "$name: no byte changed" "$bytes" "$(files_of "$S")"
}

bad_input "bad JSON" 1 "evstore: append: line 2: invalid JSON: " \
	"$GOOD"$'\n''{"type":"X","data":{'$'\n'
has "bad JSON: column" "(column " "$ERR"
has "bad JSON: summary" "evstore: append: 1 bad line; nothing was appended" "$ERR"
bad_input "data not an object" 1 'evstore: append: line 3: "data" is not a JSON object' \
	"$GOOD"$'\n'"$GOOD"$'\n''{"type":"X","data":[1]}'$'\n'
bad_input "data missing" 1 'line 1: missing "data"' '{"type":"X"}'
bad_input "type missing" 1 'evstore: append: line 1: missing "type"' \
	'{"data":{}}'$'\n'"$GOOD"$'\n'
bad_input "type not a string" 1 'line 1: "type" is not a string' '{"type":1,"data":{}}'
bad_input "bad type name" 1 'line 2: bad "type" "Bad Type"' \
	"$GOOD"$'\n''{"type":"Bad Type","data":{}}'
bad_input "bad uuid" 1 'evstore: append: line 2: bad "id" "not-a-uuid": not a UUID' \
	"$GOOD"$'\n''{"type":"X","id":"not-a-uuid","data":{}}'
bad_input "id not a string" 1 'line 1: "id" is not a string' '{"type":"X","id":7,"data":{}}'
bad_input "unknown key" 1 'evstore: append: line 1: unknown key "extra"' \
	'{"type":"X","data":{},"extra":1}'
bad_input "metadata not an object" 1 'line 1: "metadata" is not a JSON object' \
	'{"type":"X","data":{},"metadata":"m"}'
bad_input "schema_version 0" 1 'line 1: "schema_version" is not an integer' \
	'{"type":"X","data":{},"schema_version":0}'
bad_input "event not an object" 1 'line 1: the event is not a JSON object' '[1,2]'
bad_input "duplicate key" 1 'line 1: invalid JSON: ' '{"type":"X","type":"Y","data":{}}'
bad_input "blank lines still counted" 1 'evstore: append: line 4: invalid JSON' \
	$'\n'"$GOOD"$'\n\n''nope'$'\n'
bad_input "two bad lines" 1 "evstore: append: 2 bad lines; nothing was appended" \
	'{"type":"X"}'$'\n'"$GOOD"$'\n''{"data":{}}'$'\n'
has "two bad lines: first" "line 1: missing" "$ERR"
has "two bad lines: second" "line 3: missing" "$ERR"
bad_input "empty stdin" 1 "evstore: append: no events on stdin" ''
bad_input "only blank lines" 1 "no events on stdin" $'\n  \n\t\n'
bad_input "--type: data not an object" 1 'line 1: the data is not a JSON object' \
	'[1]' --type Note
bad_input "bad expected version" 2 "evstore: append: bad expected version 'soon'" \
	"$GOOD" --expected-version soon
bad_input "negative expected version" 2 "bad expected version '-1'" \
	"$GOOD" --expected-version -1
bad_input "bad --type" 2 "evstore: append: bad type 'a b'" "$GOOD" --type 'a b'
bad_input "bad --durability" 2 "option '--durability': 'maybe' is not 'sync' or 'none'" \
	"$GOOD" --durability maybe

run append "$S" order-1 '{"type":"X","data":'
err "inline bad JSON" 1 "evstore: append: EVENT_JSON argument: invalid JSON: "
run append "$S" order-1 '{"type":"X"}'
err "inline missing data" 1 'EVENT_JSON argument: missing "data"'
run append "$S" $'bad\tstream' "$GOOD"
err "invalid stream name" 1 "evstore: append: cannot append to stream"
has "invalid stream name: code" ": invalid input" "$ERR"
run append "$TMP/nostore" order-1 "$GOOD"
err "append to a missing store" 1 "evstore: append: cannot open store '$TMP/nostore'"
run append "$S" order-1 '{"type":"X","id":"'$ID1'","data":{"total":999}}'
err "reused id, other content" 1 "evstore: append: cannot append to stream 'order-1': invalid input"
eq "bad appends wrote nothing" "$BEFORE" "$(snapshot "$S")"

# ---------------------------------------------------------------------
# idempotency: the same ids and content again

run append "$S" order-1 '{"type":"OrderPlaced","id":"'$ID1'","data":{"total":100},"metadata":{"user":"u1"}}'
ok "idempotent inline" '{"stream":"order-1","first_version":1,"last_version":1,"first_position":1,"last_position":1,"idempotent":true}'
run append "$S" order-1 --expected-version no_stream '{"type":"OrderPlaced","id":"'$ID1'","data":{"total":100},"metadata":{"user":"u1"}}'
ok "idempotent whatever the expected version" '{"stream":"order-1","first_version":1,"last_version":1,"first_position":1,"last_position":1,"idempotent":true}'
run_in '{"type":"ItemAdded","id":"'$ID2'","data":{"sku":"A","qty":2}}
{"type":"ItemAdded","id":"'$ID3'","data":{"sku":"B","qty":1},"schema_version":2}
' append "$S" order-1 --expected-version 1
ok "idempotent batch" '{"stream":"order-1","first_version":2,"last_version":3,"first_position":2,"last_position":3,"idempotent":true}'
eq "idempotent appends wrote nothing" "$BEFORE" "$(snapshot "$S")"

# ---------------------------------------------------------------------
# read

run read "$S" order-1
ok "read" "$(lines "$E1" "$E2" "$E3" "$E6")"
matches "read: timestamp format" '"timestamp":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"' "$(head -n 1 <<<"$OUT")"
run read "$S" order-1 --backward
ok "read backward" "$(lines "$E6" "$E3" "$E2" "$E1")"
run read "$S" order-1 --from 2
ok "read from" "$(lines "$E2" "$E3" "$E6")"
run read "$S" order-1 --from=2 --limit 2
ok "read from, limit" "$(lines "$E2" "$E3")"
run read "$S" order-1 --from 3 --backward
ok "read from, backward" "$(lines "$E3" "$E2" "$E1")"
run read "$S" order-1 --backward --limit 1
ok "read backward, limit" "$E6"
run read "$S" order-1 --limit 0
ok "read limit 0" "$(lines "$E1" "$E2" "$E3" "$E6")"
run read "$S" order-1 --from 5
ok "read past the end" ""
run read "$S" invoice-1
ok "read JSON types round-trip" "$E7"
run read "$S" order-9
err "read a missing stream" 1 "evstore: read: cannot read stream 'order-9': not found"
run read "$TMP/nostore" order-1
err "read a missing store" 1 "evstore: read: cannot open store '$TMP/nostore'"

# ---------------------------------------------------------------------
# read-all

run read-all "$S"
ok "read-all" "$ALL"
run read-all "$S" --from 5
ok "read-all from" "$(lines "$E5" "$E6" "$E7")"
run read-all "$S" --limit 2
ok "read-all limit" "$(lines "$E1" "$E2")"
run read-all "$S" --category order
ok "read-all category" "$(lines "$E1" "$E2" "$E3" "$E4" "$E5" "$E6")"
run read-all "$S" --category invoice
ok "read-all other category" "$E7"
run read-all "$S" --category nope
ok "read-all unknown category" ""
run read-all "$S" --type OrderPaid
ok "read-all type" "$(lines "$E5" "$E6")"
run read-all "$S" --type OrderPaid --type InvoiceIssued
ok "read-all types" "$(lines "$E5" "$E6" "$E7")"
run read-all "$S" --category order --type OrderPlaced
ok "read-all category and type" "$(lines "$E1" "$E4")"
run read-all "$S" --category order --type OrderPlaced --from 2 --limit 1
ok "read-all every filter" "$E4"

# ---------------------------------------------------------------------
# streams, categories, info, stats, verify

run streams "$S"
ok "streams" "$(lines '{"stream":"invoice-1","last_version":1}' \
	'{"stream":"order-1","last_version":4}' \
	'{"stream":"order-2","last_version":2}')"
run streams "$S" --category order
ok "streams of a category" "$(lines '{"stream":"order-1","last_version":4}' \
	'{"stream":"order-2","last_version":2}')"
run streams "$S" --category invoice --category order
ok "streams of two categories" "$(lines '{"stream":"invoice-1","last_version":1}' \
	'{"stream":"order-1","last_version":4}' \
	'{"stream":"order-2","last_version":2}')"
run streams "$S" --category nope
ok "streams of no category" ""
run categories "$S"
ok "categories" "$(lines '{"category":"invoice","streams":1}' \
	'{"category":"order","streams":2}')"

run info "$S" order-1
ok "info" '{"stream":"order-1","exists":true,"last_version":4,"event_count":4,"first_position":1,"last_position":6}'
matches "info: created" ',"created":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z"}$' "$OUT"
run info "$S" order-9
ok "info of a missing stream" '{"stream":"order-9","exists":false,"last_version":0,"event_count":0,"first_position":0,"last_position":0}'

run stats "$S"
ok "stats" '{"store":"'$S'","head_position":7,"streams":3,"batches":6,"segments":1,"log_bytes":N,"recovered_batches":0,"recovery_bytes":0,"truncated_bytes":0}'
matches "stats: log_bytes" '"log_bytes":[1-9][0-9]*,' "$OUT"

run verify "$S"
ok "verify" '{"ok":true,"problems":0,"store":"'$S'"}'
run verify "$S" --quiet
ok "verify quiet" '{"ok":true,"problems":0,"store":"'$S'"}'

# ---------------------------------------------------------------------
# append --type: each line (or the argument) is the data

S2=$TMP/notes
run init "$S2"
run_in '{"n":1}
{"n":2,"type":"not a key here"}
' append "$S2" note-1 --type NoteAdded
ok "append --type" '{"stream":"note-1","first_version":1,"last_version":2,"first_position":1,"last_position":2,"idempotent":false}'
run append "$S2" note-1 --type NoteAdded --expected-version 2 '{"n":3}'
ok "append --type inline" '{"stream":"note-1","first_version":3,"last_version":3,"first_position":3,"last_position":3,"idempotent":false}'
run read "$S2" note-1
eq "read --type events" "$(lines \
	'{"position":1,"stream":"note-1","version":1,"type":"NoteAdded","schema_version":1,"data":{"n":1}}' \
	'{"position":2,"stream":"note-1","version":2,"type":"NoteAdded","schema_version":1,"data":{"n":2,"type":"not a key here"}}' \
	'{"position":3,"stream":"note-1","version":3,"type":"NoteAdded","schema_version":1,"data":{"n":3}}')" \
	"$(stable "$OUT" | sed 's/"id":"[^"]*",//')"
matches "generated ids are UUIDs" '^\{"position":1,"stream":"note-1","version":1,"id":"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",' "$OUT"

# ---------------------------------------------------------------------
# generate: a deterministic workload

G1=$TMP/gen1
G2=$TMP/gen2
run generate "$G1" --events 50 --streams 5 --batch 4 --seed 7 --durability none
eq "generate: exit status" 0 "$RC"
eq "generate: output" "$(lines '{"events":50,"streams":5,"appends":13,"head_position":50}' \
	'{"store":"'$G1'","head_position":50,"streams":5,"batches":13,"segments":1,"log_bytes":N,"recovered_batches":0,"recovery_bytes":0,"truncated_bytes":0}')" \
	"$(stable "$(head -n 2 <<<"$OUT")")"
matches "generate: timing" '"seconds":[0-9.e+-]+,"events_per_second":[0-9]+,' "$OUT"
has "generate: progress" "generate: 100% (50/50 events)" "$ERR"
GEN_OUT=$OUT
run read "$G1" order-1
eq "generate: prints order-1 as stored" "$OUT" "$(tail -n +3 <<<"$GEN_OUT")"
eq "generate: order-1 has 12 events" 12 "$(wc -l <<<"$OUT" | tr -d ' ')"
run streams "$G1"
ok "generate: streams" "$(lines '{"stream":"order-1","last_version":12}' \
	'{"stream":"order-2","last_version":12}' \
	'{"stream":"order-3","last_version":10}' \
	'{"stream":"order-4","last_version":8}' \
	'{"stream":"order-5","last_version":8}')"
run read "$G1" order-3
TYPES=$(grep -o '"type":"[^"]*"' <<<"$OUT" | sed 's/"type":"\(.*\)"/\1/')
eq "generate: an order's life begins" "OrderPlaced" "$(head -n 1 <<<"$TYPES")"
eq "generate: an order's life ends" "$(lines OrderPaid OrderShipped OrderDelivered)" \
	"$(tail -n 3 <<<"$TYPES")"
has "generate: metadata" '"metadata":{"correlation_id":"' "$OUT"
SIZES=$(sed 's/.*"data"://' <<<"$OUT" | awk '{ n = length($0) - 1; if (n < 200 || n > 400) print "event " NR ": " n " bytes" }')
eq "generate: data sizes" "" "$SIZES"
run generate "$G2" --events 50 --streams 5 --batch 4 --seed 7 --durability none
eq "generate again: exit status" 0 "$RC"
eq "generate: same seed, same events" "$(stable "$(snapshot "$G1")")" \
	"$(stable "$(snapshot "$G2")")"
run generate "$TMP/gen3" --events 50 --streams 5 --batch 4 --seed 8 --durability none
if [ "$(stable "$(snapshot "$G1")")" != "$(stable "$(snapshot "$TMP/gen3")")" ]; then
	pass
else
	fail "generate: another seed, other events"
fi
run verify "$G1"
ok "generate: verify" '{"ok":true,"problems":0,"store":"'$G1'"}'
run generate "$G1" --events 10 --streams 5 --batch 4 --durability none
eq "generate into a store: exit status" 0 "$RC"
eq "generate into a store: output" '{"events":10,"streams":3,"appends":3,"head_position":60}' \
	"$(stable "$(head -n 1 <<<"$OUT")")"
run info "$G1" order-1
ok "generate into a store: continued" '{"stream":"order-1","exists":true,"last_version":16,"event_count":16,"first_position":1,"last_position":54}'
run verify "$G1" --quiet
ok "generate into a store: verify" '{"ok":true,"problems":0,"store":"'$G1'"}'

# ---------------------------------------------------------------------
# verify of a store whose first writer died setting the index up: the
# log is checked alone, with a note, and nothing is written

H=$TMP/half
mkdir -p "$H/log"
: >"$H/LOCK"
run verify "$H"
eq "verify without an index: exit status" 0 "$RC"
eq "verify without an index: output" '{"ok":true,"problems":0,"store":"'$H'"}' "$OUT"
eq "verify without an index: note" "evstore: verify: note: $H/index.db is not set up yet (the store's first writer did not finish opening it): the log was checked alone, and the next writable open indexes it" "$ERR"
eq "verify without an index: no file written" "$PRE" "$(tmp_files)"
run verify "$H" --quiet
ok "verify without an index, quiet" '{"ok":true,"problems":0,"store":"'$H'"}'
run stats "$H"
ok "stats without an index" '{"store":"'$H'","head_position":0,"streams":0,"batches":0,"segments":0,"log_bytes":N,"recovered_batches":0,"recovery_bytes":0,"truncated_bytes":0}'
rm -r "$H"

# ---------------------------------------------------------------------
# verify finds a flipped byte

C=$TMP/corrupt
cp -r "$G2" "$C"
SEG=$(ls "$C"/log/*.seg | head -n 1)
OFF=1000
BYTE=$(od -An -tu1 -j$OFF -N1 "$SEG" | tr -d ' ')
printf "\\$(printf '%03o' $((BYTE ^ 1)))" |
	dd of="$SEG" bs=1 seek=$OFF conv=notrunc status=none
run verify "$C"
eq "verify corrupt: exit status" 1 "$RC"
has "verify corrupt: problem line" '{"problem":"' "$(head -n 1 <<<"$OUT")"
matches "verify corrupt: summary" '^\{"ok":false,"problems":[1-9][0-9]*,"store":"'"$C"'"\}$' "$(tail -n 1 <<<"$OUT")"
run verify "$C" --quiet
eq "verify corrupt quiet: exit status" 1 "$RC"
matches "verify corrupt quiet: only the summary" '^\{"ok":false,"problems":[1-9][0-9]*,"store":"'"$C"'"\}$' "$OUT"
run read-all "$C"
eq "read-all corrupt: exit status" 1 "$RC"
has "read-all corrupt: message" "evstore: read-all: cannot read the store: corrupt data: " "$ERR"

# ---------------------------------------------------------------------
# help, version, usage errors

for cmd in init append read read-all streams categories info stats verify generate; do
	run "$cmd" --help
	eq "$cmd --help: exit status" 0 "$RC"
	has "$cmd --help: usage" "usage: evstore $cmd" "$(head -n 1 <<<"$OUT")"
	eq "$cmd --help: stderr" "" "$ERR"
	run help "$cmd"
	eq "help $cmd: exit status" 0 "$RC"
	has "help $cmd: usage" "usage: evstore $cmd" "$(head -n 1 <<<"$OUT")"
done
for args in --help -h help; do
	run $args
	eq "evstore $args: exit status" 0 "$RC"
	eq "evstore $args: usage" "usage: evstore COMMAND [ARGS]" "$(head -n 1 <<<"$OUT")"
done
run read "$S" order-1 -h
eq "-h after arguments: exit status" 0 "$RC"
has "-h after arguments: usage" "usage: evstore read" "$OUT"
run --version
eq "--version: exit status" 0 "$RC"
matches "--version: output" '^evstore [0-9]+\.[0-9]+\.[0-9]+$' "$OUT"

run
eq "no command: exit status" 2 "$RC"
has "no command: usage" "usage: evstore COMMAND" "$ERR"
run frobnicate "$S"
err "unknown command" 2 "evstore: unknown command 'frobnicate'"
run --frobnicate
err "unknown option as command" 2 "evstore: unknown option '--frobnicate'"
run help frobnicate
err "help for an unknown command" 2 "evstore: help: unknown command 'frobnicate'"
run read "$S" order-1 --bogus
err "unknown option" 2 "evstore: read: unknown option '--bogus'"
has "unknown option: hint" "Try 'evstore read --help'." "$ERR"
run read "$S" order-1 --limit abc
err "bad number" 2 "evstore: read: option '--limit': 'abc' is not a number"
run read "$S" order-1 --limit -3
err "negative number" 2 "evstore: read: option '--limit': '-3' is not a number"
run read "$S" order-1 --from
err "missing option value" 2 "evstore: read: option '--from' needs a value"
run read "$S" order-1 --backward=yes
err "flag with a value" 2 "evstore: read: option '--backward' takes no value"
run read "$S"
err "missing STREAM" 2 "evstore: read: missing STREAM"
run read-all
err "missing DIR" 2 "evstore: read-all: missing DIR"
run stats "$S" extra
err "extra argument" 2 "evstore: stats: unexpected argument 'extra'"
run info "$S" a b
err "extra argument to info" 2 "evstore: info: unexpected argument 'b'"
run generate "$TMP/gen4" --batch 0
err "generate --batch 0" 2 "evstore: generate: option '--batch': '0' is not a number from 1"
run generate "$TMP/gen4" --streams x
err "generate --streams x" 2 "evstore: generate: option '--streams'"
run verify "$S" --quiet=1
err "verify --quiet=1" 2 "evstore: verify: option '--quiet' takes no value"
run stats "$TMP/nostore"
err "stats of a missing store" 1 "evstore: stats: cannot open store '$TMP/nostore'"
eq "usage errors wrote nothing" "$BEFORE" "$(snapshot "$S")"

# ---------------------------------------------------------------------
# Event schemas (--schemas, --strict)

SD=$TMP/schemas
mkdir -p "$SD"
printf '%s' '{"type":"object","required":["total"],"properties":{"total":{"type":"integer","minimum":0}}}' >"$SD/OrderPlaced.v1.json"
SS=$TMP/schema-store
run append "$SS" order-1 --schemas "$SD" --type OrderPlaced '{"total":5}'
err "schemas: no store yet" 1 "evstore: append: cannot open store '$SS'"
run generate "$SS" --events 0 --schemas "$SD"
eq "generate 0 events into a new store: exit status" 0 "$RC"
has "generate 0 events into a new store: summary" '{"events":0,"streams":0,"appends":0,' "$OUT"
run append "$SS" order-1 --schemas "$SD" --type OrderPlaced '{"total":5}'
eq "schemas: valid event" 0 "$RC"
BEFORE_SCHEMA=$(snapshot "$SS")
run append "$SS" order-1 --schemas "$SD" --type OrderPlaced '{"total":-1}'
err "schemas: invalid event" 1 "stream 'order-1', event 1 (OrderPlaced v1): /total: minimum: -1 is less than 0"
run append "$SS" order-1 --schemas "$SD" '{"type":"OrderPlaced","schema_version":2,"data":{"total":1}}'
err "schemas: unknown version" 1 "stream 'order-1', event 1: type 'OrderPlaced' has no schema version 2 in $SD"
run append "$SS" order-1 --schemas "$SD" --strict --type NoteAdded '{"text":"hi"}'
err "schemas: strict" 1 "stream 'order-1', event 1: type 'NoteAdded' has no schema in $SD (the store is strict)"
run append "$SS" order-1 --schemas "$TMP/no-schemas" --type OrderPlaced '{"total":1}'
err "schemas: missing directory" 1 "open schema directory: $TMP/no-schemas"
run append "$SS" order-1 --schemas
err "schemas: no value" 2 "evstore: append: option '--schemas' needs a value"
eq "schemas: rejected appends wrote nothing" "$BEFORE_SCHEMA" "$(snapshot "$SS")"
run append "$SS" order-1 --schemas "$SD" --type NoteAdded '{"text":"hi"}'
eq "schemas: a type without a schema passes when not strict" 0 "$RC"

# ---------------------------------------------------------------------
# The orders demo: a small run (its JSON line is a function of the seed,
# but for the conflicts, the timing and the read models' updated_at), a
# second run on the same store, the default directory, and usage errors.
# The schemas and the projections are found without --schemas and
# --projections: the build bakes in the source tree's schema/events and
# projections.

# The JSON line without what depends on thread timing or the clock.
demo_line() {
	tail -n 1 <<<"$1" | sed -e 's/"conflicts_retried":[0-9]*,//' \
		-e 's/"seconds":[^,]*,"commands_per_second":[0-9]*,//' \
		-e 's/"updated_at":"[^"]*",//g'
}

D=$TMP/demo
run demo "$D" --customers 12 --threads 3 --seed 5 --durability none
eq "demo: exit status" 0 "$RC"
eq "demo: stderr" "" "$ERR"
for key in "legacy v1 events          18" "commands handled         360" \
	"events appended          283" "rejections                49" "  wrong_amount             5" \
	"conflicts retried" "idempotent repeats        28" "legacy v1 upcast          18" \
	"orders                    46  placed 3, paid 4, shipped 33, cancelled 6" \
	"every order folded from its events matches the workload's expectation" \
	"sample order-4 (legacy: OrderPlaced v1, 1 event upcast), state at version 9:" \
	"read models at position 301 (projections orders, customers, daily_revenue in " \
	"every order's row in the orders read model matches its events" \
	"  c-7                 1312.55          4/4  order-32, placed 2026-03-02T09:48:20Z" \
	"  2026-03-02 EUR           35      4592.72" \
	"  order-24                  4        69.69  shipped, c-3, EUR, version 8"; do
	has "demo: summary: $key" "$key" "$OUT"
done
eq "demo: JSON line" '{"dir":"'"$D"'","seed":5,"customers":12,"threads":3,"first_order":"order-1","last_order":"order-46","orders":46,"legacy_v1_events":18,"commands":360,"events":283,"rejections":{"cancelled":1,"already_placed":9,"bad_quantity":2,"bad_price":1,"price_mismatch":1,"already_paid":12,"no_such_item":1,"empty_order":3,"wrong_amount":5,"not_paid":5,"already_shipped":9},"idempotent":28,"legacy_v1_upcast":18,"orders_by_status":{"placed":3,"paid":4,"shipped":33,"cancelled":6},"sample":{"stream":"order-4","version":9,"state":{"status":"shipped","customer":"c-4","currency":"EUR","items":{"KETTLE-61":{"qty":1,"price":7990},"MUG-301":{"qty":3,"price":899},"SPOON-71":{"qty":2,"price":199},"COF-203":{"qty":2,"price":2490}},"total":16065}},"queries":{"position":301,"top_customers":[{"customer":"c-7","orders_placed":4,"orders_paid":4,"spend":131255,"last_order":"order-32","last_order_at":"2026-03-02T09:48:20Z"},{"customer":"c-11","orders_placed":4,"orders_paid":4,"spend":55717,"last_order":"order-43","last_order_at":"2026-03-02T10:04:50Z"},{"customer":"c-4","orders_placed":5,"orders_paid":5,"spend":43595,"last_order":"order-27","last_order_at":"2026-03-02T09:40:50Z"},{"customer":"c-1","orders_placed":4,"orders_paid":3,"spend":41638,"last_order":"order-21","last_order_at":"2026-03-02T09:31:50Z"},{"customer":"c-10","orders_placed":4,"orders_paid":3,"spend":41330,"last_order":"order-40","last_order_at":"2026-03-02T10:00:20Z"}],"daily_revenue":[{"day":"2026-03-02","currency":"CHF","orders_paid":1,"revenue":19138},{"day":"2026-03-02","currency":"EUR","orders_paid":35,"revenue":459272},{"day":"2026-03-02","currency":"GBP","orders_paid":4,"revenue":17997}],"orders":[{"id":"order-1","customer":"c-1","currency":"EUR","status":"shipped","item_count":3,"total":17700,"placed_at":"2026-03-02T09:01:30Z","version":4},{"id":"order-24","customer":"c-3","currency":"EUR","status":"shipped","item_count":4,"total":6969,"placed_at":"2026-03-02T09:36:20Z","version":8},{"id":"order-46","customer":"c-12","currency":"EUR","status":"shipped","item_count":5,"total":1745,"placed_at":"2026-03-02T10:09:20Z","version":7}]}}' "$(demo_line "$OUT")"
matches "demo: updated_at of the orders read model" '"orders":\[(\{[^}]*"updated_at":"2[0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z","version":[0-9]+\},?){3}\]\}\}$' "$(tail -n 1 <<<"$OUT")"
matches "demo: timing" '"conflicts_retried":[0-9]+,.*"seconds":[0-9.e-]+,"commands_per_second":[0-9]+,' "$(tail -n 1 <<<"$OUT")"
run read "$D" order-1 --limit 1
has "demo: legacy events are stored as v1" '"type":"OrderPlaced","schema_version":1,' "$OUT"
run demo "$D" --customers 12 --threads 3 --seed 5 --durability none
eq "demo again: exit status" 0 "$RC"
eq "demo again: stderr" "" "$ERR"
has "demo again: new orders" '"first_order":"order-47","last_order":"order-92","orders":46,' "$OUT"
has "demo again: the read models continue" '"queries":{"position":612,' "$OUT"
run verify "$D" --quiet
eq "demo: verify" '{"ok":true,"problems":0,"store":"'"$D"'"}' "$OUT"

mkdir -p "$TMP/cwd"
EVSTORE_ABS=$(cd "$(dirname "$EVSTORE")" && pwd)/$(basename "$EVSTORE")
(cd "$TMP/cwd" && "$EVSTORE_ABS" demo --customers 1 --threads 1 --durability none \
	</dev/null >"$TMP/out" 2>"$TMP/err")
RC=$?
eq "demo in the default directory: exit status" 0 "$RC"
has "demo in the default directory: summary" '{"dir":"evstore-demo","seed":42,"customers":1,"threads":1,' "$(<"$TMP/out")"
eq "demo in the default directory: store" "ok" "$(test -d "$TMP/cwd/evstore-demo/log" && echo ok)"

run demo --help
eq "demo --help: exit status" 0 "$RC"
eq "demo --help: usage" "usage: evstore demo [DIR] [--customers N] [--threads T] [--seed X]" "$(head -n 1 <<<"$OUT")"
run help demo
has "help demo" "usage: evstore demo" "$OUT"
run demo "$D" --threads 0
err "demo --threads 0" 2 "evstore: demo: option '--threads': '0' is not a number from 1 to 64"
run demo "$D" --customers
err "demo --customers without a value" 2 "evstore: demo: option '--customers' needs a value"
run demo "$D" other
err "demo: two directories" 2 "evstore: demo: unexpected argument 'other'"

# rebuild --snapshots, and reads with --upcast, on the demo's store
SCHEMA_EVENTS=$(cd "$(dirname "$0")/.." && pwd)/schema/events
NORDERS=$("$EVSTORE" streams "$D" </dev/null | grep -c '"order-')
run rebuild "$D" --snapshots
ok "rebuild --snapshots" '{"store":"'"$D"'","snapshots":'"$NORDERS"'}'
eq "rebuild: 92 order streams" 92 "$NORDERS"
run rebuild "$D"
err "rebuild without what" 2 "evstore: rebuild: say what to rebuild: PROJECTION..., --all, --index or --snapshots"
BEFORE_IX=$("$EVSTORE" read-all "$D" 2>&1 | md5sum)
run rebuild "$D" --index
eq "rebuild --index: exit status" 0 "$RC"
eq "rebuild --index: output" '{"store":"'"$D"'","index":"rebuilt","head":'"$("$EVSTORE" stats "$D" | sed 's/.*"head_position":\([0-9]*\).*/\1/')"'}' "$OUT"
has "rebuild --index: progress" "index: " "$ERR"
eq "rebuild --index: the same log read back" "$BEFORE_IX" "$("$EVSTORE" read-all "$D" 2>&1 | md5sum)"
run rebuild "$TMP/nostore" --index
err "rebuild --index: no store" 1 "no store at $TMP/nostore"
run rebuild "$TMP/nostore" --snapshots
err "rebuild of a missing store" 1 "evstore: rebuild: cannot open store '$TMP/nostore'"
run read "$D" order-1 --limit 1
has "read: order-1 is stored as v1" '"type":"OrderPlaced","schema_version":1,' "$OUT"
has "read: without currency" '"data":{"order_id":"1","customer_id":"c-1","placed_at":' "$OUT"
run read "$D" order-1 --limit 1 --upcast --schemas "$SCHEMA_EVENTS"
has "read --upcast: v2" '"type":"OrderPlaced","schema_version":2,' "$OUT"
matches "read --upcast: currency EUR" '"data":\{"order_id":"1","customer_id":"c-1","placed_at":"[^"]*","currency":"EUR"\}\}$' "$OUT"
run read-all "$D" --limit 1 --upcast --schemas "$SCHEMA_EVENTS"
has "read-all --upcast: v2" '"type":"OrderPlaced","schema_version":2,' "$OUT"
run read "$D" order-1 --upcast --schemas "$TMP/none"
err "read --upcast with a missing schema directory" 1 "open schema directory: $TMP/none"
run demo "$D" --frobnicate
err "demo: unknown option" 2 "evstore: demo: unknown option '--frobnicate'"
run demo "$D" --durability fast
err "demo: bad durability" 2 "evstore: demo: option '--durability': 'fast' is not 'sync' or 'none'"
run demo "$TMP/demo2" --schemas "$TMP/no-schemas" --durability none
err "demo: missing schema directory" 1 "evstore: demo: cannot open store '$TMP/demo2': "
run demo "$TMP/demo2" --projections "$TMP/no-projections" --durability none
err "demo: missing projections" 1 "evstore: demo: cannot load projection $TMP/no-projections/orders.sql: No such file or directory"
run demo "$TMP/demo2" --projections
err "demo: --projections without a value" 2 "evstore: demo: option '--projections' needs a value"
# Schemas without the v1 -> v2 upcaster: the first legacy order fails,
# named, and the run stops with status 1.
mkdir -p "$TMP/no-upcaster"
cp "$(dirname "${BASH_SOURCE[0]}")"/../schema/events/*.json "$TMP/no-upcaster/"
run demo "$TMP/demo3" --schemas "$TMP/no-upcaster" --customers 3 --threads 1 --durability none
PRE=$(tmp_files) # it fails after work done, which stays
err "demo without the upcaster" 1 "evstore: demo: order-1: AddItem (command order-1:1): expected success, but it was an error: invalid input: decider 'order': evolve returned NULL for stream 'order-1' version 1 (OrderPlaced)"

# ---------------------------------------------------------------------
# tail: history, then live events from another process

TS=$TMP/tail-store
run generate "$TS" --events 20 --durability none
eq "tail: store" 0 "$RC"
run tail "$TS" --from 19 --count 2
eq "tail --from 19 --count 2: exit status" 0 "$RC"
eq "tail --from 19 --count 2: positions" "19 20" "$(grep -o '"position":[0-9]*' <<<"$OUT" | cut -d: -f2 | tr '\n' ' ' | sed 's/ $//')"
timeout 20 "$EVSTORE" tail "$TS" --count 2 --type Note >"$TMP/tail.out" 2>"$TMP/tail.err" &
TAIL_PID=$!
sleep 0.3
"$EVSTORE" append "$TS" order-1 --type Other '{"n":0}' >/dev/null 2>&1
"$EVSTORE" append "$TS" order-1 --type Note '{"n":1}' >/dev/null 2>&1
"$EVSTORE" append "$TS" order-2 --type Note '{"n":2}' >/dev/null 2>&1
wait "$TAIL_PID"
eq "tail live: exit status" 0 "$?"
eq "tail live: only new Note events, in order" '22 {"n":1}
23 {"n":2}' "$(sed -E 's/^\{"position":([0-9]+),.*"data":(.*)\}$/\1 \2/' "$TMP/tail.out")"
eq "tail live: stderr" "" "$(<"$TMP/tail.err")"
"$EVSTORE" tail "$TS" >"$TMP/tail.out" 2>"$TMP/tail.err" &
TAIL_PID=$!
sleep 0.3
kill -INT "$TAIL_PID"
wait "$TAIL_PID"
eq "tail: Ctrl-C ends it cleanly" 0 "$?"
run tail "$TMP/nostore"
err "tail of a missing store" 1 "evstore: tail: cannot open store '$TMP/nostore'"
run tail "$TS" --count 0
err "tail --count 0" 2 "evstore: tail: option '--count': '0' is not a number from 1"

# ---------------------------------------------------------------------
# query and projections

QP=$TMP/projections
mkdir -p "$QP"
cat >"$QP/counts.sql" <<'SQL'
-- projection: counts
-- setup
CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER);
-- on: *
INSERT INTO counts VALUES (:stream, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1;
-- query: all
SELECT stream, n FROM counts ORDER BY stream;
-- query: one
SELECT stream, n FROM counts WHERE stream = :stream;
SQL
QS=$TMP/query-store
run generate "$QS" --events 30 --streams 3 --durability none
run projections "$QS" --projections "$QP"
ok "projections before any query" '{"projection":"counts","checkpoint":0,"head":30,"lag":30,"parked":0,"out_of_date":false}'
run query "$QS" counts all --projections "$QP"
ok "query all" '{"stream":"order-1","n":10}
{"stream":"order-2","n":10}
{"stream":"order-3","n":10}'
run query "$QS" "$QP/counts.sql" one stream=order-2
ok "query by file, with a parameter" '{"stream":"order-2","n":10}'
run append "$QS" order-2 --type Note '{"n":1}'
run query "$QS" counts one stream=order-2 --projections "$QP"
ok "query after an append: up to date" '{"stream":"order-2","n":11}'
run projections "$QS" --projections "$QP"
ok "projections after a query" '{"projection":"counts","checkpoint":31,"head":31,"lag":0,"parked":0,"out_of_date":false}'
BEFORE_Q=$("$EVSTORE" query "$QS" counts all --projections "$QP" 2>&1)
run rebuild "$QS" counts --projections "$QP"
eq "rebuild counts: exit status" 0 "$RC"
eq "rebuild counts: output" '{"projection":"'"$QP"'/counts.sql","position":31}' "$OUT"
has "rebuild counts: progress" "counts.sql: 31 of 31" "$ERR"
eq "rebuild counts: same answers" "$BEFORE_Q" "$("$EVSTORE" query "$QS" counts all --projections "$QP" 2>&1)"
run rebuild "$QS" --all --projections "$QP"
eq "rebuild --all: exit status" 0 "$RC"
eq "rebuild --all: output" '{"projection":"'"$QP"'/counts.sql","position":31}' "$OUT"
run parked "$QS" counts --projections "$QP"
ok "parked: none" ""
run parked "$QS" counts --replay --projections "$QP"
ok "parked --replay: none" '{"replayed":0,"still_parked":0}'
run parked "$QS"
err "parked: missing PROJECTION" 2 "evstore: parked: missing PROJECTION"
run query "$QS" counts nope --projections "$QP"
err "query: unknown query" 1 "projection 'counts' has no query 'nope'"
run query "$QS" counts all --projections "$QP" --min-position 99 --timeout-ms 50
err "query: min-position not reached" 1 "projection 'counts' is at position 31, not yet 99, after 50 ms"
run query "$QS" counts one stream
err "query: a parameter without '='" 2 "evstore: query: parameter 'stream' is not NAME=VALUE"
run query "$QS" counts
err "query: missing QUERY" 2 "evstore: query: missing QUERY (or --sql SQL)"
run query "$QS" counts --projections "$QP" --sql 'SELECT sum(n) AS total, count(*) AS streams FROM counts WHERE n >= :min' min=10
ok "query --sql, with a parameter" '{"total":31,"streams":3}'
run query "$QS" counts --projections "$QP" --sql 'DELETE FROM counts'
err "query --sql: a write refused" 1 "projection 'counts' ad-hoc query: not authorized"
run query "$QS" counts --projections "$QP" --sql "ATTACH DATABASE '$TMP/other.db' AS o"
err "query --sql: ATTACH refused" 1 "projection 'counts' ad-hoc query: not authorized"
run query "$QS" counts --projections "$QP" --sql 'SELECT 1; DROP TABLE counts'
err "query --sql: a second statement refused" 1 "projection 'counts' ad-hoc query: one statement only"
run query "$QS" counts all --projections "$QP"
ok "query --sql: nothing changed" '{"stream":"order-1","n":10}
{"stream":"order-2","n":11}
{"stream":"order-3","n":10}'
eq "query --sql: no file attached" "no" "$([ -e "$TMP/other.db" ] && echo yes || echo no)"
run query "$QS" counts all --projections "$QP" --sql 'SELECT 1'
err "query: both a query and --sql" 2 "evstore: query: both a query ('all') and --sql"

# ---------------------------------------------------------------------

echo
echo "$passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
	printf 'failed: %s\n' "${failures[@]}"
	exit 1
fi
exit 0
