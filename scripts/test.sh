#!/usr/bin/env bash
# Runs lifeboat's tests: installs the real servers they use if missing, then cargo test
# (unit, property and integration tests against etcd 3.4/3.5, S3 and file:// stores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --all-targets "$@"
