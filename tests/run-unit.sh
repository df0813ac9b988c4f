#!/bin/sh
# Run each cmocka test binary given as an argument, show its output, and
# finish with one summary line; exit non-zero if any binary failed.
set -u

binaries=0 failed_bins="" passed=0 failed=0
for t in "$@"; do
        binaries=$((binaries + 1))
        out=$("$t" 2>&1)
        rc=$?
        printf '%s\n' "$out"
        p=$(printf '%s\n' "$out" | sed -n 's/.*\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' | tail -n 1)
        f=$(printf '%s\n' "$out" | sed -n 's/.*\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' | tail -n 1)
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0}))
        if [ "$rc" -ne 0 ]; then
                failed_bins="$failed_bins $(basename "$t")"
                [ -z "$f" ] && failed=$((failed + 1))
        fi
done

echo "unit tests: $binaries programs, $passed passed, $failed failed"
if [ -n "$failed_bins" ]; then
        echo "unit tests FAILED in:$failed_bins"
        exit 1
fi
