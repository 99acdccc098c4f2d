#!/usr/bin/env bash
# A 3-broker rafka cluster on this machine, for trying things out.
#
#   deploy/local-cluster.sh up       start brokers 1-3 and wait until all are ready
#   deploy/local-cluster.sh down     stop them gracefully (SIGTERM), data kept
#   deploy/local-cluster.sh status   one line per broker
#   deploy/local-cluster.sh restart  rolling restart: one broker at a time, each stopped
#                                    gracefully, started, ready, and the cluster whole again
#                                    (`rafka cluster health --wait`) before the next
#
# Brokers listen on 127.0.0.1:9092-9094 (clients and Raft), HTTP (/metrics, /healthz,
# /readyz) on 127.0.0.1:9644-9646, data and logs under ./rafka-data/N (relative to the
# current directory; RAFKA_DATA overrides). The binary: $RAFKA_BROKER_BIN, else
# target/release/rafka-broker, else target/debug/rafka-broker, else it is built (release).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
data="${RAFKA_DATA:-$PWD/rafka-data}"
ids=(1 2 3)
initial="1=127.0.0.1:9092,2=127.0.0.1:9093,3=127.0.0.1:9094"

grpc_port() { echo $((9091 + $1)); }
http_port() { echo $((9643 + $1)); }

binary() {
    if [[ -n "${RAFKA_BROKER_BIN:-}" ]]; then
        echo "$RAFKA_BROKER_BIN"
    elif [[ -x "$repo/target/release/rafka-broker" ]]; then
        echo "$repo/target/release/rafka-broker"
    elif [[ -x "$repo/target/debug/rafka-broker" ]]; then
        echo "$repo/target/debug/rafka-broker"
    else
        echo "building rafka-broker (release; the first build compiles RocksDB and takes a while)" >&2
        "$repo/deploy/prereqs.sh" >&2
        (cd "$repo" && cargo build --release --workspace --bins >&2)
        echo "$repo/target/release/rafka-broker"
    fi
}

# HTTP status code of GET $2 on 127.0.0.1:$1, or 000; bash's /dev/tcp, so no curl needed.
http_status() {
    local port=$1 path=$2 line
    if ! exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
        echo 000
        return
    fi
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
    read -r -t 2 line <&3 || line=""
    exec 3<&- 3>&-
    line="${line#HTTP/* }"
    echo "${line:0:3}"
}

# The rafka CLI next to the broker binary ($RAFKA_CLI_BIN overrides).
cli() {
    local bin
    bin="${RAFKA_CLI_BIN:-$(dirname "$(binary)")/rafka}"
    "$bin" --bootstrap "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094" "$@"
}

pid_of() {
    local f="$data/$1/broker.pid"
    [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

start_one() {
    local id=$1 bin=$2
    if pid="$(pid_of "$id")"; then
        echo "broker $id already running (pid $pid)"
        return
    fi
    mkdir -p "$data/$id"
    # RAFKA_DATA is this script's; the broker would read it as an unknown config key.
    nohup env -u RAFKA_DATA -u RAFKA_CLI_BIN "$bin" --node-id "$id" \
        --listen "127.0.0.1:$(grpc_port "$id")" \
        --http "127.0.0.1:$(http_port "$id")" \
        --data-dir "$data/$id/data" \
        --initial-cluster "$initial" \
        >>"$data/$id/broker.log" 2>&1 &
    echo $! >"$data/$id/broker.pid"
}

# Waits (60 s at most) until broker $1 answers /readyz with 200.
wait_ready() {
    local id=$1 deadline=$((SECONDS + 60))
    until [[ "$(http_status "$(http_port "$id")" /readyz)" == 200 ]]; do
        if ! pid_of "$id" >/dev/null; then
            echo "broker $id exited; last lines of $data/$id/broker.log:" >&2
            tail -n 20 "$data/$id/broker.log" >&2
            exit 1
        fi
        if ((SECONDS > deadline)); then
            echo "broker $id not ready after 60 s; see $data/$id/broker.log" >&2
            exit 1
        fi
        sleep 0.2
    done
}

# Sends SIGTERM to broker $1 (it hands its leaderships over and exits) and waits for it;
# SIGKILL after 30 s.
stop_one() {
    local id=$1 pid deadline=$((SECONDS + 30))
    if pid="$(pid_of "$id")"; then
        kill -TERM "$pid"
    fi
    while pid="$(pid_of "$id")"; do
        if ((SECONDS > deadline)); then
            echo "broker $id (pid $pid) did not stop in 30 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.1
    done
    rm -f "$data/$id/broker.pid"
}

up() {
    local bin
    bin="$(binary)"
    for id in "${ids[@]}"; do
        start_one "$id" "$bin"
    done
    for id in "${ids[@]}"; do
        wait_ready "$id"
    done
    echo "rafka cluster ready: bootstrap 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
}

down() {
    for id in "${ids[@]}"; do
        if pid="$(pid_of "$id")"; then
            kill -TERM "$pid"
        fi
    done
    for id in "${ids[@]}"; do
        stop_one "$id"
    done
    echo "rafka cluster stopped (data kept in $data)"
}

# One broker at a time: wait until the cluster is whole (every partition led and in sync),
# stop the broker gracefully, start it (on a new binary, if one was built), wait until it
# is ready. Clients keep producing and consuming throughout.
restart() {
    local bin
    bin="$(binary)"
    for id in "${ids[@]}"; do
        if ! cli cluster health --wait 120000 >/dev/null; then
            echo "cluster not healthy; stopped before broker $id: $(cli cluster health)" >&2
            exit 1
        fi
        echo "restarting broker $id"
        stop_one "$id"
        start_one "$id" "$bin"
        wait_ready "$id"
    done
    if ! cli cluster health --wait 120000 >/dev/null; then
        echo "cluster not healthy after the restart: $(cli cluster health)" >&2
        exit 1
    fi
    echo "rafka cluster restarted, one broker at a time"
}

status() {
    for id in "${ids[@]}"; do
        if pid="$(pid_of "$id")"; then
            local ready
            ready="$(http_status "$(http_port "$id")" /readyz)"
            [[ "$ready" == 200 ]] && ready=ready || ready="not ready ($ready)"
            echo "broker $id: running (pid $pid), 127.0.0.1:$(grpc_port "$id"), $ready"
        else
            echo "broker $id: stopped"
        fi
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    restart) restart ;;
    *)
        echo "usage: $0 up|down|status|restart" >&2
        exit 2
        ;;
esac
