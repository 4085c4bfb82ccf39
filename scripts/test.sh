#!/usr/bin/env bash
# The test command: unit tests, the single integration binary, and doc tests.
# Needs PostgreSQL (127.0.0.1:5432, postgres, trust) and MariaDB (127.0.0.1:3306, root).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/investigator-target}"
export INVESTIGATOR_TEST_PG="${INVESTIGATOR_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"
export INVESTIGATOR_TEST_MYSQL="${INVESTIGATOR_TEST_MYSQL:-mysql://root@127.0.0.1:3306/test}"
cargo test --locked --all-targets "$@"
