#!/usr/bin/env bash
# Runs the benchmarks of docs/performance.md, each with its baselines in the
# same run, COUNT times, and prints one benchstat table per target. The raw
# results stay in OUTDIR (default: a new temporary directory) for later
# comparisons (benchstat old/join.txt new/join.txt).
#
# usage: scripts/bench.sh [COUNT] [OUTDIR]     (COUNT defaults to 6)
#
# It takes about 2 minutes per count on a 2-core machine. Run it on an
# otherwise idle machine: the cross-process benchmarks give the server and
# the component one core each.
set -euo pipefail

count=${1:-6}
out=${2:-$(mktemp -d -t cblink-bench.XXXXXX)}
mkdir -p "$out"
cd "$(dirname "$0")/.."

benchstat=$(command -v benchstat || true)
if [ -z "$benchstat" ]; then
	benchstat="$(go env GOPATH)/bin/benchstat"
	[ -x "$benchstat" ] || go install golang.org/x/perf/cmd/benchstat@latest
fi

# run NAME ARGS...: go test -bench, the output kept in $out/NAME.txt.
run() {
	local name=$1
	shift
	echo "== $name: go test -run '^\$' -count $count $*" >&2
	go test -run '^$' -count "$count" "$@" >"$out/$name.txt"
}

run join -bench '^BenchmarkJoinCrossProcess$' -benchtime 2s ./component/
run ping -bench '^BenchmarkPingCrossProcess$' -benchtime 2s ./component/
run handshake -bench '^BenchmarkHandshakeCrossProcess$' -benchtime 300x ./callbridge/
run idle-rss -bench '^BenchmarkIdleRSS$' -benchtime 1x ./examples/callbridge/
run idle-link -bench '^BenchmarkIdleBridge$' -benchtime 1x ./callbridge/

# table TITLE FILE BENCHSTAT-ARGS...
table() {
	local title=$1 file=$2
	shift 2
	printf '\n### %s\n\n' "$title"
	"$benchstat" "$@" "$out/$file.txt"
}

table "1. Joins, handler waiting 10ms, 64 in flight: cblink against the ceiling (wait-only) and mellium" \
	join -filter '/backend:10ms .unit:(rt/s OR component-cpu%)' -col '/client@(wait-only cblink mellium)'
table "1. Joins, no backend, 64 in flight: cblink against mellium (allocs/join: the component's own)" \
	join -filter '/backend:0s .unit:(rt/s OR allocs/join OR component-ns/op)' -col '/client@(mellium cblink)'
table "2. Idle RSS of the connected binary: callbridge against mellium and the hand-written loop" \
	idle-rss -filter '.unit:(rss-MiB OR anon-MiB OR file-MiB)' -col '/client@(mellium handloop callbridge)'
table "2. Idle link heap: bridge and bare session against a bare TLS connection" \
	idle-link -filter '.unit:(heap-B/conn OR stack-B/conn OR goroutines/conn)' -col '/client@(tls-conn component-session bridge)'
table "3. Handshake, server side (accept to first byte, to authenticated): against the hand-written loop" \
	handshake -filter '.unit:(accept-to-first-byte-ms OR accept-to-auth-ms)' -col '/client@(handloop callbridge component mellium)'
table "4. Ping round trips: cblink against the hand-written loop and mellium" \
	ping -filter '.unit:(rt/s OR component-ns/op)' -col '/client@(handloop cblink mellium)'
echo
echo "raw results: $out"
