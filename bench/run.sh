#!/bin/sh
# make bench: the Go benchmarks, then the bench scenarios against a separately started
# `shardchat serve` on a free loopback port, and BENCHMARKS.md with their tables, the date,
# the machine and the commit.
#
#   GO=go  SCENARIOS="seed burst fanout"  OUT=BENCHMARKS.md  COMMIT=<sha>  sh bench/run.sh
set -eu
GO=${GO:-go}
SCENARIOS=${SCENARIOS:-seed burst fanout}
OUT=${OUT:-BENCHMARKS.md}
cd "$(dirname "$0")/.."

work=$(mktemp -d)
server=""
cleanup() {
	if [ -n "$server" ]; then
		kill -TERM "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== go test -bench"
$GO test -run '^$' -bench . -benchmem ./... >"$work/gobench.txt" 2>&1 || { cat "$work/gobench.txt"; exit 1; }
cat "$work/gobench.txt"

echo "== shardchat serve on a free loopback port"
$GO build -o "$work/shardchat" .
# The bench connects from one address: lift the server's per-address connection caps.
"$work/shardchat" serve --addr 127.0.0.1:0 --max-conns-per-ip 0 --connect-rate-per-ip 0 2>"$work/server.log" &
server=$!
addr=""
for _ in $(seq 100); do
	addr=$(sed -n 's/.*msg="shardchat listening" addr=\([^ ]*\).*/\1/p' "$work/server.log" | head -n 1)
	[ -n "$addr" ] && break
	kill -0 "$server" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$addr" ]; then
	echo "the server did not start:" >&2
	cat "$work/server.log" >&2
	exit 1
fi
echo "listening on $addr"

# The load average before each scenario goes into the page: figures taken while something
# else kept the machine busy are not comparable.
for s in $SCENARIOS; do
	echo "== shardchat bench --scenario $s --url ws://$addr/ws"
	cut -d ' ' -f 1 /proc/loadavg >"$work/$s.load" 2>/dev/null || echo unknown >"$work/$s.load"
	"$work/shardchat" bench --scenario "$s" --url "ws://$addr/ws" >"$work/$s.md" # a failed run stops make bench
	cat "$work/$s.md"
done

commit=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
if git rev-parse --git-dir >/dev/null 2>&1 && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit="$commit (with uncommitted changes)"
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
{
	echo "# Benchmarks"
	echo
	echo "Written by \`make bench\` (bench/run.sh); run it again to refresh this page."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(nproc) cores${cpu:+ ($cpu)}, ${mem:-unknown} memory, $(uname -sr)"
	echo "- commit: $commit"
	echo "- Go: $($GO env GOVERSION)"
	echo "- server: \`shardchat serve --addr 127.0.0.1:0 --max-conns-per-ip 0 --connect-rate-per-ip 0\`: its defaults (rate 10"
	echo "  a second and burst 20 per connection, queue 4096) without the per-address connection caps, since every client"
	echo "  comes from 127.0.0.1; a separate process on the same machine as the bench, which runs its clients in one process"
	echo
	echo "The figures are explained by \`shardchat bench --help\`: connection time is from the upgrade"
	echo "request until \`welcome\`; messages a second count the messages echoed to their senders; the delivery"
	echo "ratio counts each member's deliveries against every message ordered in its room while it was a member;"
	echo "memory, CPU and goroutines come from the server's /metrics before and after; bench CPU is the client's own."
	for s in $SCENARIOS; do
		echo
		echo "## Scenario $s"
		echo
		echo "\`shardchat bench --scenario $s --url ws://$addr/ws\`, with a 1-minute load average of $(cat "$work/$s.load") before it:"
		echo
		cat "$work/$s.md"
	done
	echo
	echo "## Go benchmarks"
	echo
	echo '```'
	grep -E '^(goos|goarch|pkg|cpu|Benchmark|ok|PASS|FAIL)' "$work/gobench.txt" || true
	echo '```'
} >"$OUT"
echo "== wrote $OUT"
