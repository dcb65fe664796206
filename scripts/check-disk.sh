#!/usr/bin/env bash
# Fails in one line when the disk cannot hold the install: pip's own message for a full disk
# ("OSError: [Errno 28] No space left on device") comes only after minutes, mid-install, and
# leaves a broken .venv behind. Usage: check-disk.sh GIB [DIR ...]  (default DIR: . and $TMPDIR)
set -eu
need_gib="$1"; shift
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(. "${TMPDIR:-/tmp}")
for dir in "${dirs[@]}"; do
  free_kib=$(df -Pk "$dir" | awk 'NR==2 {print $4}')
  if [ "$free_kib" -lt $((need_gib * 1024 * 1024)) ]; then
    echo "edgekd setup: ${need_gib} GiB free needed in $dir (the virtualenv is ~3 GiB, pip unpacks" \
         "wheels beside it), $((free_kib / 1024)) MiB free: make room and run it again" >&2
    exit 1
  fi
done
