#!/bin/bash
# SPDX-License-Identifier: MIT
# run.sh DIR NAME PYTEST-ARGS...
#
# Run the integration tests named in PYTEST-ARGS STRESS_ROUNDS times (default
# once) with their figures printed, keeping the output in DIR/NAME.log and
# appending the figure lines and expected failures to DIR/summary.txt.
# Exits non-zero if any round failed.
set -u -o pipefail

dir=$1 name=$2
shift 2
rounds=${STRESS_ROUNDS:-1}
mkdir -p "$dir"
log="$dir/$name.log"
: >"$log"
status=0
for ((i = 1; i <= rounds; i++)); do
	echo "== $name: round $i of $rounds" | tee -a "$log"
	/usr/bin/python3 -m pytest -p no:cacheprovider -q -s -rsxX "$@" 2>&1 | tee -a "$log" ||
		status=1
done
{
	echo "== $name ($rounds round(s)): $([ $status = 0 ] && echo passed || echo FAILED)"
	grep -E '^(crash|secrets|hostile\[[^]]*\]):|^(XFAIL|XPASS|FAILED|ERROR) ' "$log" |
		cut -c1-400
} >>"$dir/summary.txt"
exit $status
