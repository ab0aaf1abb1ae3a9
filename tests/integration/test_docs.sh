#!/usr/bin/env bash
# Fails when docs/configuration.md differs from what the option tables generate.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$1
if ! diff -u "$src/docs/configuration.md" <("$src/tools/gen-config-docs" "$build" -); then
  echo "docs/configuration.md is out of date: run tools/gen-config-docs" >&2
  exit 1
fi
echo "docs/configuration.md is current"
