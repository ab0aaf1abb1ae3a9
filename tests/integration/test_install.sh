#!/usr/bin/env bash
# Installs edgewatch into a temporary prefix and checks what a user of the
# installed files relies on: the binary finds its plugins with no environment
# variable, the SDK headers and pkg-config files work, and the plugin template
# builds out of tree, passes its harness test and runs in a pipeline.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

fail() { echo "FAIL: $*" >&2; exit 1; }

meson setup "$work/build" "$src" --prefix="$prefix" -Dtests=disabled -Dwerror=true >"$work/setup.log" 2>&1 \
  || { cat "$work/setup.log"; fail "meson setup"; }
meson compile -C "$work/build" >"$work/compile.log" 2>&1 || { cat "$work/compile.log"; fail "compile"; }
meson install -C "$work/build" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "install"; }

bin="$prefix/bin/edgewatch"
[ -x "$bin" ] || fail "no installed binary at $bin"
plugins=$(env -u EDGEWATCH_PLUGIN_PATH "$bin" plugins)
for p in synth csv zscore jsonl null; do
  grep -qE "^[a-z]+ +$p " <<<"$plugins" || fail "installed binary does not list plugin $p:
$plugins"
done
echo "ok: installed binary lists its plugins with no EDGEWATCH_PLUGIN_PATH"

pcdir=$(dirname "$(find "$prefix" -name edgewatch-plugin.pc | head -n1)")
[ -n "$pcdir" ] || fail "no edgewatch-plugin.pc installed"
export PKG_CONFIG_PATH="$pcdir"
[ -f "$prefix/include/edgewatch/plugin.h" ] || fail "SDK header not installed"
[ -f "$prefix/include/edgewatch/testing.h" ] || fail "harness header not installed"
installed_plugindir=$(pkg-config --variable=plugindir edgewatch-plugin)
[ -f "$installed_plugindir/detector_zscore.so" ] || fail "plugindir from pkg-config holds no zscore"
echo "ok: SDK headers and pkg-config files installed"

# The template builds out of tree against the installed SDK and passes its test.
cp -r "$src/tools/plugin-template" "$work/band"
meson setup "$work/band/build" "$work/band" --prefix="$prefix" -Dwerror=true >"$work/band.log" 2>&1 \
  || { cat "$work/band.log"; fail "template setup"; }
meson compile -C "$work/band/build" >>"$work/band.log" 2>&1 || { cat "$work/band.log"; fail "template compile"; }
meson test -C "$work/band/build" >>"$work/band.log" 2>&1 || { cat "$work/band.log" "$work/band/build/meson-logs/testlog.txt"; fail "template test"; }
grep -q "Ok: *1" "$work/band/build/meson-logs/testlog.txt" || fail "template test did not run"
echo "ok: plugin template builds out of tree and passes its harness test"

# And it runs in a pipeline from plugin_path, next to the installed plugins.
mkdir -p "$work/extra"
cp "$work/band/build/detector_band.so" "$work/extra/"
chmod 0755 "$work/extra" "$work/extra/detector_band.so"
cat >"$work/p.ini" <<INI
[pipeline]
http = off
plugin_path = $work/extra
[source.gen]
plugin = synth
channels = a
rate = 0
count = 500
amplitude = 10
[detector.limits]
plugin = band
input = gen
low = -5
high = 5
[sink.out]
plugin = jsonl
input = limits
path = $work/out.jsonl
INI
env -u EDGEWATCH_PLUGIN_PATH "$bin" run "$work/p.ini" 2>"$work/run.log" || { cat "$work/run.log"; fail "pipeline with the band plugin"; }
lines=$(wc -l <"$work/out.jsonl")
[ "$lines" -eq 500 ] || fail "expected 500 output lines, got $lines"
grep -q '"band_distance"' "$work/out.jsonl" || fail "band_distance channel missing from output"
echo "ok: out-of-tree plugin runs from plugin_path"
echo "install test passed"
