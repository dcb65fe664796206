#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when they are missing:
#   openssh-server  a real sshd on 127.0.0.1 for the SSH target tests
#   openssh-client  ssh and ssh-keygen for the same tests
#   chromium        headless browser for the HTML report test
# Installing needs root (or passwordless sudo). What is still missing afterwards:
#   - in CI (the CI variable set and not false/0, as CI services set CI=true): one line on stderr
#     and exit 1, because the tests that need it would skip and leave CI green;
#   - locally: a loud warning naming the tests that will skip, and exit 0.
# The programs looked for are the ones the tests use. EDGEKD_SSHD, EDGEKD_SSH and EDGEKD_CHROMIUM
# override their paths (the script's own test plays a machine without them).
set -u
SSHD="${EDGEKD_SSHD:-/usr/sbin/sshd}"
SSH="${EDGEKD_SSH:-ssh}"
CHROMIUM="${EDGEKD_CHROMIUM:-/usr/bin/chromium}"

missing() {  # the packages whose program is absent, space-separated
  local out=()
  [ -x "$SSHD" ] || out+=(openssh-server)
  { command -v "$SSH" && command -v ssh-keygen; } >/dev/null 2>&1 || out+=(openssh-client)
  [ -x "$CHROMIUM" ] || out+=(chromium)
  echo "${out[*]}"
}

skipped_tests() {  # what skips without these packages
  local ssh="" browser=""
  case " $* " in *" openssh-server "*|*" openssh-client "*) ssh="the SSH target tests (tests/targets/test_ssh*.py)";; esac
  case " $* " in *" chromium "*) browser="the headless-browser HTML report test (tests/benchmarks/test_report.py)";; esac
  if [ -n "$ssh" ] && [ -n "$browser" ]; then echo "$ssh and $browser"; else echo "$ssh$browser"; fi
}

in_ci() {
  case "${CI:-}" in ""|0|false|False|FALSE|no) return 1;; *) return 0;; esac
}

read -r -a need <<< "$(missing)"
[ ${#need[@]} -eq 0 ] && exit 0

reason=""
if [ "$(id -u)" -eq 0 ]; then sudo=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"
else sudo="none"; reason="not root and no passwordless sudo"
fi
if [ "$sudo" != "none" ]; then
  echo "system-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt may hold the lock (an image build, unattended upgrades): wait for it a while.
  apt=(apt-get -o DPkg::Lock::Timeout=300 -qq)
  errors=$( { $sudo "${apt[@]}" update && \
              $sudo "${apt[@]}" install -y --no-install-recommends "${need[@]}"; } 2>&1 >/dev/null)
  last=$(printf '%s\n' "$errors" | grep -v '^[[:space:]]*$' | tail -n 1)
  reason="${last:+apt-get failed: $last}"
  reason="${reason:-apt-get ran, but the programs are still not where the tests look}"
fi

read -r -a still <<< "$(missing)"
if [ ${#still[@]} -eq 0 ]; then
  echo "system-deps: installed ${need[*]}"
  exit 0
fi
skips=$(skipped_tests "${still[@]}")
if in_ci; then
  echo "system-deps: ERROR: ${still[*]} missing in CI ($reason); $skips would skip, so CI fails here" >&2
  exit 1
fi
{
  echo "system-deps: ********************************************************************"
  echo "system-deps: WARNING: ${still[*]} missing ($reason)"
  echo "system-deps: WARNING: these tests will SKIP: $skips"
  echo "system-deps: WARNING: install with: sudo apt-get install ${still[*]}"
  echo "system-deps: ********************************************************************"
} >&2
exit 0
