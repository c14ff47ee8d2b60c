#!/usr/bin/env bash
# CPU per message as the fleet grows, at one fixed rate: 1, 2, 4 and 8 instances (plus one more
# that holds no player) share a private Redis; `loadgen relay` sends chat at RATE messages/s,
# each message across two instances, and reads every process's CPU time from /proc.
#
#   examples/loadgen/fleet-cpu.sh [BINARY ...]
#
# Each BINARY (default target/release/gamehost) runs the same sizes in turn, so an older build
# can be measured side by side with this one. Needs: cargo build --release -p host -p loadgen;
# cargo xtask build-rules; redis-server.
#
# METER=instructions runs every instance under valgrind's callgrind and counts the instructions
# each runs per message instead of its CPU time: the same from run to run whatever else the
# machine does, where CPU time on a shared machine is not. Valgrind slows the hosts about
# fiftyfold, so the rate and pairs default lower, and each instance reserves wasm memory for two
# calls at once (RULES_CONCURRENCY=2: valgrind cannot map the default pool). Needs valgrind.
set -eu
cd "$(dirname "$0")/../.."
L=target/release/loadgen
METER=${METER:-cpu}
if [ "$METER" = instructions ]; then
  RATE=${RATE:-100}
  PAIRS=${PAIRS:-16}
else
  RATE=${RATE:-1000}
  PAIRS=${PAIRS:-64}
fi
SECS=${SECS:-20}
SIZES=${SIZES:-"1 2 4 8"}
PORT=${REDIS_PORT:-6397}
BINARIES=("$@")
[ ${#BINARIES[@]} = 0 ] && BINARIES=(target/release/gamehost)
LOGS=$(mktemp -d)

redis-server --port "$PORT" --save '' --appendonly no > "$LOGS/redis.log" 2>&1 &
REDIS=$!
trap 'kill $REDIS 2>/dev/null; wait $REDIS 2>/dev/null; pkill -P $$ 2>/dev/null || true' EXIT
# Until it answers (the last run's server may still be letting go of the port).
until redis-cli -p "$PORT" ping > /dev/null 2>&1; do
  kill -0 $REDIS 2>/dev/null || { echo "redis-server did not start on port $PORT" >&2; exit 1; }
  sleep 0.2
done
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
under=() metered=()
if [ "$METER" = instructions ]; then
  under=(env RULES_CONCURRENCY=2 valgrind --tool=callgrind "--callgrind-out-file=$LOGS/callgrind.%p")
  metered=(--callgrind-dumps "$LOGS")
fi

for binary in "${BINARIES[@]}"; do
  for n in $SIZES; do
    redis-cli -p "$PORT" flushall > /dev/null
    pids=() urls=()
    for i in $(seq 0 "$n"); do
      port=$((4100 + i))
      env RULES_DIR=target/rules REDIS_URL="redis://127.0.0.1:$PORT" APP_PORT=$port \
        INSTANCE_ID="fleet-$i" EVENTS_PER_SECOND=100000 EVENT_BURST=100000 RUST_LOG=warn \
        "${under[@]}" "$binary" > "$LOGS/$n-$i.log" 2>&1 &
      pids+=($!)
      urls+=("http://127.0.0.1:$port")
    done
    for url in "${urls[@]}"; do
      until curl -sf "$url/health/ready" > /dev/null; do sleep 0.2; done
    done
    # The last instance is in the fleet but gets no player.
    idle=${pids[$n]}
    busy=$(IFS=,; echo "${pids[*]:0:$n}")
    busy_urls=$(IFS=,; echo "${urls[*]:0:$n}")
    redis_before=$(cpu $REDIS)
    out=$($L relay --urls "$busy_urls" --pairs "$PAIRS" --rate "$RATE" --secs "$SECS" \
      --pids "$busy" --idle-pids "$idle" "${metered[@]}" 2> "$LOGS/relay.log") ||
      { cat "$LOGS/relay.log" >&2; exit 1; }
    redis_after=$(cpu $REDIS)
    delivered=$(echo "$out" | sed -nE 's/^messages delivered: ([0-9]+).*/\1/p')
    echo "== $binary, $n instance(s) + 1 without players, $RATE messages/s, $METER"
    echo "$out" | grep -E "round trips|errors:|^fleet|^idle"
    echo "redis: $(( (redis_after - redis_before) * 10000 / (delivered > 0 ? delivered : 1) )) us per message (cpu $(( (redis_after - redis_before) * 10 )) ms)"
    kill "${pids[@]}"
    wait "${pids[@]}" 2>/dev/null || true
  done
done
