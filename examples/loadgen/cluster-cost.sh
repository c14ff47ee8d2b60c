#!/usr/bin/env bash
# The same load on one Redis server and on a three-master Redis Cluster, one after the other in
# one run: two instances (REDIS_URL, then REDIS_CLUSTER_NODES), `loadgen play` with the same
# number of bots for the same time, then `loadgen relay` at one fixed chat rate. Reports the
# bots' action round trips, the hosts' CPU, and Redis's CPU per node (the cluster's nodes
# separately, in port order; the third holds the fleet's slot: which of them does the work).
#
#   examples/loadgen/cluster-cost.sh
#
# INSTANCE_LOG sets the instances' RUST_LOG (default warn); their logs stay in the folder
# printed at the end.
#
# Needs: cargo build --release -p host -p loadgen; cargo xtask build-rules; redis-server and
# redis-cli.
set -eu
cd "$(dirname "$0")/../.."
G=${GAMEHOST:-target/release/gamehost}
L=target/release/loadgen
PLAYERS=${PLAYERS:-200}
SECS=${SECS:-30}
RATE=${RATE:-1000}
BASE=${REDIS_PORT:-6420}
INSTANCE_LOG=${INSTANCE_LOG:-warn}
LOGS=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true' EXIT
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
# Commands a Redis server has run (those a script runs counted too, and the script itself).
calls() { redis-cli -p "$1" info commandstats | awk -F'[=,]' '/^cmdstat_/ {n += $2} END {print n}'; }

# redis-server on PORT, with cluster mode when $2 is "cluster"; prints its pid.
redis() {
  local port=$1 extra=()
  [ "$2" = cluster ] && extra=(--cluster-enabled yes --cluster-config-file "$LOGS/nodes-$port.conf")
  redis-server --port "$port" --save '' --appendonly no --dir "$LOGS" "${extra[@]}" \
    > "$LOGS/redis-$port.log" 2>&1 &
  echo $!
}

for backend in server cluster; do
  redis_pids=() redis_ports=()
  if [ $backend = server ]; then
    redis_pids+=("$(redis $BASE server)")
    redis_ports+=("$BASE")
    sleep 1
    env=(REDIS_URL="redis://127.0.0.1:$BASE")
  else
    nodes=() seeds=()
    for i in 1 2 3; do
      port=$((BASE + i))
      redis_pids+=("$(redis $port cluster)")
      redis_ports+=("$port")
      nodes+=("127.0.0.1:$port")
      seeds+=("redis://127.0.0.1:$port")
    done
    sleep 1
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes > /dev/null
    until redis-cli -p $((BASE + 1)) cluster info | grep -q cluster_state:ok; do sleep 0.2; done
    env=(REDIS_CLUSTER_NODES="$(IFS=,; echo "${seeds[*]}")")
  fi
  hosts=() urls=()
  # On the cluster, each instance's socket mappings are in its id's slot: these two ids fall on
  # the two nodes that do not hold the fleet's slot (cluster-b: 1269, cluster-two: 6254;
  # {fleet}: 14574), as instances spread over a larger cluster's nodes.
  ids=(b two)
  for i in 0 1; do
    port=$((4300 + i))
    env RULES_DIR=target/rules "${env[@]}" APP_PORT=$port INSTANCE_ID="$backend-${ids[$i]}" \
      EVENTS_PER_SECOND=100000 EVENT_BURST=100000 RUST_LOG="$INSTANCE_LOG" "$G" > "$LOGS/$backend-$i.log" 2>&1 &
    hosts+=($!)
    urls+=("http://127.0.0.1:$port")
  done
  for url in "${urls[@]}"; do
    until curl -sf "$url/health/ready" > /dev/null; do sleep 0.2; done
  done
  all_urls=$(IFS=,; echo "${urls[*]}")

  snapshot() { for pid in "$@"; do cpu "$pid"; done | paste -sd' '; }
  commands() { for port in "${redis_ports[@]}"; do calls "$port"; done | paste -sd' '; }
  # CPU (ms) spent by each pid between two snapshots.
  spent() { paste <(echo "$1" | tr ' ' '\n') <(echo "$2" | tr ' ' '\n') | awk '{printf "%d ", ($2 - $1) * 10}'; }

  echo "== $backend: ${#redis_pids[@]} Redis node(s), 2 instances"
  before_hosts=$(snapshot "${hosts[@]}") before_redis=$(snapshot "${redis_pids[@]}")
  before_calls=$(commands)
  $L play --urls "$all_urls" --players "$PLAYERS" --secs "$SECS" > "$LOGS/play-$backend" 2>/dev/null
  after_hosts=$(snapshot "${hosts[@]}") after_redis=$(snapshot "${redis_pids[@]}")
  after_calls=$(commands)
  echo "play, $PLAYERS bots, $SECS s:"
  grep -E "^(rates|matches|round trips|errors)" "$LOGS/play-$backend" | sed 's/^/  /'
  echo "  host cpu ms: $(spent "$before_hosts" "$after_hosts")| redis cpu ms per node: $(spent "$before_redis" "$after_redis")"
  matches=$(awk '/^matches completed:/ {print $3}' "$LOGS/play-$backend")
  echo "  redis commands per match, per node: $(paste <(echo "$before_calls" | tr ' ' '\n') <(echo "$after_calls" | tr ' ' '\n') | awk -v m="$matches" '{printf "%.1f ", ($2 - $1) / m}')"

  before_hosts=$(snapshot "${hosts[@]}") before_redis=$(snapshot "${redis_pids[@]}")
  out=$($L relay --urls "$all_urls" --rate "$RATE" --secs "$SECS" 2>/dev/null)
  after_hosts=$(snapshot "${hosts[@]}") after_redis=$(snapshot "${redis_pids[@]}")
  echo "relay, $RATE messages/s, $SECS s:"
  echo "$out" | grep -E "round trips|errors:|messages delivered" | sed 's/^/  /'
  echo "  host cpu ms: $(spent "$before_hosts" "$after_hosts")| redis cpu ms per node: $(spent "$before_redis" "$after_redis")"

  kill "${hosts[@]}" "${redis_pids[@]}"
  wait "${hosts[@]}" "${redis_pids[@]}" 2>/dev/null || true
done
echo "logs: $LOGS"
