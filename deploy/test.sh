#!/usr/bin/env bash
# The test command: installs what the build needs, then checks formatting, runs clippy with
# warnings as errors, and runs every test of the workspace, fault suite included. CI runs
# exactly this.
#
# Tests build the broker with the fault suite's features: `failpoints` (crash points armed
# over HTTP) and `lazy-io` (unsynced writes die with the process, as in a power cut). Both are
# test-only; release builds leave them out. When this machine allows it (root, or user
# namespaces, and iproute2), the tests run in a network namespace of their own, so brokers
# and the fault proxies touch only a private loopback — all but the Docker suite, which runs
# after them on this machine's loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/prereqs.sh --test

# Tests build in the dev profile: RocksDB's C++ at -O0 compiles faster than at -O3 in
# release, and the tests do not lean on RocksDB's speed.
cargo fmt --all --check
features=rafka-broker/failpoints,rafka-broker/lazy-io
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --locked --features "$features" -- -D warnings
# The broker alone: rafka-raft without its test-only API (`test-hooks`, which the workspace
# build turns on for rafka-raft's own tests).
cargo clippy -p rafka-broker --all-targets --locked -- -D warnings
# The client library without the CLI's dependencies (`default-features = false`).
cargo clippy -p rafka-client --lib --no-default-features --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
test=(cargo test --workspace --locked --features "$features")
# Build first: inside the namespace there is no network to fetch anything.
"${test[@]}" --no-run
if command -v ip >/dev/null && unshare --net --map-root-user true 2>/dev/null; then
    echo "running the tests in a private network namespace"
    unshare --net --map-root-user -- sh -c 'ip link set lo up && exec "$@"' sh \
        "${test[@]}" --offline -- --skip compose_cluster_in_docker 2>&1 | tee "$log"
    # The Docker suite starts a dockerd of its own, which needs the real root (and, to build
    # its base image the first time, Debian's package mirror): it runs out here, its
    # containers on the host's loopback only.
    echo "running the Docker suite outside the namespace"
    "${test[@]}" --test docker 2>&1 | tee -a "$log"
else
    echo "no private network namespace here (needs root or user namespaces, and iproute2):" \
        "running the tests on this machine's loopback"
    "${test[@]}" 2>&1 | tee "$log"
fi
# One closing line over every test binary (cargo prints one `test result` per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
