#!/usr/bin/env bash
# Builds the web UI (ui/) into ui/dist, which the strata binary embeds: npm
# installs the locked packages from the npm registry, esbuild bundles them.
# `scripts/ui.sh check` also fails when the committed bundle differs from the
# sources (rebuild it with scripts/ui.sh and commit ui/dist).
set -euo pipefail
cd "$(dirname "$0")/../ui"
command -v npm >/dev/null \
  || { echo "ui: npm is missing: apt-get install -y nodejs npm" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
if [ "${1:-}" = "check" ]; then
  changed="$(git status --porcelain -- dist)" \
    || { echo "ui: check needs a git checkout, to compare ui/dist with what is committed" >&2; exit 1; }
  if [ -n "$changed" ]; then
    echo "ui: ui/dist does not match ui/src: run scripts/ui.sh and commit ui/dist" >&2
    echo "$changed" >&2
    exit 1
  fi
fi
