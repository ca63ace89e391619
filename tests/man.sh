#!/bin/sh
# Checks the manual page orders.fcgi(8) and prints TAP:
#
#   tests/man.sh [PAGE [CONFIG_C]]
#
# PAGE is the page make wrote (default docs/orders.fcgi.8, relative to the
# build directory, where make check runs it); CONFIG_C the settings' source
# (default $srcdir/src/config.c). The checks:
#   1. mandoc -Tlint has nothing to say about it, at any level, but that a
#      page it refers to (.Xr) is not installed on this machine;
#   2. make filled in every @dir@ path;
#   3. every ORDERS_* variable that src/config.c reads has an entry
#      (.It Ev ORDERS_...) in ENVIRONMENT, so an undocumented setting fails;
#   4. every ORDERS_* entry in ENVIRONMENT is a variable src/config.c reads;
#   5. the entry of each integer setting (SETTING(...) in src/config.c) says
#      "from MIN to MAX" and, unless the default is computed at start (-1),
#      "default DEF", with the numbers of src/config.c.
# Without mandoc check 1 is skipped, unless ORDERS_MAN_REQUIRED=1 (set by
# .ci/run): then it fails.
set -u

page=${1:-docs/orders.fcgi.8}
config_c=${2:-${srcdir:-.}/src/config.c}

echo "1..5"
for f in "$page" "$config_c"; do
    [ -r "$f" ] || { echo "Bail out! cannot read $f (run make first)"; exit 1; }
done

failed=0
ok() { echo "ok $1 - $2"; }
not_ok() { echo "not ok $1 - $2"; failed=1; }
# Prints its input as TAP comments.
diag() { sed 's/^/# /'; }

# 1. mandoc -Tlint
lint_title="mandoc -Tlint finds nothing in $page"
if ! command -v mandoc >/dev/null 2>&1; then
    if [ "${ORDERS_MAN_REQUIRED:-0}" = 1 ]; then
        not_ok 1 "$lint_title"
        echo "# mandoc not found (apt-get install mandoc), and ORDERS_MAN_REQUIRED=1"
    else
        echo "ok 1 # SKIP mandoc not found (apt-get install mandoc)"
    fi
else
    lint=$(mandoc -Tlint "$page" 2>&1)
    rc=$?
    # Whether the pages of SEE ALSO are installed depends on the machine.
    rest=$(printf '%s\n' "$lint" | grep -v -e 'referenced manual not found' \
        -e 'outdated mandoc.db' | grep -v '^$')
    if [ "$rc" -le 2 ] && [ -z "$rest" ]; then
        ok 1 "$lint_title"
    else
        not_ok 1 "$lint_title"
        echo "# mandoc -Tlint exited with $rc:"
        printf '%s\n' "$rest" | diag
    fi
fi

# 2. every path filled in
left=$(grep -n '@[a-z_]*@' "$page")
if [ -z "$left" ]; then
    ok 2 "every @dir@ path is filled in"
else
    not_ok 2 "every @dir@ path is filled in"
    printf '%s\n' "$left" | diag
fi

# The variables src/config.c reads, and the entries of ENVIRONMENT.
known=$(grep -o '"ORDERS_[A-Z0-9_]*"' "$config_c" | tr -d '"' | sort -u)
documented=$(awk '/^\.Sh / { env = ($0 == ".Sh ENVIRONMENT") }
    env && /^\.It Ev ORDERS_/ { print $3 }' "$page" | sort -u)
[ -n "$known" ] || { echo "Bail out! no ORDERS_* variable found in $config_c"; exit 1; }

# 3. every variable documented
missing=$(printf '%s\n' "$known" | while read -r v; do
    printf '%s\n' "$documented" | grep -qx "$v" || echo "$v"
done)
n=$(printf '%s\n' "$known" | wc -l)
if [ -z "$missing" ]; then
    ok 3 "ENVIRONMENT has an entry for each of the $n variables of src/config.c"
else
    not_ok 3 "ENVIRONMENT has an entry for each of the $n variables of src/config.c"
    printf '%s\n' "$missing" | sed 's/^/no .It Ev entry for /' | diag
fi

# 4. no entry for a variable that does not exist
unknown=$(printf '%s\n' "$documented" | while read -r v; do
    [ -z "$v" ] || printf '%s\n' "$known" | grep -qx "$v" || echo "$v"
done)
if [ -z "$unknown" ]; then
    ok 4 "ENVIRONMENT documents no variable that src/config.c does not read"
else
    not_ok 4 "ENVIRONMENT documents no variable that src/config.c does not read"
    printf '%s\n' "$unknown" | sed 's/^/not read by src\/config.c: /' | diag
fi

# 5. ranges and defaults. The text of one entry, on one line: from its
# .It Ev line to the next entry, the end of the list or of the section.
entry_text() {
    awk -v name="$1" '
        /^\.Sh / { env = ($0 == ".Sh ENVIRONMENT"); on = 0 }
        env && /^\.It Ev / { on = ($3 == name); next }
        env && /^\.El/ { on = 0 }
        on { printf "%s ", $0 }' "$page"
}
# Evaluates one number of SETTING(...), such as 7 * 86400 or 64L * 1024 * 1024.
number() {
    e=$(printf '%s' "$1" | sed 's/\([0-9]\)[lL]*/\1/g')
    printf '%s\n' "$e" | grep -Eq '^[-0-9 *+()]+$' || return 1
    # shellcheck disable=SC2004 # $e is an expression, not a number
    echo $(($e))
}
settings=$(grep -c '^ *SETTING("' "$config_c")
parsed=0 bad=""
tab=$(printf '\t')
lines=$(sed -n 's/^ *SETTING("\(ORDERS_[A-Z0-9_]*\)", *[a-z_]*, *\(.*\)), *$/\1\t\2/p' "$config_c")
while IFS="$tab" read -r name rest; do
    [ -n "$name" ] || continue
    # def, min, max: split on commas (no number of SETTING holds one)
    def=$(number "${rest%%,*}") || { bad="$bad${bad:+
}$name: cannot read its default in src/config.c"; continue; }
    rest=${rest#*,}
    min=$(number "${rest%%,*}") || { bad="$bad${bad:+
}$name: cannot read its minimum in src/config.c"; continue; }
    max=$(number "${rest#*,}") || { bad="$bad${bad:+
}$name: cannot read its maximum in src/config.c"; continue; }
    parsed=$((parsed + 1))
    text=$(entry_text "$name")
    printf '%s\n' "$text" | grep -Eq "(^|[^0-9])from $min to $max([^0-9]|\$)" ||
        bad="$bad${bad:+
}$name: the page does not say \"from $min to $max\""
    if [ "$def" -ge 0 ]; then
        printf '%s\n' "$text" | grep -Eq "(^|[^0-9])default $def([^0-9]|\$)" ||
            bad="$bad${bad:+
}$name: the page does not say \"default $def\""
    fi
done <<EOF
$lines
EOF
[ "$parsed" -eq "$settings" ] || bad="$bad${bad:+
}read $parsed of the $settings SETTING lines of src/config.c"
if [ -z "$bad" ] && [ "$settings" -gt 0 ]; then
    ok 5 "the $settings integer settings have the range and default of src/config.c"
else
    not_ok 5 "the integer settings have the range and default of src/config.c"
    printf '%s\n' "$bad" | diag
fi

exit "$failed"
