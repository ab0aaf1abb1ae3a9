#!/bin/bash
# The usage example at the top of include/edgewatch/testing.h compiles against
# the SDK headers (issue 14 item 17: it called ew_harness_process with five
# arguments). The example's lines are cut out of the comment, put in a function
# with the variables it assumes, and compiled with warnings as errors.
# Usage: test_sdk_example.sh SOURCE_DIR [HEADER]   (HEADER defaults to the SDK's)
set -u
src=$1
header=${2:-$src/include/edgewatch/testing.h}
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$work"' EXIT
example=$(sed -n '1,/\*\//{s/^ \*     //p}' "$header")
[ -n "$example" ] || fail "no indented example found in the first comment of $header"
{
  echo '#include <edgewatch/testing.h>'
  echo '#include <stdio.h>'
  echo 'void example(size_t n, const int64_t *ts, const double *values);'
  echo 'void example(size_t n, const int64_t *ts, const double *values)'
  echo '{'
  echo "$example"
  echo '    (void)scores;'
  echo '}'
} >"$work/example.c"
cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -fsyntax-only -I"$src/include" "$work/example.c" \
  2>"$work/cc.log" || { cat "$work/example.c" "$work/cc.log"; fail "the example in $header does not compile"; }
echo "ok: the example in $header compiles"
