#!/usr/bin/env bash
# Checks that the binary and every plugin were built hardened: position
# independent, full RELRO (BIND_NOW + GNU_RELRO), non-executable stack, stack
# protector, and _FORTIFY_SOURCE (fortified libc calls) in the optimised build.
set -euo pipefail
build=$1
fail=0
check() { # file
  local f=$1 dyn hdr prog syms before=$fail
  hdr=$(readelf -h "$f")
  dyn=$(readelf -d "$f")
  prog=$(readelf -lW "$f")
  syms=$(readelf --dyn-syms -W "$f")
  grep -q 'Type: *DYN' <<<"$hdr" || { echo "FAIL $f: not position independent"; fail=1; }
  grep -qE 'BIND_NOW|FLAGS.*NOW' <<<"$dyn" || { echo "FAIL $f: no BIND_NOW (full RELRO)"; fail=1; }
  grep -q 'GNU_RELRO' <<<"$prog" || { echo "FAIL $f: no GNU_RELRO segment"; fail=1; }
  [[ "$(grep -E 'GNU_STACK' <<<"$prog")" == *RWE* ]] && { echo "FAIL $f: executable stack"; fail=1; }
  grep -q '__stack_chk_fail' <<<"$syms" || { echo "FAIL $f: no stack protector"; fail=1; }
  [ "$fail" = "$before" ] && echo "ok   $f"
  return 0
}
bin="$build/core/edgewatch"
check "$bin"
grep -q 'PIE' <<<"$(readelf -d "$bin")" || { echo "FAIL $bin: FLAGS_1 lacks PIE"; fail=1; }
# Fortified calls (e.g. __snprintf_chk) prove _FORTIFY_SOURCE in an optimised build.
if grep -q -- '-D_FORTIFY_SOURCE=3' "$build/build.ninja" 2>/dev/null; then
  # (into a variable first: with pipefail, grep -q closing the pipe early fails readelf)
  syms=$(readelf --dyn-syms -W "$bin")
  grep -q '_chk@' <<<"$syms" || { echo "FAIL $bin: no fortified libc calls"; fail=1; }
  echo "ok   _FORTIFY_SOURCE=3 in use"
else
  echo "note: this build does not use _FORTIFY_SOURCE (sanitizers or -O0)"
fi
while IFS= read -r -d '' so; do check "$so"; done < <(find "$build/plugins" -name '*.so' -print0)
exit $fail
