#!/usr/bin/env bash
# Fuzzes the pure request parsers with libFuzzer.
#
#   tests/fuzz/run.sh [SECONDS [BUILD_DIR]]
#
# Builds fuzz_order, fuzz_query and fuzz_sse with clang
# (-fsanitize=fuzzer,address,undefined) into BUILD_DIR (default
# ${TMPDIR:-/tmp}/orders-fuzz, or $FUZZ_BUILD_DIR), copies each seed corpus
# (tests/fuzz/corpus/<target>/ plus tests/fuzz/regressions/<target>/) to a
# scratch directory there, and fuzzes each target for SECONDS (default 60),
# one after the other. Output is TAP ("ok N - fuzz <target> <seconds>s"),
# with the statistics as comments; a target that crashes is "not ok" with
# the path of the crashing input, and the exit status is then 1. Without
# clang or its fuzzer runtime every target is skipped (exit 0).
#
# FUZZ_KEEP=1 keeps the scratch directories (grown corpora, logs) of
# successful runs too; FUZZ_CC picks another clang.
set -uo pipefail
# shellcheck source=tests/fuzz/common.sh source-path=SCRIPTDIR
. "$(dirname "$0")/common.sh"

secs=${1:-60}
build=${2:-${FUZZ_BUILD_DIR:-${TMPDIR:-/tmp}/orders-fuzz}}
case $secs in
'' | *[!0-9]*)
    echo "usage: $0 [seconds [build-dir]]" >&2
    exit 2
    ;;
esac

fuzz_plan "fuzz"

mkdir -p "$build" || { echo "Bail out! cannot create $build"; exit 1; }
build=$(cd "$build" && pwd)
scratch=$(mktemp -d "$build/run.XXXXXX") || { echo "Bail out! no scratch directory"; exit 1; }
echo "# build dir $build, scratch $scratch"

failed=0 i=0
for t in "${FUZZ_TARGETS[@]}"; do
    i=$((i + 1))
    name="fuzz $t ${secs}s"
    if ! fuzz_build "$t" "$build"; then
        echo "not ok $i - $name"
        echo "# build failed: $build/$t.build.log"
        fuzz_diag "$build/$t.build.log" | head -40
        failed=1
        continue
    fi

    work=$scratch/$t
    mkdir -p "$work/corpus" "$work/artifacts"
    fuzz_inputs "$t" | while IFS= read -r f; do cp "$f" "$work/corpus/"; done
    seeds=$(find "$work/corpus" -type f | wc -l)

    opts=(-max_total_time="$secs" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb="$FUZZ_RSS_MB"
          -max_len="$(fuzz_max_len "$t")" -print_final_stats=1
          -artifact_prefix="$work/artifacts/")
    [ -f "$fuzz_dir/$t.dict" ] && opts+=(-dict="$fuzz_dir/$t.dict")

    # libFuzzer stops itself after SECONDS; the outer limit only guards
    # against a process that hangs outside of an input.
    guard=()
    command -v timeout >/dev/null 2>&1 && guard=(timeout -k 10 $((secs + 120)))
    "${guard[@]}" "$build/$t" "${opts[@]}" "$work/corpus" >"$work/fuzz.log" 2>&1
    rc=$?

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/fuzz.log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$work/fuzz.log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$work/fuzz.log" | tail -1)
    crashes=$(find "$work/artifacts" -type f \
              \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \))

    if [ "$rc" -eq 0 ] && [ -z "$crashes" ]; then
        echo "ok $i - $name"
    else
        echo "not ok $i - $name"
        failed=1
        echo "# $t exited with $rc; log: $work/fuzz.log"
        for c in $crashes; do
            echo "# crash input: $c"
            echo "crash input: $c" >&2
        done
        grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+: invariant|.*runtime error)' \
            "$work/fuzz.log" | head -10 | sed 's/^/# /'
    fi
    echo "# $t: ${runs:-?} execs, ${speed:-?} exec/s, ${cov:-no coverage line}," \
         "$seeds seeds, peak RSS ${rss:-?} MB"
done

if [ "$failed" -eq 0 ] && [ "${FUZZ_KEEP:-0}" != 1 ]; then
    rm -rf "$scratch"
else
    echo "# kept $scratch"
fi
exit "$failed"
