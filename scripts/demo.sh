#!/usr/bin/env bash
# The main job on a fresh machine: build cairn, mount the embedded default (a local directory
# acting as the bucket) with demo data, show a listing and a read through the mount, write a file
# through it and see it land in the bucket, unmount.
#
#   scripts/demo.sh            # mounts at /tmp/cairn-demo/mnt and unmounts when done
#   KEEP_MOUNTED=1 scripts/demo.sh   # leaves it mounted for you to explore
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { echo "[demo] $*" >&2; }

if ! command -v fusermount3 >/dev/null 2>&1; then
  log "installing fuse3"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >&2
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}
log "building cairn (release)"
cargo build --release -q -p cairn
cairn=$CARGO_TARGET_DIR/release/cairn

demo=${DEMO_DIR:-/tmp/cairn-demo}
bucket=$demo/bucket
mnt=$demo/mnt
if mountpoint -q "$mnt" 2>/dev/null || grep -qs " $mnt " /proc/self/mountinfo; then
  "$cairn" unmount "$mnt" || fusermount3 -uz "$mnt"
fi
rm -rf "$demo/cache"
mkdir -p "$bucket/datasets/imagenet-mini/train" "$bucket/checkpoints" "$mnt" "$demo/cache"
log "writing demo data into $bucket (the local 'bucket')"
echo "cairn demo: this file is an object in a local directory bucket" > "$bucket/README.txt"
for i in $(seq -w 1 20); do
  head -c 112640 /dev/urandom > "$bucket/datasets/imagenet-mini/train/sample-$i.jpg"
done
head -c $((64 << 20)) /dev/urandom > "$bucket/checkpoints/model-0001.safetensors"

rm -f "$bucket/checkpoints/model-0002.safetensors"
log "mounting file://$bucket at $mnt (cache and write journal in $demo/cache)"
"$cairn" mount "file://$bucket" "$mnt" --cache-dir "$demo/cache" --log-file "$demo/cairn.log"
cleanup() { [ "${KEEP_MOUNTED:-0}" = 1 ] || "$cairn" unmount "$mnt"; }
trap cleanup EXIT

echo; echo "\$ ls -l $mnt"; ls -l "$mnt"
echo; echo "\$ find $mnt | head"; find "$mnt" | head
echo; echo "\$ cat $mnt/README.txt"; cat "$mnt/README.txt"
echo; echo "\$ sha256sum (bucket vs mount) of a 64 MiB checkpoint"
a=$(sha256sum < "$bucket/checkpoints/model-0001.safetensors" | cut -d' ' -f1)
b=$(sha256sum < "$mnt/checkpoints/model-0001.safetensors" | cut -d' ' -f1)
echo "bucket: $a"; echo "mount:  $b"
[ "$a" = "$b" ] && echo "identical" || { echo "MISMATCH"; exit 1; }
echo
echo "\$ cp (a new checkpoint written through the mount), then cairn flush"
head -c $((32 << 20)) /dev/urandom > "$demo/new.bin"
cp "$demo/new.bin" "$mnt/checkpoints/model-0002.safetensors"
"$cairn" flush "$mnt"
a=$(sha256sum < "$demo/new.bin" | cut -d' ' -f1)
b=$(sha256sum < "$bucket/checkpoints/model-0002.safetensors" | cut -d' ' -f1)
echo "written: $a"; echo "bucket:  $b"
[ "$a" = "$b" ] && echo "identical: the object is in the bucket" || { echo "MISMATCH"; exit 1; }
rm -f "$demo/new.bin"
echo
echo "\$ cairn stats $mnt"; "$cairn" stats "$mnt"
echo
if [ "${KEEP_MOUNTED:-0}" = 1 ]; then
  log "left mounted at $mnt; unmount with: $cairn unmount $mnt"
else
  log "done; unmounting"
fi
