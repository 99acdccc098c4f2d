#!/usr/bin/env bash
# The test command: installs what the build needs, then checks formatting, runs clippy with
# warnings as errors, and runs every test of the workspace. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/prereqs.sh

# Tests build in the dev profile: RocksDB's C++ at -O0 compiles several times faster than
# the release build, and the tests do not lean on RocksDB's speed.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
