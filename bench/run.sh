#!/usr/bin/env bash
# cairn benchmark harness — one command, not part of CI.  See docs/BENCHMARKS.md.
#
#   bench/run.sh [--quick] [--update-docs] [--keep] [--systems "cairn rclone s3fs ceiling local nullfs"]
#
# Installs what is missing (fio, rclone, s3fs, fuse3, curl via apt; Garage 2.5.0 via cargo; a venv with
# boto3 under ~/.cache/cairn/bench-venv), builds cairn and bench/nullfs in release mode, starts a private single-node
# Garage on 127.0.0.1, uploads the corpus, mounts each system in turn, runs the workloads and prints a
# Markdown report (also written to bench/results/<timestamp>.md).  Everything it mounts or starts is
# stopped on exit, including on failure or Ctrl-C.  Must run as root (drop_caches, FUSE mounts).
#
# Knobs (environment): BENCH_RUNS (3)  BENCH_SYSTEMS  BENCH_WORKLOADS ("seq rand files list ckpt l2warm small_l2
#   prefetch")
#   BENCH_BIG_MIB (1024)  BENCH_SMALL_FILES (10000)  BENCH_SMALL_KIB (110)  BENCH_DIR_ENTRIES (100000)
#   BENCH_DIR_ENTRY_BYTES (1024)  BENCH_FIO_RUNTIME (20)  BENCH_FIO_JOBS (4)  BENCH_THREADS (8)
#   BENCH_QUICK=1 (small corpus, 1 run, 3 s fio)  BENCH_UPDATE_DOCS=1  BENCH_KEEP=1 (keep work dir)
#   BENCH_WORKDIR (default: mktemp under /var/tmp)  BENCH_S3_PORT (first port tried, default 39100)
#   BENCH_CAIRN_BIN (skip the build, use this binary)  BENCH_CAIRN_ARGS / BENCH_RCLONE_ARGS /
#   BENCH_S3FS_ARGS (extra mount flags)  BENCH_TIMEOUT (per workload, s, 1800)  BENCH_VERIFY (1)
#   BENCH_CKPT_FILES (4)  BENCH_CKPT_MIB (1024)  BENCH_CKPT_WRITE_MIB (64)  BENCH_CKPT_FLUSH (1: cairn flush
#   after the last close)  BENCH_L2_L1 (64MiB: cairn's L1 for l2warm/small_l2)  BENCH_NULLFS_BIN (skip its build)
#   prefetch (cairn only; first epoch per --prefetch mode): BENCH_PREFETCH_MODES ("learned readahead off")
#   BENCH_PQ_FILES (4)  BENCH_PQ_MIB (256)  BENCH_PQ_ROW_GROUPS (8)  BENCH_PQ_COLUMNS (10)  BENCH_PQ_PROJECT
#   ("1,4,8": columns read)  BENCH_PQ_READ_KIB (1024)  BENCH_PQ_PAUSE_MS (20, per row group)  BENCH_SHARDS (8)
#   BENCH_SHARD_MIB (128)  BENCH_SHARD_THREADS (4)  BENCH_SHARD_READ_KIB (256)  BENCH_SHARD_PAUSE_MS (2, per MiB)
#   GARAGE_BIN  CARGO_TARGET_DIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
VENV=${BENCH_VENV:-$HOME/.cache/cairn/bench-venv}
log() { echo "[bench $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# the exact command line, with the BENCH_* knobs that were set, for the report
cmdline="bench/run.sh"; for a in "$@"; do cmdline+=" $(printf '%q' "$a")"; done
knobs=$(env | grep -E '^(BENCH_[A-Z_]+|CARGO_TARGET_DIR)=' | grep -v -E '^BENCH_CMDLINE=' | sort |
        sed -E 's/=(.*)$/="\1"/' | tr '\n' ' ' || true)

while [ $# -gt 0 ]; do
  case $1 in
    --quick) export BENCH_QUICK=1;;
    --update-docs) export BENCH_UPDATE_DOCS=1;;
    --keep) export BENCH_KEEP=1;;
    --systems) export BENCH_SYSTEMS=$2; shift;;
    --systems=*) export BENCH_SYSTEMS=${1#*=};;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0;;
    *) die "unknown argument $1 (see --help)";;
  esac
  shift
