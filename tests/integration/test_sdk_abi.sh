#!/bin/bash
# The pkg-config file of the SDK names the ABI that include/edgewatch/plugin.h
# defines (issue 14 item 17: it said 1.0 while the header said 1.2), read with
# pkg-config itself from the file the build generated for installation.
# Usage: test_sdk_abi.sh SOURCE_DIR BUILD_DIR
set -u
src=$1 build=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
header="$src/include/edgewatch/plugin.h"
pc_dir="$build/meson-private"
[ -f "$pc_dir/edgewatch-plugin.pc" ] || fail "no $pc_dir/edgewatch-plugin.pc: was the build configured?"
for part in major minor; do
  upper=$(echo "$part" | tr a-z A-Z)
  want=$(sed -n "s/^#define EW_ABI_${upper} \([0-9][0-9]*\)\$/\1/p" "$header")
  [ -n "$want" ] || fail "no #define EW_ABI_${upper} in $header"
  got=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --variable="abi_$part" edgewatch-plugin) \
    || fail "pkg-config cannot read edgewatch-plugin from $pc_dir"
  [ "$got" = "$want" ] || fail "edgewatch-plugin.pc says abi_$part=$got, but $header says EW_ABI_${upper} $want"
  echo "ok: abi_$part = $want in both"
done
