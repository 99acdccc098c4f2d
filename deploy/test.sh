#!/usr/bin/env bash
# The test command: installs what the build needs, then checks formatting, runs clippy with
# warnings as errors, and runs every test of the workspace. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/prereqs.sh

# Tests build in the dev profile: RocksDB's C++ at -O0 compiles faster than at -O3 in
# release, and the tests do not lean on RocksDB's speed.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line over every test binary (cargo prints one `test result` per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
