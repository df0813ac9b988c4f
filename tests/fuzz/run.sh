#!/bin/sh
# Run the fuzz targets and summarise them; the make targets in fuzz.mk call this.
#
#   run.sh replay OUT TARGET...       run each committed seed once through
#                                     OUT/replay/TARGET (built without libFuzzer)
#   run.sh fuzz OUT SECONDS TARGET... run each libFuzzer target OUT/TARGET for
#                                     SECONDS; FUZZ_JOBS of them at a time
#   run.sh probe OUT CC FLAGS...      exit 0 if CC builds a libFuzzer binary
#
# Fuzzing writes new inputs to OUT/corpus/TARGET (listed first, so libFuzzer
# adds to it) and reads the committed seeds in tests/fuzz/corpus/TARGET; crash
# inputs go to OUT/artifacts/, each run's output to OUT/logs/TARGET.log.  One
# summary line per target: executions, executions per second, coverage
# (libFuzzer's `cov:`, edges reached) and features.  The exit status is
# non-zero if any target crashed, leaked, hung or printed a sanitizer report.
set -u

here=$(cd "$(dirname "$0")" && pwd)
seeds=$here/corpus

usage() {
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
}

# A dictionary of the words a target's input is made of, taken from the
# sources that define them, so it never lags behind the interface.
write_dict() {
        target=$1 dict=$2
        src=$here/../..
        case $target in
        fuzz_requests | fuzz_varlink_call | fuzz_verify_call)
                {
                        for w in method parameters oneway more upgrade continues error; do
                                printf '"\\"%s\\""\n' "$w"
                        done
                        printf '"true"\n"false"\n"null"\n'
                        sed -n 's/^method \([A-Za-z]*\).*/"io.apikeyd.Keys.\1"/p' \
                                "$src/apikeyd/io.apikeyd.Keys.varlink"
                        printf '"org.varlink.service.GetInfo"\n'
                        printf '"org.varlink.service.GetInterfaceDescription"\n'
                        printf '"org.varlink.service"\n"io.apikeyd.Keys"\n'
                        # Parameter names ("  name: string,") and enum values.
                        sed -n 's/^  \([a-z_]*\): .*/"\\"\1\\""/p' \
                                "$src/apikeyd/io.apikeyd.Keys.varlink" | sort -u
                        sed -n 's/^type [A-Za-z]* (\([a-z, ]*\))$/\1/p' \
                                "$src/apikeyd/io.apikeyd.Keys.varlink" |
                                tr -s ', ' '\n' | sed -n 's/^\([a-z]\{1,\}\)$/"\1"/p'
                } >"$dict"
                ;;
        fuzz_json_scan)
                printf '%s\n' '"true"' '"false"' '"null"' '"\\u"' '"\\ud83d\\ude00"' \
                        '"\\\""' '"1e"' '"-0."' '"\xc3\xa9"' '"\xed\xa0\x80"' '"{"' '"["' >"$dict"
                ;;
        fuzz_pam_reply)
                {
                        for w in parameters error continues valid code key id expires_at; do
                                printf '"\\"%s\\""\n' "$w"
                        done
                        # The codes Verify answers with, from the interface.
                        sed -n '/^type VerifyCode (/,/^)/p' "$src/apikeyd/io.apikeyd.Keys.varlink" |
                                tr -s ', ' '\n\n' | sed -n 's/^\([A-Z_]\{2,\}\)$/"\1"/p'
                        printf '%s\n' '"true"' '"false"' '"null"' '"\\u00"' \
                                '"9223372036854775808"' '"1e308"' '"\\ud83d\\ude00"'
                } >"$dict"
                ;;
        fuzz_config)
                sed -n 's/^#\([a-z_]*\) = \(.*\)/"\1"\n"\2"/p' \
                        "$src/apikeyd/apikeyd.conf.example" >"$dict"
                printf '"unlimited"\n"never"\n"yes"\n"no"\n" = "\n' >>"$dict"
                ;;
        *)
                return 1
                ;;
        esac
}

cmd_probe() {
        out=$1 cc=$2
        shift 2
        mkdir -p "$out" || return 1
        printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
                'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
                'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return d && n > 99; }' \
                >"$out/probe.c"
        "$cc" "$@" -o "$out/probe" "$out/probe.c" >/dev/null 2>&1 &&
                "$out/probe" -runs=1 >/dev/null 2>&1
        rc=$?
        rm -f "$out/probe" "$out/probe.c"
        return $rc
}