done
export BENCH_CMDLINE="${knobs}${cmdline}"
export BENCH_SYSTEMS=${BENCH_SYSTEMS:-cairn rclone s3fs ceiling local nullfs}
has() { [[ " $BENCH_SYSTEMS " == *" $1 "* ]]; }

[ "$(id -u)" = 0 ] || die "run as root (needs /proc/sys/vm/drop_caches and FUSE mounts)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"

# ---- tools -------------------------------------------------------------------------------------
pkgs=()
command -v fio >/dev/null || pkgs+=(fio)
command -v curl >/dev/null || pkgs+=(curl)
command -v fusermount3 >/dev/null || pkgs+=(fuse3)
has rclone && ! command -v rclone >/dev/null && pkgs+=(rclone)
has s3fs && ! command -v s3fs >/dev/null && pkgs+=(s3fs)
python3 -c 'import ensurepip, venv' 2>/dev/null || pkgs+=(python3-venv)
if [ ${#pkgs[@]} -gt 0 ]; then
  log "installing ${pkgs[*]} with apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2
fi

GARAGE_BIN=${GARAGE_BIN:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
if [ ! -x "$GARAGE_BIN" ]; then
  command -v cargo >/dev/null || die "garage not found and cargo is missing"
  log "installing garage 2.5.0 with cargo (about 15-25 min on 2 cores, once)"
  cargo install garage --version 2.5.0 --locked >&2
  GARAGE_BIN=$HOME/.cargo/bin/garage
fi
export BENCH_GARAGE_BIN=$GARAGE_BIN

if ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
  log "creating $VENV with boto3"
  python3 -m venv "$VENV" >&2 && "$VENV/bin/pip" install -q boto3 >&2
fi

# release_bin VAR PACKAGE [HINT]: use the binary named by $VAR, or build PACKAGE (release, its own cargo
# invocation: building several packages together would change cairn's feature set) and export VAR.
release_bin() {
  local var=$1 pkg=$2 hint=${3:-}
  if [ -n "${!var:-}" ]; then
    [ -x "${!var}" ] || die "$var=${!var} is not executable"
    return
  fi
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  log "building $pkg (release) into $CARGO_TARGET_DIR"
  (cd "$ROOT" && cargo build --release -p "$pkg" >&2) || die "cargo build -p $pkg failed${hint:+ ($hint)}"
  export "$var=$CARGO_TARGET_DIR/release/$pkg"
}
has cairn && release_bin BENCH_CAIRN_BIN cairn "BENCH_SYSTEMS='rclone s3fs ceiling' skips cairn"
has nullfs && release_bin BENCH_NULLFS_BIN cairn-nullfs
# the prefetch points with an added first-byte delay (BENCH_PF_DELAYS) go through it; small, built with cairn
has cairn && release_bin BENCH_DELAYPROXY_BIN cairn-delayproxy
export BENCH_GIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo none)

# ---- work dir, cleanup ---------------------------------------------------------------------------
WORK=${BENCH_WORKDIR:-$(mktemp -d /var/tmp/cairn-bench.XXXXXX)}
mkdir -p "$WORK"/{mnt,cache,logs,pids,garage}
export BENCH_WORKDIR=$WORK
GARAGE_PID=
DRIVER_PID=

unmount_all() {  # every mount under $WORK, deepest first; never blocks on a hung daemon
  local m minor
  awk -v w="$WORK/" 'index($5, w) == 1 {print $5 " " $3}' /proc/self/mountinfo | sort -r |
  while read -r m minor; do
    timeout 30 fusermount3 -u "$m" 2>/dev/null && continue
    log "forcing unmount of $m"
    [ -n "$(ls /sys/fs/fuse/connections 2>/dev/null)" ] ||
      mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null || true
    echo 1 > "/sys/fs/fuse/connections/${minor#*:}/abort" 2>/dev/null || true
    timeout 30 fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

stop_pid() {  # pid: TERM, wait up to 15 s, KILL
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    log "stopping the driver (it unmounts what it mounted)"
    kill -TERM "$DRIVER_PID"
    for _ in $(seq 1 900); do kill -0 "$DRIVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DRIVER_PID" 2>/dev/null
  fi
  unmount_all
  for f in "$WORK"/pids/*.pid; do [ -f "$f" ] && stop_pid "$(cat "$f")" && rm -f "$f"; done
  [ -n "$GARAGE_PID" ] && stop_pid "$GARAGE_PID"
  if [ "${BENCH_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
    log "work dir kept: $WORK (logs in $WORK/logs, garage log $WORK/garage/server.log)"
    rm -rf "$WORK/cache" "$WORK/local" "$WORK/garage/data" "$WORK/garage/meta"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- Garage --------------------------------------------------------------------------------------
port=${BENCH_S3_PORT:-39100}
busy() { ss -ltnH "sport = :$1" | grep -q .; }
while busy "$port" || busy $((port + 1)); do port=$((port + 2)); done
export AWS_ACCESS_KEY_ID=GK$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
export AWS_SECRET_ACCESS_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_DEFAULT_REGION=${AWS_REGION:-us-east-1}
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export BENCH_BUCKET=bench
G=$WORK/garage
export BENCH_GARAGE_DIR=$G
(umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$G/rpc_secret")
cat > "$G/garage.toml" <<EOF
metadata_dir = "$G/meta"
data_dir = "$G/data"
db_engine = "lmdb"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$((port + 1))"
rpc_public_addr = "127.0.0.1:$((port + 1))"
rpc_secret_file = "$G/rpc_secret"

[s3_api]
s3_region = "$AWS_REGION"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.localhost"
EOF
pdeath=; setpriv --help 2>/dev/null | grep -q pdeathsig && pdeath="setpriv --pdeathsig TERM --"  # dies with us
log "starting $("$GARAGE_BIN" --version 2>/dev/null | head -1) on $AWS_ENDPOINT_URL (state $G)"
RUST_LOG=${GARAGE_LOG:-warn} GARAGE_DEFAULT_ACCESS_KEY=$AWS_ACCESS_KEY_ID \
  GARAGE_DEFAULT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY GARAGE_DEFAULT_BUCKET=$BENCH_BUCKET \
  $pdeath "$GARAGE_BIN" -c "$G/garage.toml" server --single-node --default-bucket > "$G/server.log" 2>&1 &
GARAGE_PID=$!
ok=
for _ in $(seq 1 600); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -I --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    "$AWS_ENDPOINT_URL/$BENCH_BUCKET" || true)
  [ "$code" = 200 ] && { ok=1; break; }
  kill -0 "$GARAGE_PID" 2>/dev/null || { tail -20 "$G/server.log" >&2; die "garage exited"; }
  sleep 0.1
done
[ -n "$ok" ] || { tail -20 "$G/server.log" >&2; die "bucket not ready after 60 s (HTTP $code)"; }

# ---- measure -------------------------------------------------------------------------------------
# in the background so that our traps run at once on a signal; cleanup stops it (TERM) first
"$VENV/bin/python" "$HERE/cairnbench.py" run &
DRIVER_PID=$!
rc=0; wait "$DRIVER_PID" || rc=$?
DRIVER_PID=
report=$(cat "$WORK/report-path" 2>/dev/null || true)
[ -n "$report" ] || die "no report produced (driver exit $rc)"

if [ "${BENCH_UPDATE_DOCS:-0}" = 1 ]; then
  "$VENV/bin/python" "$HERE/cairnbench.py" update-docs "$ROOT/docs/BENCHMARKS.md" "$report"
fi
exit $rc
