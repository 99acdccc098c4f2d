#!/usr/bin/env bash
# The producer figures of the README's "Producer throughput and latency" table, in one run
# against the local 3-broker cluster (deploy/local-cluster.sh up, release build):
#
#   deploy/bench/producer.sh [OUT.jsonl]
#
# Creates topics bp1 (1 partition, 1 KiB records only), bp12 (12), bp100 (1, 100 B records)
# and be2e (1), all RF 3, unless they exist;
# prints each `rafka bench` summary as text on stderr and appends its JSON to OUT.jsonl
# (default: producer-bench.jsonl). The disk baseline is measured in $BENCH_DISK_DIR
# (default /tmp; put it on the brokers' disk). RAFKA_BIN names the rafka CLI (default
# target/release/rafka).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-producer-bench.jsonl}"
rafka="${RAFKA_BIN:-$repo/target/release/rafka}"
disk="${BENCH_DISK_DIR:-/tmp}"
metrics="127.0.0.1:9644,127.0.0.1:9645,127.0.0.1:9646"
common=(--bootstrap 127.0.0.1:9092 --output json)

run() { # label, then the bench arguments
    local label=$1
    shift
    echo "# $label: rafka bench $*" >&2
    "$rafka" "${common[@]}" bench "$@" | tee -a "$out" | python3 -c '
import json, sys
v = json.load(sys.stdin)
lat = v["latency_us"]
line = "  %.0f records/s, %.1f MB/s, p50 %.2f ms, p99 %.2f ms" % (
    v["records_per_sec"], v["mb_per_sec"], lat["p50"] / 1000, lat["p99"] / 1000)
if "broker_cpu_ms_per_mb" in v:
    line += ", brokers %.1f CPU-ms/MB" % v["broker_cpu_ms_per_mb"]
if "disk_baseline" in v:
    line += ", %.0f%% of the disk" % (100 * v["disk_baseline"]["fraction_used"])
print(line, file=sys.stderr)
'
}

produce=(produce --broker-metrics "$metrics" --disk-baseline "$disk")
run "1 KiB, 1 partition, window 1000" "${produce[@]}" bp1 --create --partitions 1 \
    --records 200000 --record-size 1024
run "1 KiB, 12 partitions, window 1000" "${produce[@]}" bp12 --create --partitions 12 \
    --records 300000 --record-size 1024
run "1 KiB, 12 partitions, window 4000" "${produce[@]}" bp12 --records 300000 \
    --record-size 1024 --window 4000
run "100 B, 1 partition, window 1000" "${produce[@]}" bp100 --create --partitions 1 \
    --records 1000000 --record-size 100
run "1 KiB, 1 partition, one at a time" produce bp1 --records 3000 --record-size 1024 --sync
run "1 KiB, 1 partition, 5,000/s open loop, linger 0" produce bp1 --records 50000 \
    --record-size 1024 --rate 5000 --linger-ms 0
run "1 KiB, 1 partition, 5,000/s open loop, linger 5 ms" produce bp1 --records 50000 \
    --record-size 1024 --rate 5000
"$rafka" --bootstrap 127.0.0.1:9092 topic create be2e --partitions 1 --replication-factor 3 \
    2>/dev/null || true
run "end to end, 100 B at 5,000/s" e2e be2e --rate 5000 --seconds 10 --record-size 100
run "replay 1 KiB from offset 0" consume bp1
