#!/usr/bin/env bash
# Makes sure the build prerequisites are present: a Rust toolchain, a C++ compiler and
# libclang (RocksDB's Rust crate compiles RocksDB's C++ and generates bindings with libclang).
# With --test also what the tests run: kcat (librdkafka's command-line client) and, in a
# Python venv of their own ($RAFKA_VENV, default ~/.cache/rafka-venv), the confluent-kafka
# and kafka-python clients and kubernetes-validate, systemd-analyze and promtool (deploy/'s
# manifests, unit and rules are checked), and Docker (docker.io, docker-compose, debootstrap)
# for the container image and Compose suite.
# Installs what is missing with apt-get when running as root on Debian/Ubuntu; otherwise
# stops with a message saying exactly what to install.
set -euo pipefail

missing=()
command -v cargo >/dev/null 2>&1 || {
    echo "rafka: cargo not found. Install Rust (https://rustup.rs) and re-run." >&2
    exit 1
}
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v clang >/dev/null 2>&1 || missing+=(clang)
tests=false
[ "${1:-}" = "--test" ] && tests=true
if $tests; then
    command -v kcat >/dev/null 2>&1 || missing+=(kcat)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
    # `systemd-analyze verify` checks the systemd unit (deploy/systemd/).
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    # `promtool check` checks the Prometheus config and alert rules (deploy/prometheus/).
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    # The Docker suite: a dockerd of its own, Compose v1 and a debootstrapped base image.
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
fi
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 \
    && ! ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 \
    && [ -z "${LIBCLANG_PATH:-}" ]; then
    missing+=(libclang-dev)
fi

# The Kafka clients the tests drive from Python, and kubernetes-validate (the Kubernetes
# manifests' schema check, offline), in a venv of their own (RAFKA_VENV).
venv="${RAFKA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/rafka-venv}"
python_clients() {
    "$venv/bin/python" -c 'import confluent_kafka, kafka, kubernetes_validate' >/dev/null 2>&1 \
        && return 0
    echo "rafka: installing the Python test tools into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'confluent-kafka==2.16.*' 'kafka-python==3.0.*' \
        'kubernetes-validate==1.37.*'
}

if [ ${#missing[@]} -ne 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "rafka: installing prerequisites: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "rafka: missing prerequisites: ${missing[*]}" >&2
        echo "       on Debian/Ubuntu run: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi
if $tests; then
    python_clients
fi
