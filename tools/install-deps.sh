#!/bin/sh
# Installs the Debian 12 packages the service needs to build, run and be
# tested. Uses sudo when not run as root. Packages already there are skipped.
set -eu

packages="autoconf automake make gcc pkg-config
libfcgi-dev libsqlite3-dev libjson-c-dev zlib1g-dev sqlite3
lighttpd apache2 libapache2-mod-fcgid nginx spawn-fcgi postgresql
bats bats-assert bats-support curl jq chromium python3 procps iproute2 mandoc prometheus
clang libclang-rt-14-dev
dpkg-dev debhelper fakeroot build-essential lintian systemd"

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
# Node.js and npm (the browser suite) by command: a Node.js from elsewhere
# that brings its own npm conflicts with Debian's npm package.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing$missing"
$sudo apt-get update -q
# The packages' own services are not wanted: the tests start their own
# lighttpd, Apache and nginx on free ports.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
