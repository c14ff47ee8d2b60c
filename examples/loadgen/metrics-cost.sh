#!/usr/bin/env bash
# Metrics on vs off, side by side in one run: two standalone release instances, the same load
# against each in turn (alternating which goes first), and for each run the server's own CPU
# time (utime+stime from /proc) per operation next to throughput and latency.
set -u
# Needs: cargo build --release -p host -p loadgen; cargo xtask build-rules; bc.
cd "$(dirname "$0")/../.."
B=target/release/gamehost
L=target/release/loadgen
common="RULES_DIR=target/rules EVENTS_PER_SECOND=100000 EVENT_BURST=100000 RUST_LOG=warn"
env $common APP_PORT=4001 METRICS=true  $B > /tmp/bench/on.log 2>&1 &
ON=$!
env $common APP_PORT=4002 METRICS=false $B > /tmp/bench/off.log 2>&1 &
OFF=$!
sleep 4
# Prometheus would scrape the instance with metrics every 5 s.
(while true; do curl -s -o /dev/null http://127.0.0.1:4001/metrics; sleep 5; done) &
SCRAPER=$!
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
run() { # name port pid mode
  local before after ops out
  before=$(cpu $3)
  if [ "$4" = relay ]; then
    out=$($L pingpong --urls http://127.0.0.1:$2 --pairs 50 --secs 15 2>/dev/null)
  else
    out=$($L play --urls http://127.0.0.1:$2 --players 200 --secs 15 --ramp-secs 2 2>/dev/null)
  fi
  after=$(cpu $3)
  ops=$(echo "$out" | grep "round trips" | sed -E 's/round trips: ([0-9]+) \(([0-9.]+)\/s\); p50 ([0-9.]+) ms, p99 ([0-9.]+) ms.*/\1 \2 \3 \4/')
  set -- $1 $4 $ops $((after - before))
  # name mode count rate p50 p99 ticks
  echo "$1 $2 count=$3 rate=$4/s p50=$5ms p99=$6ms cpu_us_per_op=$(echo "scale=2; $7 * 10000 / $3" | bc)"
}
for round in 1 2 3 4; do
  if [ $((round % 2)) = 1 ]; then order="on off"; else order="off on"; fi
  for mode in relay actions; do
    for side in $order; do
      if [ $side = on ]; then run on 4001 $ON $mode; else run off 4002 $OFF $mode; fi
    done
  done
done
kill $ON $OFF $SCRAPER
