#!/usr/bin/env bash
# Runs every Strata test: brings up MariaDB and PostgreSQL, then cargo nextest
# over the whole workspace (debug build, persistent target directory).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
scripts/services.sh
# The OpenLineage JSON Schemas the emitted events are validated against.
OPENLINEAGE_SPEC_DIR="$(scripts/openlineage-spec.sh)"
export OPENLINEAGE_SPEC_DIR
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "test: installing cargo-nextest" >&2
  cargo install cargo-nextest --locked
fi
exec cargo nextest run --workspace --no-fail-fast "$@"
