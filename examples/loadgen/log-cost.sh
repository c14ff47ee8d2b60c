#!/usr/bin/env bash
# What the match log costs, side by side in one run: two instances on one private Redis, one
# keeping every match's log (MATCH_LOG=true, keys under `on:`) and one not (`off:`), each
# played by its own `loadgen play` at the same time with the same number of bots. Reports each
# side's action round trips (submitAction to its acknowledgement) and the Redis memory its
# matches hold, per match, with the logs' own share.
#
#   examples/loadgen/log-cost.sh
#
# Needs: cargo build --release -p host -p loadgen; cargo xtask build-rules; redis-server.
set -eu
cd "$(dirname "$0")/../.."
G=${GAMEHOST:-target/release/gamehost}
L=target/release/loadgen
PLAYERS=${PLAYERS:-200}
SECS=${SECS:-30}
PORT=${REDIS_PORT:-6398}
LOGS=$(mktemp -d)

redis-server --port "$PORT" --save '' --appendonly no > "$LOGS/redis.log" 2>&1 &
REDIS=$!
trap 'kill $REDIS 2>/dev/null; pkill -P $$ 2>/dev/null || true' EXIT
sleep 1

pids=() players=()
for side in on off; do
  port=$([ $side = on ] && echo 4201 || echo 4202)
  log=$([ $side = on ] && echo true || echo false)
  env RULES_DIR=target/rules REDIS_URL="redis://127.0.0.1:$PORT" REDIS_PREFIX="$side:" \
    APP_PORT=$port MATCH_LOG=$log EVENTS_PER_SECOND=100000 EVENT_BURST=100000 \
    FINISHED_GAME_RETENTION_MS=3600000 RUST_LOG=warn "$G" > "$LOGS/$side.log" 2>&1 &
  pids+=($!)
  until curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null; do sleep 0.2; done
done

# Both at once, in the order FIRST says (the other starts right after).
first=${FIRST:-on}
for side in $first $([ "$first" = on ] && echo off || echo on); do
  port=$([ $side = on ] && echo 4201 || echo 4202)
  $L play --urls "http://127.0.0.1:$port" --players "$PLAYERS" --secs "$SECS" > "$LOGS/play-$side" 2>/dev/null &
  players+=($!)
done
wait "${players[@]}"

# The Redis memory of every key under a prefix (matching a pattern), in bytes.
memory() {
  redis-cli -p "$PORT" --scan --pattern "$1" | while read -r key; do
    redis-cli -p "$PORT" memory usage "$key"
  done | awk '{s += $1} END {print s + 0}'
}
for side in on off; do
  games=$(redis-cli -p "$PORT" hlen "$side:game_states")
  # The hashes every match shares a field of: the field's share is its value's length.
  shared=0
  for hash in game_states matches game_versions game_modules; do
    bytes=$(redis-cli -p "$PORT" --no-raw hvals "$side:$hash" | awk '{s += length($0)} END {print s + 0}')
    shared=$((shared + bytes))
  done
  rooms=$(memory "$side:room:*")
  logs=$(memory "$side:match_log:*")
  entries=$(redis-cli -p "$PORT" --scan --pattern "$side:match_log:*" | while read -r key; do
    redis-cli -p "$PORT" llen "$key"; done | awk '{s += $1} END {print s + 0}')
  echo "== MATCH_LOG=$([ $side = on ] && echo true || echo false)"
  grep -E "^(rates|matches|round trips|errors)" "$LOGS/play-$side" || cat "$LOGS/play-$side"
  per() { [ "$games" -gt 0 ] && echo $(($1 / games)) || echo 0; }
  echo "stored games: $games; per game: $(per "$shared") bytes of state and records, $(per "$rooms") bytes of delivery log, $(per "$logs") bytes of match log ($entries entries in all)"
done
kill "${pids[@]}"
wait "${pids[@]}" 2>/dev/null || true