cmd_replay() {
        out=$1
        shift
        failed=""
        for t in "$@"; do
                if [ ! -d "$seeds/$t" ]; then
                        echo "fuzz replay: $t has no seed corpus in $seeds/$t" >&2
                        failed="$failed $t"
                        continue
                fi
                # Each input against a fresh keystore: replays do not depend on order.
                if ! FUZZ_REQUESTS_RESET=1 "$out/replay/$t" "$seeds/$t"; then
                        failed="$failed $t"
                fi
        done
        if [ -n "$failed" ]; then
                echo "fuzz replay FAILED in:$failed"
                return 1
        fi
        echo "fuzz replay: $# targets, every committed seed ran cleanly"
}

# The value after `key` in the last line of a log that has it.
stat_of() {
        sed -n "s/.*$2 *\\([0-9][0-9]*\\).*/\\1/p" "$1" | tail -n 1
}

summarise() {
        t=$1 log=$2 rc=$3
        execs=$(stat_of "$log" 'stat::number_of_executed_units:')
        rate=$(stat_of "$log" 'stat::average_exec_per_sec:')
        rss=$(stat_of "$log" 'stat::peak_rss_mb:')
        cov=$(stat_of "$log" ' cov:')
        ft=$(stat_of "$log" ' ft:')
        corp=$(stat_of "$log" ' corp:')
        status=ok
        if [ "$rc" -ne 0 ] ||
                grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|check failed:|^SUMMARY: ' \
                        "$log"; then
                status="FAILED (exit $rc; see $log)"
        fi
        printf '%-20s %10s execs %8s/s  cov %6s  ft %6s  corpus %5s  rss %5s MB  %s\n' \
                "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" \
                "$status"
        [ "$status" = ok ]
}

run_one() {
        out=$1 secs=$2 t=$3
        log=$out/logs/$t.log
        mkdir -p "$out/corpus/$t" "$out/artifacts" "$out/logs"
        rm -f "$out/logs/$t.rc"
        set -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
                -artifact_prefix="$out/artifacts/$t-"
        if write_dict "$t" "$out/logs/$t.dict"; then
                set -- "$@" -dict="$out/logs/$t.dict"
        fi
        # The fuzzer can run out of time mid-input; give it a minute to stop.
        timeout -k 10 $((secs + 60)) "$out/$t" "$@" "$out/corpus/$t" "$seeds/$t" >"$log" 2>&1
        echo $? >"$out/logs/$t.rc"
}

cmd_fuzz() {
        out=$1 secs=$2
        shift 2
        jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
        failed="" running=0
        echo "fuzz: $# targets, ${secs}s each, $jobs at a time; logs in $out/logs"
        for t in "$@"; do
                if [ ! -x "$out/$t" ]; then
                        echo "fuzz: $out/$t is not built" >&2
                        return 1
                fi
        done
        for t in "$@"; do
                run_one "$out" "$secs" "$t" &
                running=$((running + 1))
                if [ "$running" -ge "$jobs" ]; then
                        wait
                        running=0
                fi
        done
        wait
        for t in "$@"; do
                rc=$(cat "$out/logs/$t.rc" 2>/dev/null || echo 1)
                if ! summarise "$t" "$out/logs/$t.log" "$rc"; then
                        failed="$failed $t"
                fi
        done
        if [ -n "$failed" ]; then
                for t in $failed; do
                        echo "---- $t: end of $out/logs/$t.log"
                        tail -n 60 "$out/logs/$t.log"
                done
                echo "fuzz FAILED in:$failed (crash inputs in $out/artifacts/)"
                return 1
        fi
        echo "fuzz: every target ran ${secs}s without a crash, leak or sanitizer report"
}

[ $# -ge 2 ] || usage
cmd=$1
shift
case $cmd in
probe) [ $# -ge 2 ] || usage; cmd_probe "$@" ;;
replay) cmd_replay "$@" ;;
fuzz) [ $# -ge 3 ] || usage; cmd_fuzz "$@" ;;
*) usage ;;
esac
