# shellcheck shell=bash disable=SC2034
# Shared by run.sh, regress.sh and coverage.sh (sourced): where things are,
# the toolchain check and the build of the libFuzzer targets.

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fuzz_top=$(cd "$fuzz_dir/../.." && pwd)
FUZZ_TARGETS=(fuzz_order fuzz_query fuzz_sse)
# The pure sources: no FastCGI, no SQLite.
FUZZ_SRCS=(src/order.c src/uri.c src/cursor.c src/sse.c src/buf.c src/error.c)
FUZZ_CC=${FUZZ_CC:-clang}
# shellcheck disable=SC2054
FUZZ_CFLAGS=(-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra
             -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
             -fno-omit-frame-pointer)
# More flags from the environment (FUZZ_EXTRA_CFLAGS), e.g. -O2 -march=native.
# shellcheck disable=SC2206
FUZZ_CFLAGS+=(${FUZZ_EXTRA_CFLAGS:-})

# Options for every fuzzer process.
FUZZ_TIMEOUT=5
FUZZ_RSS_MB=2048
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The longest input worth trying per target (a body of 100 items is ~7 KB).
fuzz_max_len() {
    case $1 in
    fuzz_order) echo 16384 ;;
    *) echo 4096 ;;
    esac
}

# Sets fuzz_skip_reason (empty when everything needed is there).
fuzz_check_toolchain() {
    fuzz_skip_reason=
    if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then
        fuzz_skip_reason="$FUZZ_CC not found (apt-get install clang libclang-rt-14-dev)"
        return
    fi
    if ! pkg-config --exists json-c 2>/dev/null; then
        fuzz_skip_reason="json-c not found by pkg-config (apt-get install libjson-c-dev)"
        return
    fi
    local probe
    probe=$(mktemp -d "${TMPDIR:-/tmp}/orders-fuzz-probe.XXXXXX") || {
        fuzz_skip_reason="no temporary directory"
        return
    }
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        >"$probe/probe.c"
    if ! "$FUZZ_CC" -fsanitize=fuzzer,address,undefined "$probe/probe.c" -o "$probe/probe" \
        >"$probe/log" 2>&1; then
        fuzz_skip_reason="$FUZZ_CC cannot link -fsanitize=fuzzer,address,undefined (apt-get install libclang-rt-14-dev)"
    fi
    rm -rf "$probe"
}

# fuzz_build TARGET BUILD_DIR: builds BUILD_DIR/TARGET unless it is newer
# than everything it is made from. Output of the compiler goes to
# BUILD_DIR/TARGET.build.log. Returns non-zero when the build fails.
fuzz_build() {
    local t=$1 bin=$2/$1
    local json_cflags json_libs
    json_cflags=$(pkg-config --cflags json-c) && json_libs=$(pkg-config --libs json-c) || return 1
    # shellcheck disable=SC2206
    local cmd=("$FUZZ_CC" "${FUZZ_CFLAGS[@]}" -I"$fuzz_top/src" $json_cflags
               "$fuzz_dir/$t.c")
    local s
    for s in "${FUZZ_SRCS[@]}"; do cmd+=("$fuzz_top/$s"); done
    # shellcheck disable=SC2206
    cmd+=($json_libs)
    local stamp="${cmd[*]}"
    if [ -x "$bin" ] && [ -f "$bin.cmd" ] && [ "$(cat "$bin.cmd")" = "$stamp" ] \
        && [ -z "$(find "$fuzz_dir/$t.c" "$fuzz_dir/common.sh" "$fuzz_top/src" \
                        -newer "$bin" \( -name '*.c' -o -name '*.h' -o -name '*.sh' \) \
                        2>/dev/null | head -1)" ]; then
        return 0
    fi
    local tmp="$bin.tmp.$$"
    if "${cmd[@]}" -o "$tmp" >"$bin.build.log" 2>&1; then
        mv -f "$tmp" "$bin" && printf '%s' "$stamp" >"$bin.cmd"
    else
        rm -f "$tmp"
        return 1
    fi
}

# Regular files of the seed corpus and the regressions of a target.
fuzz_inputs() {
    local d
    for d in "$fuzz_dir/corpus/$1" "$fuzz_dir/regressions/$1"; do
        [ -d "$d" ] && find "$d" -maxdepth 1 -type f ! -name '.*' ! -name '*.md' | LC_ALL=C sort
    done
}

# Prints the lines of a log file as TAP comments.
fuzz_diag() {
    sed 's/^/# /' "$@"
}

# fuzz_plan LABEL: prints the TAP plan, one line per target; without a
# working toolchain it prints every target as skipped and exits 0, or bails
# out (exit 1) when ORDERS_FUZZ_REQUIRED=1 (CI, where skipping would hide
# that nothing was fuzzed).
fuzz_plan() {
    echo "1..${#FUZZ_TARGETS[@]}"
    fuzz_check_toolchain
    [ -z "$fuzz_skip_reason" ] && return 0
    if [ "${ORDERS_FUZZ_REQUIRED:-0}" = 1 ]; then
        echo "Bail out! $fuzz_skip_reason"
        exit 1
    fi
    local i=0 t
    for t in "${FUZZ_TARGETS[@]}"; do
        i=$((i + 1))
        echo "ok $i - $1 $t # SKIP $fuzz_skip_reason"
    done
    exit 0
}
