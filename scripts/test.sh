#!/usr/bin/env bash
# THE test command: installs what the tests need, builds everything once, then runs every test
# in the workspace (unit, conformance and end-to-end FUSE tests against a private moto S3 server).
#
#   scripts/test.sh [extra args for `cargo test`, e.g. a test name filter]
#
# Env: CARGO_TARGET_DIR (default $HOME/.cache/cairn-target), CAIRN_TEST_VENV (default
#      $HOME/.cache/cairn/test-venv), plus the harness knobs in tests/common/mod.rs.
# Exits non-zero if anything fails; the last line is a summary "tests: N passed, N failed, N skipped".
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { echo "[test.sh] $*" >&2; }
start=$(date +%s)

if ! scripts/install-test-deps.sh; then
  log "installing test dependencies failed"
  echo "tests: 0 passed, 1 failed"
  exit 1
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}
export CAIRN_TEST_VENV=${CAIRN_TEST_VENV:-$HOME/.cache/cairn/test-venv}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# Leftovers of an earlier run that was killed hard: lazy-unmount our own test mounts only.
if [ -r /proc/self/mountinfo ]; then
  awk '{print $5}' /proc/self/mountinfo | grep -E '^/tmp/cairn-test-mount-[^/]+/mnt$' |
    while read -r mp; do
      log "unmounting stale test mount $mp"
      fusermount3 -uz "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done
fi

log "cargo build --workspace --all-targets (target dir $CARGO_TARGET_DIR)"
if ! cargo build --workspace --all-targets </dev/null; then
  log "build failed"
  echo "tests: 0 passed, 1 failed"
  exit 1
fi

out=$(mktemp "${TMPDIR:-/tmp}/cairn-test-log.XXXXXX")
log "cargo test --workspace --no-fail-fast $* (full log: $out)"
cargo test --workspace --no-fail-fast "$@" </dev/null 2>&1 | tee "$out"
status=${PIPESTATUS[0]}

# Sum the per-binary "test result:" lines.
read -r passed failed ignored < <(
  awk '/^test result:/ {
         for (i = 1; i <= NF; i++) {
           if ($(i+1) ~ /^passed/) p += $i
           if ($(i+1) ~ /^failed/) f += $i
           if ($(i+1) ~ /^ignored/) g += $i
         }
       }
       END { printf "%d %d %d\n", p, f, g }' "$out"
)
elapsed=$(( $(date +%s) - start ))
if [ "$status" -ne 0 ]; then
  log "FAILED: cargo test exited with status $status after ${elapsed}s"
  grep -E '^test .* FAILED$|^error(\[|:)' "$out" | sort -u | sed 's/^/[test.sh]   /' >&2 || true
  [ "$failed" -eq 0 ] && failed=1   # e.g. a compile error: count it as a failure
else
  log "OK after ${elapsed}s"
fi
echo "tests: $passed passed, $failed failed, $ignored skipped"
exit "$status"
