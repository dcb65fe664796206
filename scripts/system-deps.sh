#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when they are missing:
#   openssh-server  a real sshd on 127.0.0.1 for the SSH target tests
#   chromium        headless browser for the HTML report test
# Needs root (or passwordless sudo); otherwise says what to install and carries on: the
# tests that need a missing program then say so when they skip.
set -u
need=()
command -v /usr/sbin/sshd >/dev/null 2>&1 || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "system-deps: please install: ${need[*]} (apt-get install ${need[*]})" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "system-deps: apt-get install ${need[*]} failed" >&2
exit 0
