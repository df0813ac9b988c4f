#!/bin/sh
# Install the Debian packages the build and the tests need, if any is missing.
# Quiet and quick when everything is there; needs root to install.
set -eu

PACKAGES="build-essential pkg-config zlib1g-dev libpam0g-dev liblmdb-dev libsodium-dev
libsystemd-dev libjansson-dev libcmocka-dev lmdb-utils python3 python3-pytest
cockpit-ws cockpit-bridge chromium
pamtester libpam-wrapper libpamtest0-dev openssh-server openssh-client sshpass sudo
systemd clang libclang-rt-14-dev clang-format valgrind strace
dpkg-dev debhelper lintian fail2ban sshguard bash-completion
libcurl4-openssl-dev etcd-server etcd-client"

if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "deps: not a Debian system; install the equivalents of: $(echo $PACKAGES)" >&2
        exit 0
fi

missing=""
for p in $PACKAGES; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$status" in
        *" installed") ;;
        *) missing="$missing $p" ;;
        esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
        echo "deps: missing Debian packages:$missing" >&2
        echo "deps: run 'sudo make deps' (or install them with apt-get) and try again" >&2
        exit 1
fi

echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: done"
