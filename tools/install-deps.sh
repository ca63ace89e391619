#!/bin/sh
# Installs the Debian 12 packages the service needs to build, run and be
# tested. Uses sudo when not run as root. Packages already there are skipped.
set -eu

packages="autoconf automake make gcc pkg-config
libfcgi-dev libsqlite3-dev libjson-c-dev zlib1g-dev sqlite3
lighttpd apache2 libapache2-mod-fcgid spawn-fcgi
bats bats-assert bats-support curl jq chromium
clang libclang-rt-14-dev"

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing$missing"
$sudo apt-get update -q
# The packages' own services are not wanted: the service starts its own
# lighttpd and Apache on free ports.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
