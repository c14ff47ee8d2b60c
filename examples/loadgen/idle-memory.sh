#!/usr/bin/env bash
# Resident memory per idle websocket: a release instance (alone in memory, or on a private Redis
# with REDIS=1), SOCKETS clients that connect and stay idle, RSS before and after, three times.
# Needs: cargo build --release -p host -p loadgen; cargo xtask build-rules.
set -eu
cd "$(dirname "$0")/../.."
B=${1:-target/release/gamehost}
SOCKETS=${SOCKETS:-2000}
extra=()
if [ "${REDIS:-0}" = 1 ]; then
  redis-server --port 6398 --save '' --appendonly no > /dev/null 2>&1 &
  REDIS_PID=$!
  sleep 0.5
  extra=(REDIS_URL=redis://127.0.0.1:6398)
fi
for run in 1 2 3; do
  env RULES_DIR=target/rules APP_PORT=4200 RUST_LOG=warn MAX_CONNECTIONS_PER_ADDR=100000 \
    "${extra[@]}" "$B" > /dev/null 2>&1 &
  HOST=$!
  until curl -sf http://127.0.0.1:4200/health/ready > /dev/null; do sleep 0.2; done
  target/release/loadgen idle --urls http://127.0.0.1:4200 --sockets "$SOCKETS" --pids $HOST \
    | grep "per idle socket"
  kill $HOST; wait $HOST 2>/dev/null || true
done
[ -n "${REDIS_PID:-}" ] && kill $REDIS_PID
