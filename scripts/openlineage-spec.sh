#!/usr/bin/env bash
# Fetches the OpenLineage spec's JSON Schemas (OpenLineage.json and the facet
# schemas, release 1.50.0) as shipped in the crates.io package
# datafusion-openlineage 0.0.12, checks the package's digest, and prints the
# folder that holds them. Cached under $CARGO_TARGET_DIR.
set -euo pipefail
version=0.0.12
digest=c3174cdfb83e6ada02b64b2684f696ca382886cae5ce98d12ec802bbb1392129
cache="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}/openlineage-spec-$version"
spec="$cache/datafusion-openlineage-$version/tests/schemas/openlineage"
if [ ! -f "$spec/OpenLineage.json" ]; then
  mkdir -p "$cache"
  crate="$cache/datafusion-openlineage-$version.crate"
  curl -sSfL "https://static.crates.io/crates/datafusion-openlineage/datafusion-openlineage-$version.crate" -o "$crate" \
    || { echo "openlineage-spec: could not download datafusion-openlineage $version from crates.io; check the network to the registry" >&2; exit 1; }
  echo "$digest  $crate" | sha256sum -c --quiet - \
    || { echo "openlineage-spec: datafusion-openlineage $version does not have the expected digest" >&2; exit 1; }
  tar xzf "$crate" -C "$cache"
fi
echo "$spec"
