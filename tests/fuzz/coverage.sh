#!/usr/bin/env bash
# Line and branch coverage of the pure sources by the fuzz corpora.
#
#   tests/fuzz/coverage.sh [CORPUS_ROOT [BUILD_DIR]]
#
# Builds each target with clang source-based coverage (no sanitizers) into
# BUILD_DIR/cov (default ${TMPDIR:-/tmp}/orders-fuzz/cov), runs it once over
# CORPUS_ROOT/<target>/ (default: the seed corpus plus the regressions; give
# the scratch directory that `FUZZ_KEEP=1 run.sh` kept to measure a grown
# corpus) and prints `llvm-cov report` for src/. Needs llvm-profdata and
# llvm-cov (Debian: llvm-14, pulled in by clang).
set -uo pipefail
# shellcheck source=tests/fuzz/common.sh source-path=SCRIPTDIR
. "$(dirname "$0")/common.sh"

root=${1:-}
build=${2:-${FUZZ_BUILD_DIR:-${TMPDIR:-/tmp}/orders-fuzz}}/cov
profdata=$(command -v llvm-profdata || command -v llvm-profdata-14) || {
    echo "llvm-profdata not found" >&2; exit 1; }
llvmcov=$(command -v llvm-cov || command -v llvm-cov-14) || { echo "llvm-cov not found" >&2; exit 1; }
mkdir -p "$build" && build=$(cd "$build" && pwd)

json_cflags=$(pkg-config --cflags json-c) && json_libs=$(pkg-config --libs json-c) || exit 1
srcs=()
for s in "${FUZZ_SRCS[@]}"; do srcs+=("$fuzz_top/$s"); done
objects=()
for t in "${FUZZ_TARGETS[@]}"; do
    # shellcheck disable=SC2086
    "$FUZZ_CC" -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer \
        -fprofile-instr-generate -fcoverage-mapping ${FUZZ_EXTRA_CFLAGS:-} \
        -I"$fuzz_top/src" $json_cflags "$fuzz_dir/$t.c" "${srcs[@]}" $json_libs \
        -o "$build/$t" || exit 1
    if [ -n "$root" ]; then
        dirs=("$root/$t/corpus")
        [ -d "${dirs[0]}" ] || dirs=("$root/$t")
    else
        dirs=("$fuzz_dir/corpus/$t")
        [ -d "$fuzz_dir/regressions/$t" ] && dirs+=("$fuzz_dir/regressions/$t")
    fi
    # One pass over copies of the corpora (libFuzzer may write to a corpus
    # directory); crashes of known findings do not stop the measurement.
    tmp=$(mktemp -d "$build/corpus.XXXXXX")
    for d in "${dirs[@]}"; do find "$d" -maxdepth 1 -type f ! -name '.*' ! -name '*.md' \
        -exec cp {} "$tmp/" \; ; done
    art=$(mktemp -d "$build/artifacts.XXXXXX")
    LLVM_PROFILE_FILE="$build/$t.%p.profraw" "$build/$t" -runs=0 -artifact_prefix="$art/" \
        "$tmp" >"$build/$t.log" 2>&1
    # A crashing input ends the pass early: run the rest one by one.
    if ! grep -q '^INFO: Loaded' "$build/$t.log" || grep -q 'deadly signal\|ERROR:' "$build/$t.log"; then
        for f in "$tmp"/*; do
            LLVM_PROFILE_FILE="$build/$t.%p.profraw" "$build/$t" -artifact_prefix="$art/" \
                "$f" >/dev/null 2>&1
        done
    fi
    rm -rf "$tmp" "$art"
    objects+=(-object "$build/$t")
done
"$profdata" merge -sparse "$build"/*.profraw -o "$build/all.profdata" && rm -f "$build"/*.profraw
"$llvmcov" report "${objects[@]:1}" -instr-profile="$build/all.profdata" "${srcs[@]}"
