#!/usr/bin/env bash
# Install what cairn's test suite needs, only where it is missing. Idempotent and fast when
# everything is already present. Works on a fresh Debian machine as root (uses sudo otherwise).
#
#   scripts/install-test-deps.sh
#
# Installs:
#   - Debian packages: fuse3 (fusermount3, for mounting), curl, python3 + python3-venv (if needed)
#   - a Python venv at ${CAIRN_TEST_VENV:-$HOME/.cache/cairn/test-venv} with moto[server] and boto3
#     (the in-memory S3 server and the independent admin client used by the e2e tests)
#
# Env: CAIRN_TEST_VENV (venv location), CAIRN_SKIP_APT=1 (never call apt-get).
set -euo pipefail

log() { echo "[install-test-deps] $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
fi

apt_updated=0
apt_install() {
  if [ "${CAIRN_SKIP_APT:-0}" = 1 ]; then
    log "missing packages: $* (CAIRN_SKIP_APT=1, not installing)"
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "missing packages: $* and apt-get is not available; install them by hand"
    return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_updated=1
  fi
  log "apt-get install $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# --- Debian packages --------------------------------------------------------------------------
missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
# RocksDB (the persistent cache index) is built from source: a C++ compiler and libclang (bindgen).
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
# (libclang-cpp*.so, which some images carry, is not the C library bindgen loads.)
ldconfig -p 2>/dev/null | grep -E 'libclang(-[0-9.]+)?\.so' >/dev/null || missing+=(libclang-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

if [ ! -e /dev/fuse ]; then
  log "warning: /dev/fuse does not exist; FUSE mounts (and the e2e tests) will fail"
fi

# --- Python venv with moto[server] + boto3 -----------------------------------------------------
venv=${CAIRN_TEST_VENV:-$HOME/.cache/cairn/test-venv}

venv_ok() {
  [ -x "$venv/bin/moto_server" ] && [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c 'import boto3, moto' >/dev/null 2>&1
}

if venv_ok; then
  log "ok: fuse3, curl, python3, venv at $venv"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >&2 2>/dev/null; then
    # Debian's python3 needs python3-venv (ensurepip) for `python3 -m venv`.
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv" >&2
  fi
fi

log "installing moto[server] and boto3 into $venv (1-2 min the first time)"
"$venv/bin/python" -m pip install -q --disable-pip-version-check 'moto[server]' boto3 >&2

if ! venv_ok; then
  log "error: venv at $venv is still incomplete after pip install"
  exit 1
fi
log "ok: fuse3, curl, python3, venv at $venv"
