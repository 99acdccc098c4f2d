#!/usr/bin/env bash
# Makes sure the build and test prerequisites are present: a Rust toolchain, a C++ compiler
# and libclang (RocksDB's Rust crate compiles RocksDB's C++ and generates bindings with
# libclang), and kcat (librdkafka's command-line client, which the Kafka-protocol tests run).
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
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 \
    && ! ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 \
    && [ -z "${LIBCLANG_PATH:-}" ]; then
    missing+=(libclang-dev)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "rafka: installing build prerequisites: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
fi

echo "rafka: missing build prerequisites: ${missing[*]}" >&2
echo "       on Debian/Ubuntu run: sudo apt-get install -y ${missing[*]}" >&2
exit 1
