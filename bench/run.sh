#!/bin/sh
# make bench: the Go benchmarks, then the bench scenarios against a separately started
# `shardchat serve` on a free loopback port, and BENCHMARKS.md with their tables, the date,
# the machine and the commit.
#
# Each scenario runs RUNS times (the machines are shared and noisy: the page quotes medians).
# When redis-server is installed, seed also runs across two hosts sharing one Redis. The page
# ends with bench/history.md, the hand-kept record of what each optimisation gained.
#
#   GO=go  SCENARIOS="seed burst fanout"  RUNS=3  OUT=BENCHMARKS.md  COMMIT=<sha>  sh bench/run.sh
set -eu
GO=${GO:-go}
SCENARIOS=${SCENARIOS:-seed burst fanout}
RUNS=${RUNS:-3}
OUT=${OUT:-BENCHMARKS.md}
# The page is built from the medians table, which the bench writes from two runs on.
if [ "$RUNS" -lt 2 ]; then
	echo "RUNS=$RUNS: the page quotes medians of several runs; set RUNS to 2 or more" >&2
	exit 2
fi
cd "$(dirname "$0")/.."

work=$(mktemp -d)
server=""
others=""
cleanup() {
	for p in $server $others; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== go test -bench"
$GO test -run '^$' -bench . -benchmem ./... >"$work/gobench.txt" 2>&1 || { cat "$work/gobench.txt"; exit 1; }
cat "$work/gobench.txt"

echo "== shardchat serve on a free loopback port"
# Built as make build builds what ships: static, without symbols (the binary's own pages are
# part of the RSS the page reports).
CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$work/shardchat" .

# start_server LOG ARGS... starts `shardchat serve` on a free loopback port, sets $pid to its
# process and $addr to where it listens.
start_server() {
	log=$1
	shift
	"$work/shardchat" serve --addr 127.0.0.1:0 "$@" 2>"$log" &
	pid=$!
	addr=""
	for _ in $(seq 100); do
		addr=$(sed -n 's/.*msg="shardchat listening" addr=\([^ ]*\).*/\1/p' "$log" | head -n 1)
		[ -n "$addr" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "the server did not start:" >&2
	cat "$log" >&2
	exit 1
}

# The bench connects from one address: lift the server's per-address connection caps.
start_server "$work/server.log" --max-conns-per-ip 0 --connect-rate-per-ip 0
server=$pid
echo "listening on $addr"

# The load average before each scenario goes into the page: figures taken while something
# else kept the machine busy are not comparable.
for s in $SCENARIOS; do
	echo "== shardchat bench --scenario $s --url ws://$addr/ws"
	cut -d ' ' -f 1 /proc/loadavg >"$work/$s.load" 2>/dev/null || echo unknown >"$work/$s.load"
	# A failed run stops make bench, with its report, which says what went wrong.
	"$work/shardchat" bench --scenario "$s" --url "ws://$addr/ws" --runs "$RUNS" >"$work/$s.md" || { cat "$work/$s.md"; exit 1; }
	cat "$work/$s.md"
done

# The Redis path: two hosts on one redis-server, the clients spread over both.
redis=""
if command -v redis-server >/dev/null 2>&1; then
	rport=$(( 20000 + $$ % 20000 ))
	redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
	others="$others $!"
	for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
	start_server "$work/a.log" --max-conns-per-ip 0 --connect-rate-per-ip 0 --redis-url "redis://127.0.0.1:$rport"
	others="$others $pid"
	a=$addr
	start_server "$work/b.log" --max-conns-per-ip 0 --connect-rate-per-ip 0 --redis-url "redis://127.0.0.1:$rport"
	others="$others $pid"
	b=$addr
	redis="seed, two hosts on one Redis"
	echo "== shardchat bench --scenario seed --url ws://$a/ws --url ws://$b/ws (Redis on port $rport)"
	cut -d ' ' -f 1 /proc/loadavg >"$work/redis.load" 2>/dev/null || echo unknown >"$work/redis.load"
	"$work/shardchat" bench --scenario seed --url "ws://$a/ws" --url "ws://$b/ws" --runs "$RUNS" >"$work/redis.md" || { cat "$work/redis.md"; exit 1; }
	cat "$work/redis.md"
fi

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
	echo "The figures are explained by \`shardchat bench --help\`: connection time is from the dial until"
	echo "\`welcome\`, with up to 128 connections opening at once (where all connect at once, the mean is mostly"
	echo "their wait for the machine's cores: 128 over the connections a second both sides make); messages a second"
	echo "count the messages echoed to their senders; the delivery ratio counts each member's deliveries against every"
	echo "message ordered in its room while it was a member;"
	echo "memory, CPU and goroutines come from the server's /metrics before and after; bench CPU is the client's own."
	for s in $SCENARIOS; do
		echo
		echo "## Scenario $s"
		echo
		echo "\`shardchat bench --scenario $s --url ws://HOST:PORT/ws --runs $RUNS\`, with a 1-minute load average of $(cat "$work/$s.load") before it."
		echo "The medians first, then the last run's whole table."
		echo
		sed -n '/^Medians of/,$p' "$work/$s.md"
		echo
		awk -v runs="$RUNS" '/^Run / { n++ } n == runs && !/^Run / && !/^Medians of/ { print } /^Medians of/ { exit }' "$work/$s.md"
	done
	if [ -n "$redis" ]; then
		echo
		echo "## Scenario $redis"
		echo
		echo "\`shardchat bench --scenario seed --url ws://HOST-A/ws --url ws://HOST-B/ws --runs $RUNS\`: two \`shardchat serve --redis-url\` processes"
		echo "on one redis-server (no persistence), all on this machine, with a 1-minute load average of $(cat "$work/redis.load") before it."
		echo
		sed -n '/^Medians of/,$p' "$work/redis.md"
	fi
	echo
	echo "## Go benchmarks"
	echo
	echo '```'
	grep -E '^(goos|goarch|pkg|cpu|Benchmark|ok|PASS|FAIL)' "$work/gobench.txt" || true
	echo '```'
	if [ -f bench/history.md ]; then
		echo
		cat bench/history.md
	fi
} >"$OUT"
echo "== wrote $OUT"
