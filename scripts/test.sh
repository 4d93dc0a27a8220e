#!/usr/bin/env bash
# Runs every Strata test: brings up MariaDB and PostgreSQL, then cargo nextest
# over the whole workspace (debug build, persistent target directory), then the
# web UI's browser tests in headless Chromium.
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
cargo nextest run --workspace --no-fail-fast "$@"
# The web UI: rebuilt from ui/ (it must match the bundle the binary embeds),
# then driven in headless Chromium against the strata binary just built.
scripts/ui.sh check
# nextest built the strata binary for the server's tests, with the workspace's
# feature set; building it alone would rebuild DataFusion and deltalake.
STRATA_BIN="$CARGO_TARGET_DIR/debug/strata"
[ -x "$STRATA_BIN" ] || { echo "test: $STRATA_BIN was not built by the test run" >&2; exit 1; }
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "test: installing chromium for the browser tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test: the browser tests need Chromium: sudo apt-get install -y chromium" >&2
    exit 1
  fi
fi
STRATA_BIN="$STRATA_BIN" CHROMIUM_BIN="$(command -v chromium)" node --test ui/tests/
