#!/usr/bin/env bash
# Runs every fuzz target once over its seed corpus and saved regressions,
# without fuzzing: a quick check for `make check`.
#
#   tests/fuzz/regress.sh [BUILD_DIR]
#
# BUILD_DIR defaults to $FUZZ_BUILD_DIR, else ${TMPDIR:-/tmp}/orders-fuzz
# (shared with run.sh, so the targets are built once). Output is TAP, one
# line per target; an input that crashes is named in a comment and makes the
# target "not ok" (exit status 1). Without clang or its fuzzer runtime every
# target is skipped (exit 0).
set -uo pipefail
# shellcheck source=tests/fuzz/common.sh source-path=SCRIPTDIR
. "$(dirname "$0")/common.sh"

build=${1:-${FUZZ_BUILD_DIR:-${TMPDIR:-/tmp}/orders-fuzz}}

fuzz_plan "regress"

mkdir -p "$build" || { echo "Bail out! cannot create $build"; exit 1; }
build=$(cd "$build" && pwd)
tmp=$(mktemp -d "$build/regress.XXXXXX") || { echo "Bail out! no scratch directory"; exit 1; }
log=$tmp/log

failed=0 i=0
for t in "${FUZZ_TARGETS[@]}"; do
    i=$((i + 1))
    if ! fuzz_build "$t" "$build"; then
        echo "not ok $i - regress $t"
        echo "# build failed: $build/$t.build.log"
        fuzz_diag "$build/$t.build.log" | head -40
        failed=1
        continue
    fi
    mapfile -t inputs < <(fuzz_inputs "$t")
    total=${#inputs[@]}
    bad=()
    # Given files (not directories) libFuzzer runs each once and writes
    # nothing. It stops at the first input that fails: note it, drop it, and
    # go on with the rest, so that every failing input is named.
    while [ "${#inputs[@]}" -gt 0 ]; do
        # (A crash writes the input again: to the scratch dir, not the cwd.)
        if "$build/$t" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb="$FUZZ_RSS_MB" \
            -artifact_prefix="$tmp/" "${inputs[@]}" >"$log" 2>&1; then
            break
        fi
        culprit=$(sed -n 's/^Running: //p' "$log" | tail -1)
        if [ -z "$culprit" ]; then
            bad+=("(unknown input)")
            fuzz_diag "$log" | tail -20
            break
        fi
        bad+=("$culprit")
        grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+: invariant|.*runtime error)' "$log" \
            | head -5 | sed "s|^|# $(basename "$culprit"): |"
        rest=()
        for f in "${inputs[@]}"; do [ "$f" = "$culprit" ] || rest+=("$f"); done
        inputs=("${rest[@]+"${rest[@]}"}")
    done
    if [ "${#bad[@]}" -eq 0 ]; then
        echo "ok $i - regress $t ($total inputs)"
    else
        echo "not ok $i - regress $t (${#bad[@]} of $total inputs fail)"
        for f in "${bad[@]}"; do echo "# failing input: $f"; done
        failed=1
    fi
done
rm -rf "$tmp"
exit "$failed"
