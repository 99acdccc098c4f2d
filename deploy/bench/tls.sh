#!/usr/bin/env bash
# Produce and replay throughput with TLS off and on, alternating, in one run (the README's
# "TLS" figures): a fresh local 3-broker cluster (deploy/local-cluster.sh) per measurement,
# release build, RF 3.
#
#   deploy/bench/tls.sh [ROUNDS]        (default 2 rounds of: plaintext, then TLS)
#
# Each measurement produces 200,000 records of 1 KiB to a 1-partition topic
# (`rafka bench produce --create`) and replays them (`rafka bench consume`); the TLS runs use
# a CA and broker certificate made here with openssl, TLS between brokers included. Prints
# one line per measurement. RAFKA_BIN / RAFKA_BROKER_BIN name the binaries (default
# target/release).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
rounds="${1:-2}"
target="${CARGO_TARGET_DIR:-$repo/target}"
rafka="${RAFKA_BIN:-$target/release/rafka}"
export RAFKA_BROKER_BIN="${RAFKA_BROKER_BIN:-$target/release/rafka-broker}"
work="$(mktemp -d)"
trap 'RAFKA_DATA="$work/data" "$repo/deploy/local-cluster.sh" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# A CA and one certificate for every broker (127.0.0.1, both key usages).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench-ca" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=broker" \
    -keyout "$work/broker.key" -out "$work/broker.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$work/ext"
openssl x509 -req -in "$work/broker.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 2 -extfile "$work/ext" -out "$work/broker.pem" 2>/dev/null

measure() { # mode: plain or tls
    local mode=$1 tls=() produce consume
    rm -rf "$work/data"
    if [[ "$mode" == tls ]]; then
        export RAFKA_TLS__CERT_FILE="$work/broker.pem" RAFKA_TLS__KEY_FILE="$work/broker.key"
        export RAFKA_TLS__CLIENT_CA_FILE="$work/ca.pem"
        tls=(--tls-ca "$work/ca.pem")
    fi
    RAFKA_DATA="$work/data" "$repo/deploy/local-cluster.sh" up >/dev/null
    unset RAFKA_TLS__CERT_FILE RAFKA_TLS__KEY_FILE RAFKA_TLS__CLIENT_CA_FILE
    produce="$("$rafka" --bootstrap 127.0.0.1:9092 "${tls[@]}" --output json bench produce tb \
        --create --records 200000 --record-size 1024)"
    consume="$("$rafka" --bootstrap 127.0.0.1:9092 "${tls[@]}" --output json bench consume tb)"
    RAFKA_DATA="$work/data" "$repo/deploy/local-cluster.sh" down >/dev/null
    python3 -c '
import json, sys
p, c = json.loads(sys.argv[2]), json.loads(sys.argv[3])
print("%-5s produce %.1f MB/s (p50 %.2f ms)   replay %.1f MB/s" % (
    sys.argv[1], p["mb_per_sec"], p["latency_us"]["p50"] / 1000, c["mb_per_sec"]))
' "$mode" "$produce" "$consume"
}

for ((i = 1; i <= rounds; i++)); do
    measure plain
    measure tls
done
