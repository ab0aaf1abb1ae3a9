#!/bin/bash
# The plugin template (tools/plugin-template) lets a plugin use POSIX
# functions: its c_std=c11 alone hid them (strdup, clock_gettime, fileno...),
# so a plugin using them failed with -Werror (issue 14 item 17). Builds a copy
# of the template, with one more source file that calls such functions,
# against the SDK headers of this tree (a pkg-config file made from the build's).
# Usage: test_template_posix.sh SOURCE_DIR BUILD_DIR
set -u
src=$1 build=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$work"' EXIT
mkdir "$work/pc"
sed -e "s|^prefix=.*|prefix=$src|" -e "s|^plugindir=.*|plugindir=$work/plugins|" \
  "$build/meson-private/edgewatch-plugin.pc" >"$work/pc/edgewatch-plugin.pc" || fail "no pkg-config file in $build"
cp -r "$src/tools/plugin-template" "$work/band"
cat >"$work/band/posix_probe.c" <<'C'
/* Calls a few POSIX functions a plugin commonly needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int band_posix_probe(void);
int band_posix_probe(void)
{
    struct timespec t;
    char *s = strdup("x");
    int rc = clock_gettime(CLOCK_MONOTONIC, &t) + fileno(stdout) + (int)getpid() + (s ? 0 : 1);
    free(s);
    return rc;
}
C
sed -i "s/shared_module('detector_band', 'band.c',/shared_module('detector_band', 'band.c', 'posix_probe.c',/" \
  "$work/band/meson.build"
grep -q posix_probe "$work/band/meson.build" || fail "cannot add the probe to the template's meson.build"
PKG_CONFIG_PATH="$work/pc" meson setup "$work/band/build" "$work/band" -Dwerror=true >"$work/log" 2>&1 \
  || { cat "$work/log"; fail "template setup"; }
meson compile -C "$work/band/build" >>"$work/log" 2>&1 || { cat "$work/log"; fail "the template hides POSIX declarations"; }
echo "ok: the template builds a plugin that uses POSIX functions"
