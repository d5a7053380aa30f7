#!/usr/bin/env python3
"""cairn benchmark driver.  Started by bench/run.sh, which installs the tools, builds cairn, starts a
private Garage server and exports its coordinates; see docs/BENCHMARKS.md for the workloads.

  cairnbench.py run                 upload the corpus, measure every system, write the report
  cairnbench.py update-docs DOC REPORT   put REPORT between the result markers of DOC
  cairnbench.py worker KIND ARGS    one measurement on a mounted path (run in a child process so
                                    that a hung FUSE mount can be aborted without hanging us)

Configuration comes from the environment (BENCH_*, AWS_*), see Config below.
Only the Python standard library is needed, plus boto3 for the upload and one ceiling variant.
"""
import concurrent.futures as cf
import datetime
import hashlib
import hmac
import http.client
import json
import math
import mmap
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import stat
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib

MiB = 1 << 20
PART = 8 * MiB            # multipart part size and ceiling range size
POOL = 64 * MiB           # random pool the small objects are sliced from
BIG_KEY = "seq/big.bin"
SMALL_DIR = "small"
LIST_DIR = "dir"
CKPT_DIR = "ckpt"           # checkpoint files are written to ckpt-<system>-r<run>/shard-<i>.pt
NULL_NAME = "data.bin"      # the one file of cairn-nullfs
FUSE_SYSTEMS = ("cairn", "rclone", "s3fs")
L2_SYSTEMS = ("cairn", "rclone")  # keep their disk cache across a remount (s3fs runs with del_cache)
ALL_SYSTEMS = FUSE_SYSTEMS + ("ceiling", "local", "nullfs")


def log(*a):
    print(f"[bench {time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


# ----------------------------------------------------------------------------------------------
# configuration


class Config:
    def __init__(self):
        quick = os.environ.get("BENCH_QUICK", "0") == "1"
        e = os.environ
        self.quick = quick
        self.work = e["BENCH_WORKDIR"]
        self.endpoint = e["AWS_ENDPOINT_URL"]
        self.ak = e["AWS_ACCESS_KEY_ID"]
        self.sk = e["AWS_SECRET_ACCESS_KEY"]
        self.region = e.get("AWS_REGION", "us-east-1")
        self.bucket = e.get("BENCH_BUCKET", "bench")
        self.big_bytes = env_int("BENCH_BIG_MIB", 64 if quick else 1024) * MiB
        self.small_n = env_int("BENCH_SMALL_FILES", 300 if quick else 10000)
        self.small_bytes = env_int("BENCH_SMALL_KIB", 110) * 1024
        self.dir_n = env_int("BENCH_DIR_ENTRIES", 2000 if quick else 100000)
        self.dir_bytes = env_int("BENCH_DIR_ENTRY_BYTES", 1024)
        self.runs = env_int("BENCH_RUNS", 1 if quick else 3)
        self.fio_runtime = env_int("BENCH_FIO_RUNTIME", 3 if quick else 20)
        self.threads = env_int("BENCH_THREADS", 8)
        self.fio_jobs = env_int("BENCH_FIO_JOBS", 4)
        self.warm_passes = max(1, env_int("BENCH_WARM_PASSES", 1 if quick else 5))
        self.timeout = env_int("BENCH_TIMEOUT", 1800)
        self.upload_threads = env_int("BENCH_UPLOAD_THREADS", 32)
        self.seed = env_int("BENCH_SEED", 42)
        self.systems = e.get("BENCH_SYSTEMS", "cairn rclone s3fs ceiling local nullfs").split()
        self.workloads = e.get("BENCH_WORKLOADS", "seq rand files list ckpt l2warm small_l2 prefetch").split()
        self.ckpt_files = env_int("BENCH_CKPT_FILES", 4)
        self.ckpt_bytes = env_int("BENCH_CKPT_MIB", 128 if quick else 1024) * MiB
        self.ckpt_write = env_int("BENCH_CKPT_WRITE_MIB", 64) * MiB
        self.ckpt_flush = e.get("BENCH_CKPT_FLUSH", "1") == "1"
        self.l2_l1 = e.get("BENCH_L2_L1", "64MiB")
        self.nullfs_bin = e.get("BENCH_NULLFS_BIN", "cairn-nullfs")
        self.verify = e.get("BENCH_VERIFY", "1") == "1"
        self.server_cache = e.get("BENCH_SERVER_CACHE", "pin")  # pin | drop
        self.garage_dir = e.get("BENCH_GARAGE_DIR", "")
        self.cairn_bin = e.get("BENCH_CAIRN_BIN", "cairn")
        self.cairn_args = shlex.split(e.get("BENCH_CAIRN_ARGS", ""))
        self.rclone_args = shlex.split(e.get("BENCH_RCLONE_ARGS", ""))
        self.s3fs_args = shlex.split(e.get("BENCH_S3FS_ARGS", ""))
        self.cmdline = e.get("BENCH_CMDLINE", "bench/run.sh")
        self.results_dir = e.get("BENCH_RESULTS_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
        # prefetch: a Parquet scan and sequential shard reads, first epoch, per --prefetch mode
        self.pf_modes = e.get("BENCH_PREFETCH_MODES", "learned readahead off").split()
        # first-byte delays (ms) added in front of the store for the prefetch points (cairn-delayproxy)
        self.pf_delays = [int(x) for x in e.get("BENCH_PF_DELAYS", "0 20").split()]
        self.delayproxy_bin = e.get("BENCH_DELAYPROXY_BIN", "cairn-delayproxy")
        self.pq_files = env_int("BENCH_PQ_FILES", 2 if quick else 4)
        self.pq_bytes = env_int("BENCH_PQ_MIB", 16 if quick else 256) * MiB
        self.pq_row_groups = env_int("BENCH_PQ_ROW_GROUPS", 8)
        self.pq_columns = env_int("BENCH_PQ_COLUMNS", 10)
        self.pq_project = [int(x) for x in e.get("BENCH_PQ_PROJECT", "1,4,8").replace(",", " ").split()]
        self.pq_read = env_int("BENCH_PQ_READ_KIB", 1024) * 1024
        self.pq_pause_ms = env_int("BENCH_PQ_PAUSE_MS", 20)
        self.shard_n = env_int("BENCH_SHARDS", 4 if quick else 8)
        self.shard_bytes = env_int("BENCH_SHARD_MIB", 16 if quick else 128) * MiB
        self.shard_threads = env_int("BENCH_SHARD_THREADS", 4)
        self.shard_read = env_int("BENCH_SHARD_READ_KIB", 256) * 1024
        self.shard_pause_ms = env_int("BENCH_SHARD_PAUSE_MS", 2)
        bad = [c for c in self.pq_project if not 0 <= c < self.pq_columns]
        if bad or not self.pq_project:
            raise SystemExit(f"BENCH_PQ_PROJECT: columns {bad or '(none)'} not in 0..{self.pq_columns - 1}")
        self.full_size = (self.big_bytes == 1024 * MiB and self.small_n == 10000 and self.small_bytes == 110 * 1024
                          and self.dir_n == 100000
                          and ("ckpt" not in self.workloads
                               or (self.ckpt_files == 4 and self.ckpt_bytes == 1024 * MiB
                                   and self.ckpt_write == 64 * MiB))
                          and ("prefetch" not in self.workloads
                               or (self.pq_files == 4 and self.pq_bytes == 256 * MiB and self.shard_n == 8
                                   and self.shard_bytes == 128 * MiB)))

    def main_corpus(self):
        """Whether a chosen workload reads the big file, the small files or the directory."""
        return any(w in self.workloads for w in ("seq", "rand", "files", "list", "l2warm", "small_l2"))

    def corpus_text(self):
        t = ""
        if self.main_corpus():
            t = (f"{human(self.big_bytes)} file; {self.small_n:,} × {human(self.small_bytes)} files; "
                 f"{self.dir_n:,} × {human(self.dir_bytes)} entries in one directory")
        if "ckpt" in self.workloads:
            t += f"; checkpoints written: {self.ckpt_files} × {human(self.ckpt_bytes)}"
        if "prefetch" in self.workloads:
            t += (f"; prefetch: {self.pq_files} × {human(self.pq_bytes)} Parquet files, "
                  f"{self.shard_n} × {human(self.shard_bytes)} shards")
        return t.lstrip("; ")


def human(n):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"


# ----------------------------------------------------------------------------------------------
# deterministic corpus content (so that any system's bytes can be checked afterwards)


def big_part(seed, i, total):
    n = min(PART, total - i * PART)
    return random.Random(f"big-{seed}-{i}").randbytes(n)


_pool = None


def pool(seed):
    global _pool
    if _pool is None:
        _pool = random.Random(f"pool-{seed}").randbytes(POOL)
    return _pool


def small_name(i):
    return f"f{i:05d}.bin"


def dir_name(i):
    return f"e{i:06d}"


def small_content(seed, i, size):
    p = pool(seed)
    off = (i * 7919 * 17) % (len(p) - size)
    return p[off:off + size]


def dir_content(seed, i, size):
    p = pool(seed)
    off = (i * 104729 + 13) % (len(p) - size)
    return p[off:off + size]


# checkpoint files: one random buffer of the write size, reused for every write() call, with a 16-byte
# stamp (tag, file, MiB index) at each MiB.  The tag differs per system and run, so that no 1 MiB
# block repeats anywhere and the store cannot deduplicate one system's upload against another's.


def ckpt_name(i):
    return f"shard-{i:02d}.pt"


def ckpt_tag(cfg, system, run):
    return int.from_bytes(hashlib.sha256(f"ckpt-{cfg.seed}-{system}-{run}".encode()).digest()[:8], "little")


def ckpt_base(seed, chunk):
    return bytearray(random.Random(f"ckpt-{seed}").randbytes(chunk))


def ckpt_stamp(buf, tag, file_i, write_k, n):
    """Prepare buf[:n] as write number write_k of file file_i (the buffer size is a multiple of 1 MiB)."""
    base = write_k * len(buf) // MiB
    for j in range(0, n, MiB):
        struct.pack_into("<QQ", buf, j, tag, (file_i << 40) | (base + j // MiB))


def ckpt_sha256(seed, tag, file_i, size, chunk):
    buf = ckpt_base(seed, chunk)
    mv, h, off, k = memoryview(buf), hashlib.sha256(), 0, 0
    while off < size:
        n = min(chunk, size - off)
        ckpt_stamp(buf, tag, file_i, k, n)
        h.update(mv[:n])
        off, k = off + n, k + 1
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# minimal S3 client (SigV4, UNSIGNED-PAYLOAD, keep-alive per thread) for the raw ceilings


class RawS3:
    def __init__(self, cfg):
        u = urllib.parse.urlsplit(cfg.endpoint)
        self.host, self.port, self.netloc = u.hostname, u.port or 80, u.netloc
        self.ak, self.sk, self.region, self.bucket = cfg.ak, cfg.sk, cfg.region, cfg.bucket
        self.local = threading.local()
        self._keys = {}

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        return c

    def _signing_key(self, date):
        k = self._keys.get(date)
        if k is None:
            k = ("AWS4" + self.sk).encode()
            for part in (date, self.region, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._keys[date] = k
        return k

    def sign(self, method, key, query=(), headers=None):
        path = "/" + self.bucket + ("/" + urllib.parse.quote(key, safe="/-_.~") if key else "")
        amzdate = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        h = {k.lower(): str(v) for k, v in (headers or {}).items()}
        h.update({"host": self.netloc, "x-amz-date": amzdate, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        names = sorted(h)
        q = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                     for k, v in sorted(query))
        creq = "\n".join([method, path, q, "".join(f"{n}:{h[n].strip()}\n" for n in names), ";".join(names),
                          "UNSIGNED-PAYLOAD"])
        scope = f"{amzdate[:8]}/{self.region}/s3/aws4_request"
        sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(creq.encode()).hexdigest()])
        sig = hmac.new(self._signing_key(amzdate[:8]), sts.encode(), hashlib.sha256).hexdigest()
        h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.ak}/{scope}, SignedHeaders={';'.join(names)}, "
                              f"Signature={sig}")
        return path + ("?" + q if q else ""), h

    def request(self, method, key, query=(), headers=None, body=None, sink=None):
        """Returns (status, body bytes or byte count when sink (a bytearray) is given)."""
        url, h = self.sign(method, key, query, headers)
        for attempt in range(3):
            c = self._conn()
            try:
                c.request(method, url, body=body, headers=h)
                r = c.getresponse()
                # Garage sends the response head and body in separate segments without TCP_NODELAY; on a
                # reused connection our delayed ACK of the head then stalls the body for 40 ms. Ack now.
                c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                if sink is None:
                    return r.status, r.read()
                mv, n = memoryview(sink), 0
                while True:
                    k = r.readinto(mv)
                    if not k:
                        break
                    n += k
                return r.status, n
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                url, h = self.sign(method, key, query, headers)


def boto_client(cfg, pool_size=32):
    import boto3
    from botocore.config import Config as BotoConfig
    kw = dict(max_pool_connections=pool_size, retries={"max_attempts": 5, "mode": "standard"},
              s3={"addressing_style": "path"})
    try:
        bc = BotoConfig(request_checksum_calculation="when_required",
                        response_checksum_validation="when_required", **kw)
    except TypeError:  # older botocore
        bc = BotoConfig(**kw)
    return boto3.client("s3", endpoint_url=cfg.endpoint, aws_access_key_id=cfg.ak,
                        aws_secret_access_key=cfg.sk, region_name=cfg.region, config=bc)


# ----------------------------------------------------------------------------------------------
# corpus upload


def upload(cfg):
    if not cfg.main_corpus():
        log("no workload reads the big file, the small files or the directory: not uploaded")
        return "main corpus not needed"
    s3 = boto_client(cfg, cfg.upload_threads + 4)
    t0 = time.time()
    # the big object: multipart, parts generated (deterministically) in the worker threads
    nparts = max(1, math.ceil(cfg.big_bytes / PART))
    mpu = s3.create_multipart_upload(Bucket=cfg.bucket, Key=BIG_KEY)

    def put_part(i):
        r = s3.upload_part(Bucket=cfg.bucket, Key=BIG_KEY, UploadId=mpu["UploadId"], PartNumber=i + 1,
                           Body=big_part(cfg.seed, i, cfg.big_bytes))
        return {"PartNumber": i + 1, "ETag": r["ETag"]}

    with cf.ThreadPoolExecutor(4) as ex:
        parts = list(ex.map(put_part, range(nparts)))
    s3.complete_multipart_upload(Bucket=cfg.bucket, Key=BIG_KEY, UploadId=mpu["UploadId"],
                                 MultipartUpload={"Parts": parts})
    t_big = time.time() - t0
    log(f"uploaded {BIG_KEY} ({human(cfg.big_bytes)}) in {t_big:.1f} s")

    # many small objects: raw signed PUTs from many threads (~2,700/s here; boto3 manages ~550/s on
    # 2 cores because of its per-request CPU cost); BENCH_UPLOADER=boto3 to use boto3 instead
    raw = RawS3(cfg)
    use_boto = os.environ.get("BENCH_UPLOADER", "raw") == "boto3"

    def put(item):
        key, body = item
        if use_boto:
            s3.put_object(Bucket=cfg.bucket, Key=key, Body=body)
            return
        st, resp = raw.request("PUT", key, body=body)
        if st != 200:
            raise RuntimeError(f"PUT {key}: HTTP {st} {resp[:300]!r}")

    def items():
        for i in range(cfg.small_n):
            yield f"{SMALL_DIR}/{small_name(i)}", small_content(cfg.seed, i, cfg.small_bytes)
        for i in range(cfg.dir_n):
            yield f"{LIST_DIR}/{dir_name(i)}", dir_content(cfg.seed, i, cfg.dir_bytes)

    t1, done = time.time(), 0
    total = cfg.small_n + cfg.dir_n
    with cf.ThreadPoolExecutor(cfg.upload_threads) as ex:
        # bounded submission keeps memory flat
        pending = set()
        for it in items():
            pending.add(ex.submit(put, it))
            if len(pending) >= cfg.upload_threads * 4:
                finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    f.result()
                    done += 1
                    if done % 20000 == 0:
                        log(f"  {done:,}/{total:,} small objects ({done / (time.time() - t1):.0f}/s)")
        for f in cf.as_completed(pending):
            f.result()
    t_small = time.time() - t1
    log(f"uploaded {total:,} small objects in {t_small:.1f} s ({total / max(t_small, 1e-9):.0f}/s)")
    return (f"{human(cfg.big_bytes)} in {t_big:.1f} s, {total:,} small objects in {t_small:.1f} s "
            f"({total / max(t_small, 1e-9):,.0f}/s)")


# ----------------------------------------------------------------------------------------------
# host helpers: page cache, mounts


_pinned = []


def pin_server_files(root):
    """mmap + mlock every file of the object store's state, so that drop_caches (which never evicts
    locked pages) empties the gateways' caches but leaves the server's data in RAM.  Returns bytes."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    total = 0
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            try:
                size = os.path.getsize(p)
                if size == 0 or size > 8 << 30 or not os.path.isfile(p):
                    continue
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
                if addr in (None, ctypes.c_void_p(-1).value):
                    continue
                if libc.mlock(ctypes.c_void_p(addr), size) != 0:
                    raise OSError(ctypes.get_errno(), f"mlock {p}: {os.strerror(ctypes.get_errno())}")
                _pinned.append((addr, size))
                total += size
            finally:
                os.close(fd)
    return total


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def mountinfo(path):
    """(major:minor, fstype) of the mount at exactly `path`, or None; never touches the mount itself."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].replace("\\040", " ")
            if mp == path:
                sep = fields.index("-")
                return fields[2], fields[sep + 1]
    return None


def fuse_abort(path):
    """Abort the FUSE connection of `path` (unblocks processes stuck on a dead/hung daemon)."""
    mi = mountinfo(path)
    if not mi or not mi[1].startswith("fuse"):
        return False
    conn_dir = "/sys/fs/fuse/connections"
    if not os.listdir(conn_dir):
        subprocess.run(["mount", "-t", "fusectl", "fusectl", conn_dir], stderr=subprocess.DEVNULL)
    minor = mi[0].split(":")[1]
    try:
        with open(f"{conn_dir}/{minor}/abort", "w") as f:
            f.write("1")
        log(f"aborted FUSE connection {minor} of {path}")
        return True
    except OSError as e:
        log(f"could not abort FUSE connection of {path}: {e}")
        return False


def force_unmount(path):
    if not mountinfo(path):
        return
    r = subprocess.run(["fusermount3", "-u", path], stderr=subprocess.DEVNULL, timeout=30)
    if r.returncode != 0 and mountinfo(path):
        fuse_abort(path)
        subprocess.run(["fusermount3", "-u", "-z", path], stderr=subprocess.DEVNULL, timeout=30)
        if mountinfo(path):
            subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL, timeout=30)


class MountError(Exception):
    pass


class Mount:
    """One fresh mount of `system` with an empty cache directory.  With fresh=False the cache directory
    of an earlier mount (same cache_tag, kept with keep=True) is reused, as after a remount."""

    def __init__(self, cfg, system, tag, extra=(), cache_tag=None, fresh=True, keep=False, endpoint=None):
        self.cfg, self.system, self.tag = cfg, system, tag
        self.endpoint = endpoint or cfg.endpoint
        self.extra, self.fresh, self.keep = list(extra), fresh, keep
        self.mnt = os.path.join(cfg.work, "mnt", system)
        self.cache = os.path.join(cfg.work, "cache", f"{system}-{cache_tag or tag}")
        self.logpath = os.path.join(cfg.work, "logs", f"{system}-{tag}.log")
        self.pidfile = os.path.join(cfg.work, "pids", f"{system}.pid")
        self.proc = None

    def command(self):
        c, env = self.cfg, dict(os.environ)
        if self.system == "cairn":
            env.update(AWS_ENDPOINT_URL=self.endpoint, AWS_ACCESS_KEY_ID=c.ak, AWS_SECRET_ACCESS_KEY=c.sk,
                       AWS_REGION=c.region, AWS_ALLOW_HTTP="true")
            return [c.cairn_bin, "mount", f"s3://{c.bucket}", self.mnt, "--foreground",
                    "--cache-dir", self.cache] + c.cairn_args + self.extra, env
        if self.system == "rclone":
            env.pop("AWS_CA_BUNDLE", None)  # rclone 1.60 fails with LoadCustomCABundleError otherwise
            env.update(RCLONE_CONFIG="/dev/null", RCLONE_CONFIG_BENCHS3_TYPE="s3",
                       RCLONE_CONFIG_BENCHS3_PROVIDER="Other", RCLONE_CONFIG_BENCHS3_ENDPOINT=c.endpoint,
                       RCLONE_CONFIG_BENCHS3_REGION=c.region, RCLONE_CONFIG_BENCHS3_ACCESS_KEY_ID=c.ak,
                       RCLONE_CONFIG_BENCHS3_SECRET_ACCESS_KEY=c.sk, RCLONE_CONFIG_BENCHS3_FORCE_PATH_STYLE="true")
            return ["rclone", "mount", f"benchs3:{c.bucket}", self.mnt,
                    "--vfs-cache-mode", "full", "--cache-dir", self.cache,
                    "--vfs-cache-max-size", "10G", "--vfs-cache-max-age", "24h", "--vfs-cache-poll-interval", "30s",
                    "--buffer-size", "32M", "--vfs-read-ahead", "256M",
                    "--vfs-read-chunk-size", "16M", "--vfs-read-chunk-size-limit", "256M", "--max-read-ahead", "1M",
                    "--vfs-write-back", "2s", "--transfers", "8", "--checkers", "16",
                    "--s3-upload-concurrency", "8", "--s3-chunk-size", "16M", "--s3-upload-cutoff", "16M",
                    "--s3-no-check-bucket", "--use-server-modtime",
                    "--dir-cache-time", "5m", "--attr-timeout", "5s", "--poll-interval", "0",
                    "--log-level", "NOTICE"] + c.rclone_args + self.extra, env
        if self.system == "s3fs":
            pw = os.path.join(c.work, "s3fs.passwd")
            fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, f"{c.ak}:{c.sk}\n".encode())
            os.close(fd)
            o = ["url=" + c.endpoint, "use_path_request_style", "endpoint=" + c.region, "passwd_file=" + pw,
                 "use_cache=" + self.cache, "del_cache", "ensure_diskfree=4096",
                 "parallel_count=8", "multipart_size=16", "multireq_max=20", "max_dirty_data=1024",
                 "max_stat_cache_size=100000", "stat_cache_expire=300", "enable_noobj_cache",
                 "mp_umask=022", "dbglevel=warn"]
            cmd = ["s3fs", c.bucket, self.mnt, "-f"]
            for opt in o:
                cmd += ["-o", opt]
            return cmd + c.s3fs_args + self.extra, env
        if self.system == "nullfs":
            return [c.nullfs_bin, self.mnt, str(c.big_bytes), "--name", NULL_NAME] + self.extra, env
        raise ValueError(self.system)

    def __enter__(self):
        force_unmount(self.mnt)
        if self.fresh:
            shutil.rmtree(self.cache, ignore_errors=True)
        os.makedirs(self.cache, exist_ok=True)
        os.makedirs(self.mnt, exist_ok=True)
        cmd, env = self.command()
        self.cmd = cmd
        logf = open(self.logpath, "ab")
        logf.write(("$ " + " ".join(shlex.quote(x) for x in cmd) + "\n").encode())
        logf.flush()
        # own session: a Ctrl-C in the terminal must not kill the daemon before we unmount
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        logf.close()
        with open(self.pidfile, "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.time() + 60
        while time.time() < deadline:
            if mountinfo(self.mnt):
                return self
            if self.proc.poll() is not None:
                raise MountError(f"{self.system} exited with {self.proc.returncode} before mounting: "
                                 + self.log_tail())
            time.sleep(0.1)
        self._stop()
        raise MountError(f"{self.system} did not mount within 60 s: " + self.log_tail())

    def log_tail(self, n=8):
        try:
            with open(self.logpath, errors="replace") as f:
                return " | ".join(l.strip() for l in f.readlines()[-n:])
        except OSError:
            return ""

    def _stop(self, grace=60):
        p = self.proc
        if p is None:
            return
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            log(f"{self.system} still running {grace} s after unmount; terminating")
            p.terminate()
            try:
                p.wait(min(grace, 15))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(15)
        try:
            os.unlink(self.pidfile)
        except OSError:
            pass

    def __exit__(self, exc_type, exc, tb):
        broken = exc_type is not None and issubclass(exc_type, MountBroken)
        if broken:  # a workload hung: do not wait for this daemon politely
            fuse_abort(self.mnt)
        # polite unmount first (the daemon flushes and exits), then escalate
        for _ in range(2 if broken else 10):
            if not mountinfo(self.mnt):
                break
            r = subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.PIPE, timeout=60)
            if r.returncode == 0:
                break
            time.sleep(1)
        if mountinfo(self.mnt):
            log(f"{self.system}: normal unmount failed; aborting and lazy-unmounting")
            force_unmount(self.mnt)
        self._stop(5 if broken else 60)
        if self.proc.returncode not in (0, None):
            log(f"{self.system} exited with status {self.proc.returncode} (log {self.logpath})")
        if not self.keep or broken:
            shutil.rmtree(self.cache, ignore_errors=True)
        return False


class WorkloadError(Exception):
    def __init__(self, msg, timed_out=False):
        super().__init__(msg)
        self.timed_out = timed_out


def run_guarded(cmd, timeout, mnt, env=None):
    """Run cmd (a worker or fio) with a time limit; on timeout abort the FUSE connection so that a
    process blocked in the kernel can die, and raise.  Returns stdout."""
    # own process group: a terminal's Ctrl-C must not reach fio (it would stop early and report), and
    # killing the group also kills fio's job processes, which would otherwise keep the mount busy
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                         start_new_session=True)

    def kill_group():
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    try:
        out, err = p.communicate(timeout=timeout)
    except BaseException as e:
        if not isinstance(e, subprocess.TimeoutExpired):
            kill_group()  # we are being stopped: do not leave a reader holding the mount busy
            raise
        kill_group()
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            fuse_abort(mnt)
            out, err = p.communicate(timeout=60)
        raise WorkloadError(f"timed out after {timeout} s: {' '.join(cmd[:4])}", timed_out=True)
    if p.returncode != 0:
        raise WorkloadError(f"exit {p.returncode}: {(err or out).strip()[-600:]}")
    return out


def worker(cfg, mnt, *args, timeout=None):
    out = run_guarded([sys.executable, os.path.abspath(__file__), "worker", *map(str, args)],
                      timeout or cfg.timeout, mnt)
    return json.loads(out.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# workers (child processes)


def w_seq(path, expected):
    buf = bytearray(MiB)
    mv, n = memoryview(buf), 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(mv)
            if not k:
                break
            n += k
    dt = time.perf_counter() - t0
    if n != int(expected):
        raise SystemExit(f"read {n} bytes, expected {expected}")
    return {"bytes": n, "secs": dt, "mbps": n / dt / 1e6}


def w_files(d, count, size, threads, seed):
    count, size, threads = int(count), int(size), int(threads)
    names = [os.path.join(d, small_name(i)) for i in range(count)]
    random.Random(int(seed)).shuffle(names)
    it, lock, errors, total = iter(names), threading.Lock(), [], [0]

    def run():
        buf = bytearray(size + 65536)
        mv, got = memoryview(buf), 0
        while True:
            with lock:
                p = next(it, None)
            if p is None:
                break
            n = 0
            with open(p, "rb", buffering=0) as f:
                while True:
                    k = f.readinto(mv[n:])
                    if not k:
                        break
                    n += k
            if n != size:
                errors.append(f"{p}: {n} bytes")
            got += n
        with lock:
            total[0] += got

    t0 = time.perf_counter()
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} short reads, e.g. {errors[:3]}")
    return {"files": count, "bytes": total[0], "secs": dt, "files_per_s": count / dt, "mbps": total[0] / dt / 1e6}


def w_list(d, expected):
    n = [0]

    def walk(p):
        with os.scandir(p) as it:
            for e in it:
                st = os.lstat(e.path)  # what `ls -l` does per entry
                n[0] += 1
                if stat.S_ISDIR(st.st_mode):
                    walk(e.path)

    t0 = time.perf_counter()
    walk(d)
    dt = time.perf_counter() - t0
    if n[0] != int(expected):
        raise SystemExit(f"listed {n[0]} entries, expected {expected}")
    return {"entries": n[0], "secs": dt}


def w_first(path, size, seed):
    """open + one 4 KiB pread at a random offset, then a second one elsewhere (ms each)."""
    rng = random.Random(int(seed))
    blocks = int(size) // 4096
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        a = os.pread(fd, 4096, rng.randrange(blocks // 4, 3 * blocks // 4) * 4096)
        t1 = time.perf_counter()
        b = os.pread(fd, 4096, rng.randrange(blocks) * 4096)
        t2 = time.perf_counter()
    finally:
        os.close(fd)
    if len(a) != 4096 or len(b) != 4096:
        raise SystemExit("short read")
    return {"first_ms": (t1 - t0) * 1e3, "second_ms": (t2 - t1) * 1e3}


def w_odirect(path):
    buf = mmap.mmap(-1, 4096)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as e:
        return {"direct": False, "why": f"open: {e}"}
    try:
        os.preadv(fd, [buf], 0)
        return {"direct": True}
    except OSError as e:
        return {"direct": False, "why": f"read: {e}"}
    finally:
        os.close(fd)


def w_verify(mnt, seed, big_bytes, small_n, small_bytes, dir_n, dir_bytes):
    """Compare a sample of every object kind with the bytes that were uploaded."""
    seed, big_bytes, small_n, small_bytes, dir_n, dir_bytes = map(int, (seed, big_bytes, small_n, small_bytes, dir_n, dir_bytes))
    rng, bad = random.Random(), []
    nparts = math.ceil(big_bytes / PART)
    with open(os.path.join(mnt, BIG_KEY), "rb") as f:
        for i in sorted({0, nparts - 1, *rng.sample(range(nparts), min(4, nparts))}):
            want = big_part(seed, i, big_bytes)
            off = rng.randrange(0, len(want) - 4096) if len(want) > 4096 else 0
            f.seek(i * PART + off)
            if f.read(4096) != want[off:off + 4096]:
                bad.append(f"{BIG_KEY} part {i} +{off}")
    for i in rng.sample(range(small_n), min(20, small_n)):
        with open(os.path.join(mnt, SMALL_DIR, small_name(i)), "rb") as f:
            if f.read() != small_content(seed, i, small_bytes):
                bad.append(small_name(i))
    for i in rng.sample(range(dir_n), min(20, dir_n)):
        with open(os.path.join(mnt, LIST_DIR, dir_name(i)), "rb") as f:
            if f.read() != dir_content(seed, i, dir_bytes):
                bad.append(dir_name(i))
    return {"ok": not bad, "bad": bad[:10]}


def w_ckpt(d, files, size, chunk, tag, seed):
    """Checkpoint-style writes: per file open, write() calls of `chunk` bytes, fsync, close; one file after
    the other.  Times are CLOCK_MONOTONIC (comparable with the parent's time.monotonic())."""
    files, size, chunk, tag, seed = map(int, (files, size, chunk, tag, seed))
    os.makedirs(d, exist_ok=True)
    buf = ckpt_base(seed, chunk)
    mv = memoryview(buf)
    fsyncs, closes = [], []
    t_start, t_first = time.monotonic(), None
    for i in range(files):
        fd = os.open(os.path.join(d, ckpt_name(i)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            off, k = 0, 0
            while off < size:
                n = min(chunk, size - off)
                ckpt_stamp(buf, tag, i, k, n)
                if t_first is None:
                    t_first = time.monotonic()
                w = 0
                while w < n:
                    w += os.write(fd, mv[w:n])
                off, k = off + n, k + 1
            t = time.monotonic()
            os.fsync(fd)
            fsyncs.append(time.monotonic() - t)
        finally:
            t = time.monotonic()
            os.close(fd)
            closes.append(time.monotonic() - t)
    t_end = time.monotonic()
    total = files * size
    return {"bytes": total, "t_start": t_start, "t_first": t_first, "t_end": t_end, "fsync_s": fsyncs,
            "close_s": closes, "secs": t_end - t_first, "mbps": total / (t_end - t_first) / 1e6}


WORKERS = {"first": w_first, "seq": w_seq, "files": w_files, "list": w_list, "odirect": w_odirect, "verify": w_verify,
           "ckpt": w_ckpt}  # and parquet, shards (below)


# ----------------------------------------------------------------------------------------------
# fio


def fio(cfg, mnt, path, jobs, direct, label):
    cmd = ["fio", f"--name={label}", f"--filename={path}", "--readonly", "--rw=randread", "--bs=4k",
           "--ioengine=psync", "--iodepth=1", f"--numjobs={jobs}", "--thread", "--group_reporting", "--time_based",
           f"--runtime={cfg.fio_runtime}", f"--direct={1 if direct else 0}", "--invalidate=1",
           "--output-format=json"]
    t0 = time.perf_counter()
    out = run_guarded(cmd, cfg.fio_runtime * 3 + 180, mnt)
    wall = time.perf_counter() - t0
    data = json.loads(out[out.index("{"):])
    job = data["jobs"][0]
    rd = job["read"]
    if job.get("error"):
        raise WorkloadError(f"fio error {job['error']}")
    pct = rd.get("clat_ns", {}).get("percentile", {})
    return {"iops": rd["iops"], "mbps": rd["bw_bytes"] / 1e6, "ios": rd["total_ios"], "direct": direct,
            "p50_us": pct.get("50.000000", 0) / 1e3, "p99_us": pct.get("99.000000", 0) / 1e3, "wall_s": wall}


# ----------------------------------------------------------------------------------------------
# measurements


class Results:
    def __init__(self, path):
        self.path = path
        self.rows = []
        self.errors = []

    def add(self, run, system, workload, value, **extra):
        r = {"run": run, "system": system, "workload": workload, "value": value, **extra}
        self.rows.append(r)
        with open(self.path, "a") as f:
            f.write(json.dumps(r) + "\n")
        log(f"  run {run} {system:7s} {workload:14s} {value:12.1f}  {fmt_extra(extra)}")

    def error(self, run, system, what, msg):
        self.errors.append({"run": run, "system": system, "what": what, "error": str(msg)})
        with open(self.path, "a") as f:
            f.write(json.dumps({"run": run, "system": system, "error": str(msg), "what": what}) + "\n")
        log(f"  run {run} {system}: {what} FAILED: {msg}")


def fmt_extra(extra):
    return " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items())


class MountBroken(Exception):
    """A workload timed out: the mount is not trusted for the remaining steps."""


def step(res, run, system, name, fn, record):
    """Run one measured step; record its value or its error.  Returns False when it failed."""
    try:
        record(fn())
        return True
    except WorkloadError as e:
        res.error(run, system, name, e)
        if e.timed_out:
            raise MountBroken(name) from e
        return False


def measure_fuse(cfg, res, run, system):
    w = cfg.workloads
    if any(x in w for x in ("seq", "rand", "files", "list")):
        measure_reads(cfg, res, run, system)
    if "ckpt" in w:
        measure_ckpt(cfg, res, run, system)
    if system in L2_SYSTEMS and ("l2warm" in w or "small_l2" in w):
        measure_l2(cfg, res, run, system)
    if system == "cairn" and "prefetch" in w:
        measure_prefetch(cfg, res, run)


def measure_reads(cfg, res, run, system):
    w = cfg.workloads
    big = lambda m: os.path.join(m.mnt, BIG_KEY)

    def fio_record(name):
        return lambda r: res.add(run, system, name, r.pop("iops"),
                                 **{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()})

    def seq(m, phase):
        if phase == "warm":
            return warm_seq(cfg, m.mnt, big(m))
        drop_caches()
        return worker(cfg, m.mnt, "seq", big(m), cfg.big_bytes)

    def files(m, phase):
        drop_caches()
        return worker(cfg, m.mnt, "files", os.path.join(m.mnt, SMALL_DIR), cfg.small_n, cfg.small_bytes,
                      cfg.threads, cfg.seed + run * 10 + (phase == "warm"))

    def listing(m):
        drop_caches()
        return worker(cfg, m.mnt, "list", os.path.join(m.mnt, LIST_DIR), cfg.dir_n)

    def rand(m, jobs, name):
        direct = probe_direct(cfg, res, m, system)
        drop_caches()
        return fio(cfg, m.mnt, big(m), jobs, direct, name)

    # mount A: sequential cold -> warm, warm random reads, small files cold -> warm, listing cold -> warm
    try:
        with Mount(cfg, system, f"r{run}a") as m:
            res.mount_cmds[system] = m.cmd
            if "seq" in w or "rand" in w:  # with rand only, the cold read just fills the cache (not recorded)
                rss_reset = reset_peak_rss(m.proc.pid)
                rec = (lambda r: res.add(run, system, "seq_cold", r["mbps"], secs=round(r["secs"], 2))) \
                    if "seq" in w else (lambda r: None)
                if step(res, run, system, "seq_cold", lambda: seq(m, "cold"), rec) and "seq" in w:
                    before = cairn_metrics(cfg, m.mnt) if system == "cairn" else {}

                    def rec_warm(r):
                        x = {}
                        if before:  # where cairn's warm read came from: L1 (RAM), L2 (disk) or the store
                            after = cairn_metrics(cfg, m.mnt)
                            for tier in ("l1", "l2"):
                                x[f"{tier}_hits"] = int(metric(after, "cache_hits_total", tier)
                                                        - metric(before, "cache_hits_total", tier))
                            x["from_store_mib"] = round((metric(after, "store_get_bytes_total")
                                                         - metric(before, "store_get_bytes_total")) / MiB, 1)
                        res.add(run, system, "seq_warm", r["mbps"], secs=round(r["secs"], 2),
                                passes=r["passes"], **x)
                    step(res, run, system, "seq_warm", lambda: seq(m, "warm"), rec_warm)
                if "seq" in w:
                    record_rss(cfg, res, run, system, m, "rss_seq", rss_reset)
            if "rand" in w:
                for jobs, name in ((1, "rand_qd1_warm"), (cfg.fio_jobs, "rand_jobs_warm")):
                    step(res, run, system, name, lambda: rand(m, jobs, name), fio_record(name))
            if "files" in w:
                rss_reset = reset_peak_rss(m.proc.pid)
                for phase in ("cold", "warm"):
                    if not step(res, run, system, f"files_{phase}", lambda: files(m, phase),
                                lambda r: res.add(run, system, f"files_{phase}", r["files_per_s"],
                                                  mbps=round(r["mbps"], 1), secs=round(r["secs"], 2))):
                        break
                record_rss(cfg, res, run, system, m, "rss_files", rss_reset)
            if "list" in w:
                for phase in ("cold", "warm"):
                    if not step(res, run, system, f"list_{phase}", lambda: listing(m),
                                lambda r: res.add(run, system, f"list_{phase}", r["secs"], entries=r["entries"])):
                        break
            if cfg.verify and run == 1:
                def check(r):
                    res.verified[system] = r["ok"]
                    if not r["ok"]:
                        res.error(run, system, "verify", f"content mismatch: {r['bad']}")
                step(res, run, system, "verify",
                     lambda: worker(cfg, m.mnt, "verify", m.mnt, cfg.seed, cfg.big_bytes, cfg.small_n,
                                    cfg.small_bytes, cfg.dir_n, cfg.dir_bytes), check)
    except MountError as e:
        res.error(run, system, "mount", e)
        return
    except MountBroken as e:
        log(f"  {system}: {e} timed out; rest of this mount's workloads skipped")
    # mounts B and C: random reads, each on a fresh mount with nothing cached anywhere
    if "rand" in w:
        for jobs, name in ((1, "rand_qd1_cold"), (cfg.fio_jobs, "rand_jobs_cold")):
            try:
                with Mount(cfg, system, f"r{run}-{name}") as m:
                    drop_caches()
                    step(res, run, system, "rand_first_cold",
                         lambda: worker(cfg, m.mnt, "first", big(m), cfg.big_bytes, cfg.seed + run * 10 + jobs),
                         lambda r: res.add(run, system, "rand_first_cold", r["first_ms"],
                                           second_ms=round(r["second_ms"], 2)))
                    step(res, run, system, name, lambda: rand(m, jobs, name), fio_record(name))
            except MountError as e:
                res.error(run, system, "mount", e)
                return
            except MountBroken:
                pass


def probe_direct(cfg, res, m, system):
    """O_DIRECT support, probed on one small file (so the big file stays cold)."""
    if system in res.direct:
        return res.direct[system]
    target = os.path.join(m.mnt, SMALL_DIR, small_name(cfg.small_n - 1))
    try:
        r = worker(cfg, m.mnt, "odirect", target, timeout=120)
    except WorkloadError as e:
        if e.timed_out:
            raise
        r = {"direct": False, "why": str(e)}
    res.direct[system] = r["direct"]
    if not r["direct"]:
        log(f"  {system}: O_DIRECT not usable ({r.get('why')}); fio runs buffered with page cache dropped")
    return r["direct"]


# ---- daemon memory and cairn's own counters


def reset_peak_rss(pid):
    """Reset the peak RSS (VmHWM) of pid to its current RSS (clear_refs 5, Linux >= 4.0); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mib(pid):
    """(VmHWM, VmRSS) of pid in MiB, or (None, None)."""
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS"):
                    vals[k] = int(v.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return vals.get("VmHWM"), vals.get("VmRSS")


def cairn_metrics(cfg, mnt):
    """`cairn stats --prometheus MNT` as {series: value}; {} when it fails."""
    try:
        out = subprocess.run([cfg.cairn_bin, "stats", "--prometheus", mnt], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    d = {}
    for line in out.splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            try:
                d[name] = float(v)
            except ValueError:
                pass
    return d


def metric(d, name, tier=None):
    """Sum of the series `name` (with any registry prefix) in cairn_metrics() output, one tier or all."""
    total = 0.0
    for k, v in d.items():
        base, _, labels = k.partition("{")
        if base.endswith(name) and (tier is None or f'tier="{tier}"' in labels):
            total += v
    return total


def record_rss(cfg, res, run, system, m, name, was_reset):
    """Peak RSS of the mount's daemon since reset_peak_rss() (or since it started, if that was refused)."""
    hwm, now = rss_mib(m.proc.pid)
    if hwm is None:
        return
    extra = {"rss_now_mib": round(now, 1), "peak_since": "reset" if was_reset else "start"}
    if system == "cairn":
        d = cairn_metrics(cfg, m.mnt)
        if d:
            extra["l1_budget_mib"] = round(metric(d, "cache_budget_bytes", "l1") / MiB, 1)
            extra["l1_used_mib"] = round(metric(d, "cache_size_bytes", "l1") / MiB, 1)
    res.add(run, system, name, hwm, **extra)


# ---- checkpoint writes


def pctl(vals, p):
    """Nearest-rank percentile."""
    v = sorted(vals)
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def bucket_sizes(raw, prefix):
    """{key: size} of every object under prefix (ListObjectsV2)."""
    out, token = {}, None
    while True:
        q = [("list-type", "2"), ("prefix", prefix), ("max-keys", "1000")]
        if token:
            q.append(("continuation-token", token))
        try:
            st, body = raw.request("GET", "", query=q)
        except (OSError, http.client.HTTPException) as e:
            raise WorkloadError(f"list {prefix}: {e}") from e
        if st != 200:
            raise WorkloadError(f"list {prefix}: HTTP {st}: {body[:200]!r}")
        text = body.decode()
        for c in text.split("<Contents>")[1:]:
            k, z = re.search(r"<Key>([^<]*)</Key>", c), re.search(r"<Size>(\d+)</Size>", c)
            if k and z:
                out[k.group(1)] = int(z.group(1))
        m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", text)
        if "<IsTruncated>true</IsTruncated>" not in text or not m:
            return out
        token = m.group(1)


def wait_in_bucket(cfg, raw, prefix, want, flush=None):
    """Poll the bucket (every 50 ms) until every key of want ({key: size}) is listed with its size.  Returns
    (time.monotonic() when it was seen complete, when `flush` (a Popen) was seen to exit or None, whether
    flush exited 0 while something was still missing)."""
    deadline = time.monotonic() + cfg.timeout
    flush_at, flush_early = None, False
    while True:
        exited = flush is not None and flush_at is None and flush.poll() is not None
        if exited:
            flush_at = time.monotonic()
        sizes = bucket_sizes(raw, prefix)
        now = time.monotonic()
        missing = {k: sizes.get(k) for k, v in want.items() if sizes.get(k) != v}
        if exited and missing and flush.returncode == 0:
            flush_early = True
        if not missing:
            return now, flush_at, flush_early
        if now > deadline:
            raise WorkloadError(f"not in the bucket after {cfg.timeout} s (key: size seen): {missing}")
        time.sleep(0.05)


def bucket_sha256(cfg, key):
    body = boto_client(cfg, 4).get_object(Bucket=cfg.bucket, Key=key)["Body"]
    h, n = hashlib.sha256(), 0
    for c in body.iter_chunks(8 * MiB):
        h.update(c)
        n += len(c)
    return h.hexdigest(), n


def measure_ckpt(cfg, res, run, system):
    """ckpt: write cfg.ckpt_files files like torch.save of shards (write() calls of cfg.ckpt_write bytes, fsync,
    close, one file after the other) through a fresh mount, or to the local disk for system `local`.  Then
    wait until the bucket lists every file with its size (checked here, independently of the gateway),
    check one file's sha256 in the bucket, and delete the files."""
    # a top-level directory of its own per system and run, deleted afterwards with any directory marker
    # objects: a gateway must not meet another's markers (below a `ckpt/` marker written by cairn, 0 bytes
    # without Content-Type, s3fs 1.90 failed to create a directory with ENOTDIR)
    prefix = f"{CKPT_DIR}-{system}-r{run}"
    tag = ckpt_tag(cfg, system, run)
    want = {f"{prefix}/{ckpt_name(i)}": cfg.ckpt_bytes for i in range(cfg.ckpt_files)}
    args = (cfg.ckpt_files, cfg.ckpt_bytes, cfg.ckpt_write, tag, cfg.seed)
    out = {}

    def record_write(r):
        out.update(r)
        fs, cl = [x * 1e3 for x in r["fsync_s"]], [x * 1e3 for x in r["close_s"]]
        res.add(run, system, "ckpt_write", r["mbps"], secs=round(r["secs"], 2),
                fsync_p50_ms=round(statistics.median(fs), 1), fsync_p99_ms=round(pctl(fs, 99), 1),
                close_p50_ms=round(statistics.median(cl), 1), close_max_ms=round(max(cl), 1),
                fsync_ms=[round(x, 1) for x in fs])

    if system == "local":
        d = os.path.join(cfg.work, "local", prefix)
        shutil.rmtree(d, ignore_errors=True)
        drop_caches()
        try:
            step(res, run, system, "ckpt_write", lambda: worker(cfg, d, "ckpt", d, *args), record_write)
        except MountBroken:
            pass
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return

    raw = RawS3(cfg)
    try:
        with Mount(cfg, system, f"r{run}-ckpt") as m:
            drop_caches()
            if step(res, run, system, "ckpt_write",
                    lambda: worker(cfg, m.mnt, "ckpt", os.path.join(m.mnt, prefix), *args), record_write):
                flush = None
                if system == "cairn" and cfg.ckpt_flush:
                    flush = subprocess.Popen([cfg.cairn_bin, "flush", m.mnt], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                seen = {}
                try:
                    step(res, run, system, "ckpt_bucket", lambda: wait_in_bucket(cfg, raw, prefix + "/", want, flush),
                         lambda r: seen.update(done=r[0], flush_at=r[1], flush_early=r[2]))
                finally:
                    if flush is not None:
                        try:
                            _, err = flush.communicate(timeout=120)
                        except subprocess.TimeoutExpired:
                            flush.kill()
                            _, err = flush.communicate()
                        seen.setdefault("flush_at", None)
                        if seen["flush_at"] is None and flush.returncode == 0:
                            seen["flush_at"] = time.monotonic()
                        if flush.returncode != 0:
                            res.error(run, system, "cairn flush", f"exit {flush.returncode}: {err.strip()[-300:]}")
                if "done" in seen:
                    how = {"cairn": "cairn flush" if flush is not None else "flusher (--flush-delay)",
                           "rclone": "--vfs-write-back 2s", "s3fs": "upload on fsync/close"}
                    extra = {"after_last_close_s": round(seen["done"] - out["t_end"], 2), "how": how[system]}
                    if seen.get("flush_at"):
                        extra["flush_exit_after_close_s"] = round(seen["flush_at"] - out["t_end"], 2)
                    if system == "cairn":
                        d = cairn_metrics(cfg, m.mnt)
                        if d:
                            extra.update(uploads=int(metric(d, "cairn_write_uploads_total")),
                                         uploaded_mib=round(metric(d, "cairn_write_uploaded_bytes_total") / MiB, 1),
                                         throttled=int(metric(d, "cairn_write_throttled_total")),
                                         upload_failures=int(metric(d, "cairn_write_upload_failures_total")))
                    res.add(run, system, "ckpt_bucket", seen["done"] - out["t_start"], **extra)
                    if seen.get("flush_early"):
                        res.error(run, system, "cairn flush", "exited 0 before every file was in the bucket")
    except MountError as e:
        res.error(run, system, "mount", e)
    except MountBroken:
        log(f"  {system}: ckpt timed out; mount aborted")
    try:
        if cfg.verify and "t_end" in out:
            sizes = bucket_sizes(raw, prefix + "/")
            bad = [f"{k}: {sizes.get(k)} bytes" for k, v in want.items() if sizes.get(k) != v]
            last = f"{prefix}/{ckpt_name(cfg.ckpt_files - 1)}"
            if not bad:
                got, n = bucket_sha256(cfg, last)
                if got != ckpt_sha256(cfg.seed, tag, cfg.ckpt_files - 1, cfg.ckpt_bytes, cfg.ckpt_write):
                    bad.append(f"{last}: sha256 differs ({n} bytes read)")
            res.ckpt_verified[system] = res.ckpt_verified.get(system, True) and not bad
            if bad:
                res.error(run, system, "ckpt verify", f"bucket content mismatch: {bad[:4]}")
    except Exception as e:  # noqa: BLE001 - a failed check is reported, the run goes on
        res.ckpt_verified[system] = False
        res.error(run, system, "ckpt verify", e)
    finally:
        try:  # do not let 4 GiB per system and run pile up in the store
            for k in bucket_sizes(raw, prefix + "/"):
                raw.request("DELETE", k)
        except Exception as e:  # noqa: BLE001
            log(f"  could not delete {prefix}/ from the bucket: {e}")


# ---- reads from the disk cache after a remount


def measure_l2(cfg, res, run, system):
    """l2warm / small_l2: fill the disk cache with one cold read on a mount with a small RAM cache (cairn:
    --l1-cache-size cfg.l2_l1), unmount, mount again on the same cache directory, drop the page cache and
    read again: the big file, then the small files in another shuffled order."""
    w = cfg.workloads
    tag = f"r{run}-l2"
    extra = ["--l1-cache-size", cfg.l2_l1] if system == "cairn" else []
    fill = {}

    def seq(m):
        drop_caches()
        return worker(cfg, m.mnt, "seq", os.path.join(m.mnt, BIG_KEY), cfg.big_bytes)

    def files(m, seed):
        drop_caches()
        return worker(cfg, m.mnt, "files", os.path.join(m.mnt, SMALL_DIR), cfg.small_n, cfg.small_bytes,
                      cfg.threads, seed)

    def counters(m):
        if system != "cairn":
            return {}
        d = cairn_metrics(cfg, m.mnt)
        return {"store": metric(d, "store_get_bytes_total"), "l2_hits": metric(d, "cache_hits_total", "l2"),
                "l2_admitted": metric(d, "cache_admitted_bytes_total", "l2"),
                "l2_skipped": metric(d, "cache_admissions_skipped_total", "l2")}

    def measured(m, name, fn, value_key, **more):
        before = counters(m)

        def record(r):
            x = dict(more)
            after = counters(m)
            if after and before:
                x["from_store_mib"] = round((after["store"] - before["store"]) / MiB, 1)
                x["l2_hits"] = int(after["l2_hits"] - before["l2_hits"])
            if "mbps" in r and value_key != "mbps":
                x["mbps"] = round(r["mbps"], 1)
            res.add(run, system, name, r[value_key], secs=round(r["secs"], 2), **x)
        step(res, run, system, name, fn, record)

    try:
        with Mount(cfg, system, f"{tag}-fill", extra=extra, cache_tag=tag, keep=True) as m:
            if "l2warm" in w:
                step(res, run, system, "l2warm fill", lambda: seq(m),
                     lambda r: fill.update(fill_mbps=round(r["mbps"], 1)))
            if "small_l2" in w:
                step(res, run, system, "small_l2 fill", lambda: files(m, cfg.seed + run * 10 + 5),
                     lambda r: fill.update(fill_files_per_s=round(r["files_per_s"], 1)))
            c = counters(m)
            if c:
                fill.update(l2_admitted_mib=round(c["l2_admitted"] / MiB, 1), l2_skipped=int(c["l2_skipped"]))
        with Mount(cfg, system, f"{tag}-warm", extra=extra, cache_tag=tag, fresh=False) as m:
            res.mount_cmds[f"{system} (l2warm, small_l2)"] = m.cmd
            if "l2warm" in w:
                measured(m, "l2warm", lambda: seq(m), "mbps",
                         **{k: v for k, v in fill.items() if not k.startswith("fill_files")})
            if "small_l2" in w:
                measured(m, "small_l2", lambda: files(m, cfg.seed + run * 10 + 6), "files_per_s",
                         **{k: v for k, v in fill.items() if k == "fill_files_per_s"})
    except MountError as e:
        res.error(run, system, "mount", e)
    except MountBroken as e:
        log(f"  {system}: {e} timed out; rest of this workload skipped")
    finally:
        shutil.rmtree(os.path.join(cfg.work, "cache", f"{system}-{tag}"), ignore_errors=True)


# ---- prefetch: first epoch of a Parquet scan and of sequential shard reads, per --prefetch mode
#
# The Parquet files are Parquet-like: "PAR1", column chunks of random bytes, a real Thrift-compact
# FileMetaData footer (the fields cairn's layout probe reads), the footer length (u32 LE), "PAR1"; the
# same encoder as parquet_file() in tests/prefetch_e2e.rs.  The shards are random bytes named .tar.

PQ_DIR = "tables"
SHARD_DIR = "shards"
T_I32, T_I64, T_BINARY, T_LIST, T_STRUCT = 5, 6, 8, 9, 12


class Compact:
    """A minimal Thrift compact-protocol writer (just what a FileMetaData needs)."""

    def __init__(self):
        self.out, self.last = bytearray(), []

    def varint(self, v):
        while v >= 0x80:
            self.out.append((v & 0x7F) | 0x80)
            v >>= 7
        self.out.append(v)

    def zigzag(self, v):
        self.varint(((v << 1) ^ (v >> 63)) & 0xFFFFFFFFFFFFFFFF)

    def field(self, fid, ty):
        delta, self.last[-1] = fid - self.last[-1], fid
        if 1 <= delta <= 15:
            self.out.append((delta << 4) | ty)
        else:
            self.out.append(ty)
            self.zigzag(fid)

    def begin(self):
        self.last.append(0)

    def end(self):
        self.out.append(0)
        self.last.pop()

    def i32(self, fid, v):
        self.field(fid, T_I32)
        self.zigzag(v)

    def i64(self, fid, v):
        self.field(fid, T_I64)
        self.zigzag(v)

    def list(self, fid, elem, n):
        self.field(fid, T_LIST)
        if n < 15:
            self.out.append((n << 4) | elem)
        else:
            self.out.append(0xF0 | elem)
            self.varint(n)

    def binary(self, b):  # a list element
        self.varint(len(b))
        self.out += b


def pq_name(i):
    return f"part-{i:05d}.parquet"


def shard_name(i):
    return f"shard-{i:05d}.tar"


def pq_layout(file_bytes, row_groups, columns):
    """Column chunk ranges [row_group][column] = (offset, length): the data of a file of about file_bytes
    split into row_groups equal row groups of columns columns of varying width (column c is about
    (1 + 2c/columns) times as wide as column 0)."""
    rg_bytes = max(columns, (file_bytes - 4 - 64 * 1024) // row_groups)  # room for the footer
    weights = [columns + 2 * c for c in range(columns)]
    lens = [rg_bytes * w // sum(weights) for w in weights]
    lens[-1] += rg_bytes - sum(lens)
    ranges, off = [], 4
    for _ in range(row_groups):
        rg = []
        for n in lens:
            rg.append((off, n))
            off += n
        ranges.append(rg)
    return ranges


def pq_footer(ranges):
    """The Thrift-compact FileMetaData of a file with these column chunks."""
    t = Compact()
    t.begin()
    t.i32(1, 1)  # version
    t.list(2, T_STRUCT, 0)  # schema (not needed for offsets)
    t.i64(3, 1000 * len(ranges))  # num_rows
    t.list(4, T_STRUCT, len(ranges))  # row_groups
    for rg in ranges:
        t.begin()
        t.list(1, T_STRUCT, len(rg))  # columns
        for c, (start, n) in enumerate(rg):
            t.begin()  # ColumnChunk
            t.i64(2, start + n)  # file_offset
            t.field(3, T_STRUCT)  # meta_data: ColumnMetaData
            t.begin()
            t.i32(1, 6)  # type BYTE_ARRAY
            t.list(2, T_I32, 1)  # encodings
            t.zigzag(0)
            t.list(3, T_BINARY, 1)  # path_in_schema
            t.binary(f"col{c}".encode())
            t.i32(4, 0)  # codec UNCOMPRESSED
            t.i64(5, 1000)  # num_values
            t.i64(6, n)  # total_uncompressed_size
            t.i64(7, n)  # total_compressed_size
            t.i64(9, start)  # data_page_offset
            t.end()
            t.end()
        t.i64(2, sum(n for _, n in rg))  # total_byte_size
        t.i64(3, 1000)  # num_rows
        t.end()
    t.end()
    return bytes(t.out)


def pq_content(seed, i, ranges):
    """The bytes of Parquet file i."""
    footer = pq_footer(ranges)
    data_len = ranges[-1][-1][0] + ranges[-1][-1][1] - 4
    out = bytearray(b"PAR1")
    for k in range(math.ceil(data_len / PART)):
        out += random.Random(f"pq-{seed}-{i}-{k}").randbytes(min(PART, data_len - k * PART))
    out += footer + struct.pack("<I", len(footer)) + b"PAR1"
    return out


def pq_reads(size, flen, ranges, project, read):
    """(offset, length) of every pread of the scan, in order: tail, footer, then the projected column chunks
    of each row group in `read`-byte preads (None marks the end of a row group: the compute pause)."""
    yield size - 8, 8
    yield size - 8 - flen, flen
    for rg in ranges:
        for c in project:
            start, n = rg[c]
            for off in range(start, start + n, read):
                yield off, min(read, start + n - off)
        yield None


def shard_part(seed, i, k, total):
    return random.Random(f"shard-{seed}-{i}-{k}").randbytes(min(PART, total - k * PART))


def upload_prefetch(cfg):
    """Upload the Parquet files and the shards; returns (expected CRC-32s {kind: [per file]}, summary)."""
    s3 = boto_client(cfg, 8)
    t0 = time.time()
    ranges = pq_layout(cfg.pq_bytes, cfg.pq_row_groups, cfg.pq_columns)
    expect = {"parquet": [], "shards": []}

    def put(key, nparts, part):
        if nparts == 1:
            s3.put_object(Bucket=cfg.bucket, Key=key, Body=part(0))
            return
        mpu = s3.create_multipart_upload(Bucket=cfg.bucket, Key=key)

        def one(k):
            r = s3.upload_part(Bucket=cfg.bucket, Key=key, UploadId=mpu["UploadId"], PartNumber=k + 1, Body=part(k))
            return {"PartNumber": k + 1, "ETag": r["ETag"]}
        with cf.ThreadPoolExecutor(4) as ex:
            parts = list(ex.map(one, range(nparts)))
        s3.complete_multipart_upload(Bucket=cfg.bucket, Key=key, UploadId=mpu["UploadId"],
                                     MultipartUpload={"Parts": parts})

    pq_total = 0
    for i in range(cfg.pq_files):
        data = pq_content(cfg.seed, i, ranges)
        mv = memoryview(data)
        put(f"{PQ_DIR}/{pq_name(i)}", math.ceil(len(data) / PART), lambda k: bytes(mv[k * PART:(k + 1) * PART]))
        flen = struct.unpack_from("<I", data, len(data) - 8)[0]
        crc = 0
        for r in pq_reads(len(data), flen, ranges, cfg.pq_project, cfg.pq_read):
            if r:
                crc = zlib.crc32(mv[r[0]:r[0] + r[1]], crc)
        expect["parquet"].append(crc)
        pq_total += len(data)
        del mv
    for i in range(cfg.shard_n):
        nparts = math.ceil(cfg.shard_bytes / PART)
        crc = 0
        for k in range(nparts):  # generating twice is cheaper than keeping a shard in memory
            crc = zlib.crc32(shard_part(cfg.seed, i, k, cfg.shard_bytes), crc)
        put(f"{SHARD_DIR}/{shard_name(i)}", nparts, lambda k, i=i: shard_part(cfg.seed, i, k, cfg.shard_bytes))
        expect["shards"].append(crc)
    dt = time.time() - t0
    demand = pq_demand(cfg, ranges)
    log(f"uploaded {cfg.pq_files} Parquet files ({human(pq_total)}, {human(demand)} demanded by the scan) and "
        f"{cfg.shard_n} shards ({human(cfg.shard_n * cfg.shard_bytes)}) in {dt:.1f} s")
    return expect, (f"prefetch corpus ({human(pq_total)} Parquet, {human(cfg.shard_n * cfg.shard_bytes)} shards) "
                    f"in {dt:.1f} s")


def pq_demand(cfg, ranges):
    """Bytes one scan of all the Parquet files reads (the column chunks it asks for; footers not counted)."""
    return cfg.pq_files * sum(rg[c][1] for rg in ranges for c in cfg.pq_project)


def w_parquet(d, files, file_bytes, row_groups, columns, project, read, pause_ms, verify):
    """Scan like a Parquet reader feeding a training step: per file, the last 8 bytes, the footer, then per
    row group the projected column chunks in `read`-byte preads and a compute pause.  One file after the
    other.  Returns the CRC-32 of the bytes read per file (in read order) when verify is 1."""
    files, file_bytes, row_groups, columns, read = map(int, (files, file_bytes, row_groups, columns, read))
    project = [int(c) for c in project.split(",")]
    pause, verify = float(pause_ms) / 1e3, verify == "1"
    ranges = pq_layout(file_bytes, row_groups, columns)
    footer_want = pq_footer(ranges)
    buf = bytearray(max(read, len(footer_want), 8))
    mv = memoryview(buf)
    crcs, total, paused = [], 0, 0.0
    t0 = time.perf_counter()
    for i in range(files):
        fd = os.open(os.path.join(d, pq_name(i)), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            tail = os.pread(fd, 8, size - 8)
            if len(tail) != 8 or tail[4:] != b"PAR1":
                raise SystemExit(f"{pq_name(i)}: bad tail {tail!r}")
            flen = struct.unpack_from("<I", tail)[0]
            crc = 0
            for r in pq_reads(size, flen, ranges, project, read):
                if r is None:
                    t = time.perf_counter()
                    time.sleep(pause)
                    paused += time.perf_counter() - t
                    continue
                off, n = r
                got = os.preadv(fd, [mv[:n]], off)
                if got != n:
                    raise SystemExit(f"{pq_name(i)}: {got} bytes at {off}, expected {n}")
                if n == flen and off == size - 8 - flen and buf[:n] != footer_want:
                    raise SystemExit(f"{pq_name(i)}: the footer differs from the generator's")
                if verify:
                    crc = zlib.crc32(mv[:n], crc)
                total += n
            crcs.append(crc)
        finally:
            os.close(fd)
    dt = time.perf_counter() - t0
    return {"bytes": total, "secs": dt, "mbps": total / dt / 1e6, "paused_s": paused, "crcs": crcs if verify else None}


def w_shards(d, count, size, threads, read, pause_ms, verify):
    """Read whole shards with `read`-byte read() calls from `threads` threads (one shard per thread at a
    time, next shard from a shared queue) and a compute pause per MiB read."""
    count, size, threads, read = map(int, (count, size, threads, read))
    pause, verify = float(pause_ms) / 1e3, verify == "1"
    it, lock, errors, crcs, total = iter(range(count)), threading.Lock(), [], [None] * count, [0]

    def run():
        buf = bytearray(read)
        mv = memoryview(buf)
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            n, crc, since = 0, 0, 0
            try:
                with open(os.path.join(d, shard_name(i)), "rb", buffering=0) as f:
                    while True:
                        k = f.readinto(mv)
                        if not k:
                            break
                        if verify:
                            crc = zlib.crc32(mv[:k], crc)
                        n, since = n + k, since + k
                        while since >= MiB:
                            time.sleep(pause)
                            since -= MiB
            except OSError as e:
                errors.append(f"{shard_name(i)}: {e}")
                return
            if n != size:
                errors.append(f"{shard_name(i)}: {n} bytes")
            crcs[i] = crc
            with lock:
                total[0] += n

    t0 = time.perf_counter()
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} failed shard reads, e.g. {errors[:3]}")
    return {"bytes": total[0], "secs": dt, "mbps": total[0] / dt / 1e6, "crcs": crcs if verify else None}


WORKERS.update(parquet=w_parquet, shards=w_shards)
PF_KINDS = ("parquet", "shards")
PF_COUNTERS = {  # field: metric name (summed over labels)
    "issued": "prefetch_issued_bytes_total", "used": "prefetch_used_bytes_total",
    "wasted": "prefetch_wasted_bytes_total", "unused": "prefetch_unused_bytes",
    "store": "store_get_bytes_total", "misses": "read_block_misses_total",
    "late_blocks": "prefetch_late_blocks_total", "layouts": "prefetch_layouts_total",
}


def settled_metrics(cfg, mnt, limit=10.0):
    """cairn's counters once the prefetches still in flight after the reader finished have landed (bytes
    from the store unchanged for 0.5 s, at most `limit` s)."""
    d, last, stable, end = {}, None, 0, time.monotonic() + limit
    while time.monotonic() < end:
        d = cairn_metrics(cfg, mnt)
        now = (metric(d, "store_get_bytes_total"), metric(d, "prefetch_issued_bytes_total"))
        stable = stable + 1 if now == last else 0
        if stable >= 2 or not d:
            break
        last = now
        time.sleep(0.25)
    return d


def measure_prefetch(cfg, res, run):
    """prefetch: for each kind (Parquet scan, shard reads) and --prefetch mode, a fresh mount with an empty
    cache, page cache dropped, one first-epoch read; then cairn's prefetch counters."""
    if not getattr(res, "pf_expect", None):
        res.error(run, "cairn", "prefetch", "no prefetch corpus (upload failed)")
        return
    k = (run - 1) % len(cfg.pf_modes)
    modes = cfg.pf_modes[k:] + cfg.pf_modes[:k]  # rotate to spread drift
    verify = "1" if cfg.verify else "0"
    args = {"parquet": ("parquet", None, cfg.pq_files, cfg.pq_bytes, cfg.pq_row_groups, cfg.pq_columns,
                        ",".join(map(str, cfg.pq_project)), cfg.pq_read, cfg.pq_pause_ms, verify),
            "shards": ("shards", None, cfg.shard_n, cfg.shard_bytes, cfg.shard_threads, cfg.shard_read,
                       cfg.shard_pause_ms, verify)}
    for delay in cfg.pf_delays:
        with DelayProxy(cfg, delay) as endpoint:
            measure_prefetch_at(cfg, res, run, modes, args, verify, delay, endpoint)


def pf_key(kind, mode, delay):
    """Result key of one prefetch point (no suffix without an added delay, as before delays existed)."""
    return f"pf_{kind}_{mode}" + (f"_d{delay}" if delay else "")


class DelayProxy:
    """cairn-delayproxy in front of Garage, adding `delay` ms before every request reaches it (nothing
    when the delay is 0). The context value is the endpoint to give the mount."""

    def __init__(self, cfg, delay):
        self.cfg, self.delay, self.proc = cfg, delay, None

    def __enter__(self):
        if not self.delay:
            return self.cfg.endpoint
        up = urllib.parse.urlsplit(self.cfg.endpoint)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log_path = os.path.join(self.cfg.work, "logs", f"delayproxy-{self.delay}ms.log")
        self.proc = subprocess.Popen([self.cfg.delayproxy_bin, f"127.0.0.1:{port}",
                                      f"{up.hostname}:{up.port}", str(self.delay)],
                                     stdin=subprocess.DEVNULL, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"cairn-delayproxy exited with {self.proc.returncode} (log {log_path})")
                time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        return False


def measure_prefetch_at(cfg, res, run, modes, args, verify, delay, endpoint):
    for kind in PF_KINDS:
        for mode in modes:
            name = pf_key(kind, mode, delay)

            def go(m):
                drop_caches()
                a = list(args[kind])
                a[1] = os.path.join(m.mnt, PQ_DIR if kind == "parquet" else SHARD_DIR)
                return worker(cfg, m.mnt, *a)

            def record(r, m=None):
                d = settled_metrics(cfg, m.mnt)
                c = {f: metric(d, n) for f, n in PF_COUNTERS.items()} if d else {}
                x = {"mbps": round(r["mbps"], 1), "demand_mib": round(r["bytes"] / MiB, 1)}
                if c:
                    x.update({f"{f}_mib": round(c[f] / MiB, 1) for f in ("store", "issued", "used", "wasted", "unused")})
                    x.update(misses=int(c["misses"]), late_blocks=int(c["late_blocks"]), layouts=int(c["layouts"]),
                             fetched_per_demand=round(c["store"] / r["bytes"], 3) if r["bytes"] else None,
                             precision=round(c["used"] / c["issued"], 3) if c["issued"] else None)
                else:
                    res.error(run, "cairn", f"{name} metrics", "`cairn stats --prometheus` gave nothing")
                if "paused_s" in r:
                    x["paused_s"] = round(r["paused_s"], 2)
                if r.get("crcs") is not None:
                    want = res.pf_expect[kind]
                    bad = [i for i, (a, b) in enumerate(zip(r["crcs"], want)) if a != b]
                    ok = not bad and len(r["crcs"]) == len(want)
                    x["verified"] = ok
                    res.pf_verified[name] = res.pf_verified.get(name, True) and ok
                    if not ok:
                        res.error(run, "cairn", f"{name} verify",
                                  f"CRC-32 of the bytes read differs from the generator's for files {bad[:8]}")
                res.add(run, "cairn", name, r["secs"], **x)

            try:
                with Mount(cfg, "cairn", f"r{run}-{name}", extra=["--prefetch", mode], endpoint=endpoint) as m:
                    res.mount_cmds[f"cairn (prefetch, --prefetch {mode}"
                                   + (f", {delay} ms added first-byte delay" if delay else "") + ")"] = m.cmd
                    step(res, run, "cairn", name, lambda: go(m), lambda r: record(r, m))
            except MountError as e:
                res.error(run, "cairn", f"{name} mount", e)
            except MountBroken:
                log(f"  cairn: {name} timed out; mount aborted")


def pf_rows(cfg):
    return [(pf_key(k, mode, d), f"prefetch {k}, --prefetch {mode}" + (f", +{d} ms" if d else ""), "s", False)
            for d in cfg.pf_delays for k in PF_KINDS for mode in cfg.pf_modes]


def report_prefetch(cfg, res, L):
    """The table "Prefetch: first epoch against Garage" (medians over the runs)."""
    rows = [r for r in res.rows if r["workload"].startswith("pf_") and r["system"] == "cairn"]
    if not rows:
        return

    def med(key, field):
        vals = [r[field] if field else r["value"] for r in rows if r["workload"] == key
                and (r.get(field) if field else r["value"]) is not None]
        return statistics.median(vals) if vals else None

    ranges = pq_layout(cfg.pq_bytes, cfg.pq_row_groups, cfg.pq_columns)
    pq_size = ranges[-1][-1][0] + ranges[-1][-1][1] + len(pq_footer(ranges)) + 8
    widths = [n for _, n in ranges[0]]
    L.append("")
    L.append("#### Prefetch: first epoch against Garage")
    L.append("")
    L.append(f"Command: `{cfg.cmdline}`  ")
    L.append(
        f"Each point: a fresh cairn mount with `--prefetch MODE`, empty cache directory, page cache dropped, "
        f"one read of the whole data set (the first epoch); median of {cfg.runs} run(s). "
        f"**Parquet scan**: {cfg.pq_files} files of {human(pq_size)} (Thrift-compact footer; {cfg.pq_row_groups} "
        f"row groups × {cfg.pq_columns} columns of {human(min(widths))} to {human(max(widths))} per chunk), "
        f"read one after the other by one reader: the last 8 bytes, the footer, then for each row group columns "
        f"{', '.join(map(str, cfg.pq_project))} in {human(cfg.pq_read)} preads and a {cfg.pq_pause_ms} ms compute "
        f"pause. **Shards**: {cfg.shard_n} × {human(cfg.shard_bytes)} `.tar` shards read whole with "
        f"{human(cfg.shard_read)} read() calls by {cfg.shard_threads} threads (one shard per thread at a time), "
        f"{cfg.shard_pause_ms} ms compute pause per MiB. "
        f"`learned`: the trace-trained model plus the sequential readahead window; `readahead`: the window only; "
        f"`off`: no prefetching at all. Added first-byte delay: 0 ms is Garage directly (sub-millisecond "
        f"answers); a non-zero delay puts `cairn-delayproxy` between the mount and Garage, which forwards every "
        f"request that much later (each GET's first byte is late by it; bodies stream at Garage's speed). "
        f"MB/s counts the bytes the reader asked for (for the scan: the projected "
        f"column chunks, footers included). Fetched/demanded = `cairn_store_get_bytes_total` / bytes read; "
        f"precision = `cairn_prefetch_used_bytes_total` / `cairn_prefetch_issued_bytes_total`; wasted = "
        f"prefetched bytes evicted unused by the end of the run (still-cached unused bytes are not counted); "
        f"misses = `cairn_read_block_misses_total` (reads that waited for the store). The counters are read "
        f"once the store traffic has settled after the reader finished. Column chunks smaller than cairn's block "
        f"(1 MiB by default) make even `off` fetch unprojected bytes around them."
        + (" The readers compute a CRC-32 of every byte they read (compared with the generator), inside the "
           "measured time." if cfg.verify else ""))
    L.append("")
    L.append("| workload | added first-byte delay | --prefetch | first epoch, s | MB/s | speed-up vs off | "
             "fetched / demanded | prefetched MiB | used MiB | wasted MiB | precision | demand misses |")
    L.append("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    label = {"parquet": f"Parquet scan, {cfg.pq_files} × {human(pq_size)}, {len(cfg.pq_project)} of "
                        f"{cfg.pq_columns} columns",
             "shards": f"Shards, {cfg.shard_n} × {human(cfg.shard_bytes)}, {cfg.shard_threads} threads"}
    num = lambda v, f="{:,.1f}": "—" if v is None else f.format(v)
    for kind, delay in [(k, d) for k in PF_KINDS for d in cfg.pf_delays]:
        off = med(pf_key(kind, "off", delay), None)
        for mode in cfg.pf_modes:
            key = pf_key(kind, mode, delay)
            secs = med(key, None)
            if secs is None and not any(e["what"].split()[0] == key for e in res.errors):
                continue
            L.append(f"| {label[kind]} | {delay} ms | `{mode}` | {num(secs, '{:.2f}')} | {num(med(key, 'mbps'))} | "
                     f"{'—' if secs is None or off is None else f'{off / secs:.2f}×'} | "
                     f"{num(med(key, 'fetched_per_demand'), '{:.2f}')} | {num(med(key, 'issued_mib'))} | "
                     f"{num(med(key, 'used_mib'))} | {num(med(key, 'wasted_mib'))} | "
                     f"{num(med(key, 'precision'), '{:.1%}')} | {num(med(key, 'misses'), '{:,.0f}')} |")
    if res.pf_verified:
        L.append("")
        L.append("Content check (CRC-32 of every byte read, against the generator): "
                 + ", ".join(f"{k[3:]} {'ok' if ok else 'MISMATCH'}" for k, ok in sorted(res.pf_verified.items())))


# ---- local references: local disk (ext4 under the work dir) and a null FUSE file system


def prepare_local(cfg):
    """The corpus's big file and small files on the local disk, once per bench run."""
    root = os.path.join(cfg.work, "local")
    ready = os.path.join(root, ".corpus-ready")
    if os.path.exists(ready):
        return root
    os.makedirs(os.path.join(root, os.path.dirname(BIG_KEY)), exist_ok=True)
    os.makedirs(os.path.join(root, SMALL_DIR), exist_ok=True)
    with open(os.path.join(root, BIG_KEY), "wb") as f:
        for i in range(math.ceil(cfg.big_bytes / PART)):
            f.write(big_part(cfg.seed, i, cfg.big_bytes))
    for i in range(cfg.small_n):
        with open(os.path.join(root, SMALL_DIR, small_name(i)), "wb") as f:
            f.write(small_content(cfg.seed, i, cfg.small_bytes))
    os.sync()
    open(ready, "w").close()
    return root


def measure_local(cfg, res, run):
    w = cfg.workloads
    if "ckpt" in w:
        measure_ckpt(cfg, res, run, "local")
    if "l2warm" not in w and "small_l2" not in w:
        return
    root = prepare_local(cfg)
    try:
        if "l2warm" in w:
            drop_caches()
            step(res, run, "local", "l2warm",
                 lambda: worker(cfg, root, "seq", os.path.join(root, BIG_KEY), cfg.big_bytes),
                 lambda r: res.add(run, "local", "l2warm", r["mbps"], secs=round(r["secs"], 2)))
        if "small_l2" in w:
            drop_caches()
            step(res, run, "local", "small_l2",
                 lambda: worker(cfg, root, "files", os.path.join(root, SMALL_DIR), cfg.small_n, cfg.small_bytes,
                                cfg.threads, cfg.seed + run * 10 + 6),
                 lambda r: res.add(run, "local", "small_l2", r["files_per_s"], mbps=round(r["mbps"], 1),
                                   secs=round(r["secs"], 2)))
    except MountBroken:
        pass


def warm_seq(cfg, mnt, path):
    """The warm sequential read, BENCH_WARM_PASSES times (page cache dropped before each): a 1 GiB read
    from RAM takes 0.3 s, so one pass is mostly noise. Returns the median pass, with all of them."""
    passes = []
    for _ in range(cfg.warm_passes):
        drop_caches()
        passes.append(worker(cfg, mnt, "seq", path, cfg.big_bytes))
    passes.sort(key=lambda r: r["mbps"])
    med = dict(passes[len(passes) // 2])
    med["passes"] = "/".join(f"{r['mbps']:.0f}" for r in passes)
    return med


def measure_nullfs(cfg, res, run):
    """The FUSE ceiling for warm reads: the same readers on cairn-nullfs, which answers every read from one
    preallocated buffer."""
    w = cfg.workloads
    if "seq" not in w and "rand" not in w:
        return
    try:
        with Mount(cfg, "nullfs", f"r{run}") as m:
            res.mount_cmds["nullfs"] = m.cmd
            path = os.path.join(m.mnt, NULL_NAME)
            if "seq" in w:
                step(res, run, "nullfs", "seq_warm", lambda: warm_seq(cfg, m.mnt, path),
                     lambda r: res.add(run, "nullfs", "seq_warm", r["mbps"], secs=round(r["secs"], 2),
                                       passes=r["passes"]))
            if "rand" in w:
                direct = worker(cfg, m.mnt, "odirect", path, timeout=120)["direct"]
                res.direct["nullfs"] = direct
                for jobs, name in ((1, "rand_qd1_warm"), (cfg.fio_jobs, "rand_jobs_warm")):
                    drop_caches()
                    step(res, run, "nullfs", name, lambda: fio(cfg, m.mnt, path, jobs, direct, name),
                         lambda r: res.add(run, "nullfs", name, r.pop("iops"),
                                           **{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}))
    except MountError as e:
        res.error(run, "nullfs", "mount", e)
    except (MountBroken, WorkloadError) as e:
        log(f"  nullfs: {e}")
    if "seq" not in w:
        return
    # The same reader on a null file system that keeps the whole file in RAM: its replies are copied
    # from DRAM, as a RAM cache's are, instead of from the CPU-cache-resident 9 MiB pattern above.
    try:
        with Mount(cfg, "nullfs", f"r{run}-resident", extra=["--resident"]) as m:
            res.mount_cmds["nullfs (resident)"] = m.cmd
            path = os.path.join(m.mnt, NULL_NAME)
            step(res, run, "nullfs", "seq_warm_resident", lambda: warm_seq(cfg, m.mnt, path),
                 lambda r: res.add(run, "nullfs", "seq_warm_resident", r["mbps"], secs=round(r["secs"], 2),
                                   passes=r["passes"]))
    except MountError as e:
        res.error(run, "nullfs", "mount", e)
    except (MountBroken, WorkloadError) as e:
        log(f"  nullfs: {e}")


# ---- ceiling: the same object store without FUSE


def ceiling_seq(cfg, res, run):
    raw = RawS3(cfg)
    nparts = math.ceil(cfg.big_bytes / PART)
    ranges = [(i * PART, min(cfg.big_bytes, (i + 1) * PART) - 1) for i in range(nparts)]
    variants = {}

    def threaded(get, threads):
        it, lock, total = iter(ranges), threading.Lock(), [0]

        def run_():
            n = 0
            while True:
                with lock:
                    r = next(it, None)
                if r is None:
                    break
                n += get(r)
            with lock:
                total[0] += n

        t0 = time.perf_counter()
        ts = [threading.Thread(target=run_) for _ in range(threads)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        dt = time.perf_counter() - t0
        if total[0] != cfg.big_bytes:
            raise WorkloadError(f"got {total[0]} bytes")
        return cfg.big_bytes / dt / 1e6

    local = threading.local()

    def raw_get(r):
        if not hasattr(local, "buf"):
            local.buf = bytearray(PART + 1)
        st, n = raw.request("GET", BIG_KEY, headers={"Range": f"bytes={r[0]}-{r[1]}"}, sink=local.buf)
        if st != 206 and st != 200:
            raise WorkloadError(f"HTTP {st}")
        return n

    s3 = boto_client(cfg, 20)

    def boto_get(r):
        body = s3.get_object(Bucket=cfg.bucket, Key=BIG_KEY, Range=f"bytes={r[0]}-{r[1]}")["Body"]
        return sum(len(c) for c in body.iter_chunks(MiB))

    for name, fn in (("boto3 8x8MiB", lambda: threaded(boto_get, 8)),
                     ("boto3 16x8MiB", lambda: threaded(boto_get, 16)),
                     ("http.client 8x8MiB", lambda: threaded(raw_get, 8)),
                     ("http.client 16x8MiB", lambda: threaded(raw_get, 16)),
                     ("curl 8 ranges", lambda: curl_ranges(cfg, raw, 8))):
        drop_caches()
        try:
            variants[name] = fn()
        except Exception as e:  # noqa: BLE001 - a failing variant just does not count
            res.error(run, "ceiling", f"seq {name}", e)
    if variants:
        best = max(variants, key=variants.get)
        res.add(run, "ceiling", "seq_cold", variants[best], best=best,
                **{k.replace(" ", "_"): round(v, 1) for k, v in variants.items()})


def curl_ranges(cfg, raw, n):
    """n curl processes, each fetching one contiguous 1/n of the object (`curl --aws-sigv4`)."""
    step = math.ceil(cfg.big_bytes / n)
    url = f"{cfg.endpoint}/{cfg.bucket}/{BIG_KEY}"
    procs = []
    t0 = time.perf_counter()
    for i in range(n):
        a, b = i * step, min(cfg.big_bytes, (i + 1) * step) - 1
        procs.append(subprocess.Popen(
            ["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}\n", "--aws-sigv4",
             f"aws:amz:{cfg.region}:s3", "--user", f"{cfg.ak}:{cfg.sk}", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
             "-H", f"Range: bytes={a}-{b}", url], stdout=subprocess.PIPE, text=True))
    total = 0
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise WorkloadError(f"curl exit {p.returncode}")
        total += int(out.strip() or 0)
    dt = time.perf_counter() - t0
    if total != cfg.big_bytes:
        raise WorkloadError(f"curl got {total} bytes")
    return total / dt / 1e6


def ceiling_rand(cfg, res, run):
    blocks = cfg.big_bytes // 4096
    for jobs in (1, cfg.fio_jobs):  # same count of samples as the FUSE systems
        drop_caches()
        rng, buf = random.Random(cfg.seed + run * 10 + jobs), bytearray(8192)
        off = rng.randrange(blocks // 4, 3 * blocks // 4) * 4096
        t0 = time.perf_counter()
        st, n = RawS3(cfg).request("GET", BIG_KEY, headers={"Range": f"bytes={off}-{off + 4095}"}, sink=buf)
        if st not in (200, 206) or n != 4096:
            raise WorkloadError(f"HTTP {st}, {n} bytes")
        res.add(run, "ceiling", "rand_first_cold", (time.perf_counter() - t0) * 1e3, how="new connection, 1 GET")
    raw = RawS3(cfg)
    for jobs, name in ((1, "rand_qd1_cold"), (cfg.fio_jobs, "rand_jobs_cold")):
        drop_caches()
        stop = time.perf_counter() + cfg.fio_runtime
        counts, lats = [0] * jobs, []

        def run_(j):
            rng, buf, my = random.Random(j * 7 + run), bytearray(8192), []
            while time.perf_counter() < stop:
                off = rng.randrange(blocks) * 4096
                t = time.perf_counter()
                st, n = raw.request("GET", BIG_KEY, headers={"Range": f"bytes={off}-{off + 4095}"}, sink=buf)
                my.append(time.perf_counter() - t)
                if st not in (200, 206) or n != 4096:
                    raise WorkloadError(f"HTTP {st}, {n} bytes")
                counts[j] += 1
            lats.extend(my)

        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(jobs) as ex:
            for f in [ex.submit(run_, j) for j in range(jobs)]:
                f.result()
        dt = time.perf_counter() - t0
        lats.sort()
        res.add(run, "ceiling", name, sum(counts) / dt, ios=sum(counts),
                p50_us=round(lats[len(lats) // 2] * 1e6, 1) if lats else 0,
                p99_us=round(lats[int(len(lats) * 0.99)] * 1e6, 1) if lats else 0)


def ceiling_files(cfg, res, run):
    raw = RawS3(cfg)
    keys = [f"{SMALL_DIR}/{small_name(i)}" for i in range(cfg.small_n)]
    random.Random(cfg.seed + run * 10).shuffle(keys)
    variants = {}

    drop_caches()
    it, lock, total = iter(keys), threading.Lock(), [0]

    def run_():
        buf, n = bytearray(cfg.small_bytes + 65536), 0
        while True:
            with lock:
                k = next(it, None)
            if k is None:
                break
            st, got = raw.request("GET", k, sink=buf)
            if st != 200 or got != cfg.small_bytes:
                raise WorkloadError(f"GET {k}: HTTP {st}, {got} bytes")
            n += got
        with lock:
            total[0] += n

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(cfg.threads) as ex:
        for f in [ex.submit(run_) for _ in range(cfg.threads)]:
            f.result()
    variants[f"http.client {cfg.threads} threads"] = cfg.small_n / (time.perf_counter() - t0)

    # curl, one process, --parallel transfers on reused connections
    drop_caches()
    try:
        conf = os.path.join(cfg.work, "curl-files.conf")
        with open(conf, "w") as f:
            for k in keys:
                f.write(f'url = "{cfg.endpoint}/{cfg.bucket}/{k}"\noutput = "/dev/null"\n')
        t0 = time.perf_counter()
        p = subprocess.run(["curl", "-sS", "-f", "--parallel", "--parallel-max", str(cfg.threads), "--aws-sigv4",
                            f"aws:amz:{cfg.region}:s3", "--user", f"{cfg.ak}:{cfg.sk}",
                            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-w", "%{size_download}\n", "-K", conf],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=cfg.timeout)
        dt = time.perf_counter() - t0
        sizes = [int(x) for x in p.stdout.split()]
        if p.returncode != 0 or len(sizes) != len(keys) or any(s != cfg.small_bytes for s in sizes):
            raise WorkloadError(f"curl exit {p.returncode}, {len(sizes)} transfers: {p.stderr[-300:]}")
        variants[f"curl --parallel {cfg.threads}"] = cfg.small_n / dt
    except Exception as e:  # noqa: BLE001
        res.error(run, "ceiling", "files curl", e)
    best = max(variants, key=variants.get)
    v = variants[best]
    res.add(run, "ceiling", "files_cold", v, mbps=round(v * cfg.small_bytes / 1e6, 1), best=best,
            **{k.replace(" ", "_"): round(x, 1) for k, x in variants.items()})


def ceiling_list(cfg, res, run):
    raw = RawS3(cfg)
    drop_caches()
    t0, n, token = time.perf_counter(), 0, None
    while True:
        q = [("list-type", "2"), ("prefix", LIST_DIR + "/"), ("max-keys", "1000")]
        if token:
            q.append(("continuation-token", token))
        st, body = raw.request("GET", "", query=q)
        if st != 200:
            raise WorkloadError(f"list HTTP {st}: {body[:200]!r}")
        text = body.decode()
        n += text.count("<Key>")
        m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", text)
        if "<IsTruncated>true</IsTruncated>" not in text or not m:
            break
        token = m.group(1)
    dt = time.perf_counter() - t0
    if n != cfg.dir_n:
        raise WorkloadError(f"listed {n} keys, expected {cfg.dir_n}")
    res.add(run, "ceiling", "list_cold", dt, entries=n, how="ListObjectsV2 x1000")


def measure_ceiling(cfg, res, run):
    w = cfg.workloads
    for name, fn, on in (("seq", ceiling_seq, "seq" in w), ("rand", ceiling_rand, "rand" in w),
                         ("files", ceiling_files, "files" in w), ("list", ceiling_list, "list" in w)):
        if on:
            try:
                fn(cfg, res, run)
            except Exception as e:  # noqa: BLE001
                res.error(run, "ceiling", name, e)


# ----------------------------------------------------------------------------------------------
# report

ROWS = [  # key, label, unit, higher-is-better, value getter
    ("seq_cold", "Sequential read {big}, cold", "MB/s", True),
    ("seq_warm", "Sequential re-read {big}, warm", "MB/s", True),
    ("rand_first_cold", "open + first 4 KiB read at a random offset, cold", "ms", False),
    ("rand_qd1_cold", "4 KiB random read, 1 job QD1, cold", "IOPS", True),
    ("rand_jobs_cold", "4 KiB random read, {jobs} jobs QD1, cold", "IOPS", True),
    ("rand_qd1_warm", "4 KiB random read, 1 job QD1, warm", "IOPS", True),
    ("rand_jobs_warm", "4 KiB random read, {jobs} jobs QD1, warm", "IOPS", True),
    ("files_cold", "{small_n} × {small} files, {threads} threads, cold", "files/s", True),
    ("files_cold:mbps", "{small_n} × {small} files, {threads} threads, cold", "MB/s", True),
    ("files_warm", "{small_n} × {small} files, {threads} threads, warm", "files/s", True),
    ("list_cold", "readdir + stat of {dir_n} entries, cold", "s", False),
    ("list_warm", "readdir + stat of {dir_n} entries, warm", "s", False),
]

CKPT_ROWS = [
    ("ckpt_write", "Checkpoint write, {ckpt_n} × {ckpt} ({wsize} write() calls, fsync, close), first write to "
                   "last close", "MB/s", True),
    ("ckpt_write:fsync_p50_ms", "fsync per file, p50", "ms", False),
    ("ckpt_write:fsync_p99_ms", "fsync per file, p99 (nearest rank; the slowest file)", "ms", False),
    ("ckpt_write:close_p50_ms", "close per file, p50", "ms", False),
    ("ckpt_bucket", "Time until all {ckpt_n} files are in the bucket, from the first open()", "s", False),
]

L2_ROWS = [
    ("l2warm", "Sequential read {big} after a remount: disk cache warm, RAM cache empty", "MB/s", True),
    ("small_l2", "{small_n} × {small} files, {threads} threads, after a remount: disk cache warm", "files/s", True),
]

REF_ROWS = [  # key, label, reference system[:its key when not the same], reference label, target ratio
    ("seq_warm", "Sequential re-read {big}, warm (cairn: from its RAM cache, L1)", "nullfs",
     "null FUSE file system (cairn-nullfs), replies from a 9 MiB CPU-cache-resident pattern", 0.90),
    ("seq_warm", "Sequential re-read {big}, warm (cairn: from its RAM cache, L1)", "nullfs:seq_warm_resident",
     "null FUSE file system holding the whole file in RAM (cairn-nullfs --resident)", 0.90),
    ("rand_qd1_warm", "4 KiB random read, 1 job QD1, warm", "nullfs", "null FUSE file system", None),
    ("rand_jobs_warm", "4 KiB random read, {jobs} jobs QD1, warm", "nullfs", "null FUSE file system", None),
    ("ckpt_write", "Checkpoint write {ckpt_n} × {ckpt} (fsync included)", "local", "local disk write", 0.80),
    ("l2warm", "Sequential read {big} from the warm disk cache (L2), L1 empty", "local",
     "local disk read (page cache dropped)", None),
    ("small_l2", "{small_n} × {small} files from the warm disk cache", "local",
     "local disk read (page cache dropped)", None),
]

MEM_ROWS = [
    ("rss_seq", "Peak RSS of the daemon during the sequential reads ({big} cold, then warm)", "MiB", False),
    ("rss_files", "Peak RSS of the daemon during the small-file reads (cold, then warm)", "MiB", False),
    ("rss_seq:l1_budget_mib", "RAM cache (L1) budget", "MiB", None),
]

SYSTEM_NAMES = {"local": "local disk", "nullfs": "null FUSE"}


def fmt(v, unit):
    if v is None:
        return "—"
    if unit in ("s", "ms"):
        return f"{v:.2f}" if v < 100 else f"{v:,.0f}"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def medians(rows):
    out = {}
    # seq_warm_resident is only a reference (REF_ROWS), in no table of its own
    for key in [k for k, *_ in ROWS + CKPT_ROWS + L2_ROWS + MEM_ROWS] + ["seq_warm_resident"]:
        wl, _, field = key.partition(":")
        for system in {r["system"] for r in rows}:
            vals = [r[field] if field else r["value"] for r in rows if r["system"] == system and r["workload"] == wl
                    and (r.get(field) if field else r["value"]) is not None]
            if vals:
                out[(key, system)] = (statistics.median(vals), vals)
    return out


def run_cmd(cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=20).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"unavailable ({e.__class__.__name__})"


def machine_info(cfg):
    mem = open("/proc/meminfo").readline().split()[1]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    garage = os.environ.get("BENCH_GARAGE_BIN", "garage")
    df = run_cmd(["df", "-hT", cfg.work]).splitlines()[-1].split()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} × {cpu}",
        "ram": f"{int(mem) / (1 << 20):.1f} GiB",
        "kernel": platform.release(),
        "os": run_cmd(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "disk": f"{df[1]} on {df[0]} (work dir, caches and Garage data)" if len(df) > 2 else "?",
        "cairn": ((run_cmd([cfg.cairn_bin, "--version"]).splitlines() or ["?"])[0]
                  + f" (git {os.environ.get('BENCH_GIT_REV', '?')}, {cfg.cairn_bin})"
                  if "cairn" in cfg.systems else "not measured"),
        "rclone": run_cmd(["rclone", "version"]).splitlines()[0] if "rclone" in cfg.systems else "not measured",
        "s3fs": run_cmd(["s3fs", "--version"]).splitlines()[0] if "s3fs" in cfg.systems else "not measured",
        "nullfs": f"cairn-nullfs ({cfg.nullfs_bin})" if "nullfs" in cfg.systems else "not measured",
        "garage": run_cmd([garage, "--version"]).splitlines()[0] if run_cmd([garage, "--version"]) else "?",
        "fio": run_cmd(["fio", "--version"]),
        "fuse": run_cmd(["fusermount3", "--version"]),
        "python": platform.python_version(),
        "curl": run_cmd(["curl", "--version"]).splitlines()[0],
    }
    try:
        import boto3
        info["boto3"] = boto3.__version__
    except ImportError:
        pass
    return info


def table(L, m, rows, systems, ratios, sub, na=None):
    """A Markdown table of medians: one column per system, then one per (a, b) in ratios, oriented so that
    > 1 means a is better.  na maps (key, system) to the text of a cell that does not apply."""
    rows = [r for r in rows if any((r[0], s) in m for s in systems)]
    if not rows:
        return False
    name = lambda s: SYSTEM_NAMES.get(s, s)
    L.append("| workload | unit | " + " | ".join(name(s) for s in systems) + "".join(
        f" | {name(a)}/{name(b)}" for a, b in ratios) + " |")
    L.append("|---|---|" + "--:|" * (len(systems) + len(ratios)))
    for key, label, unit, higher in rows:
        cells = [fmt(m.get((key, s), (None,))[0], unit) for s in systems]
        cells = [(na or {}).get((key, s), c) if c == "—" else c for s, c in zip(systems, cells)]
        rs = []
        for a, b in ratios:
            va, vb = m.get((key, a), (None,))[0], m.get((key, b), (None,))[0]
            rs.append("—" if not va or not vb or higher is None else f"{(va / vb) if higher else (vb / va):.2f}×")
        L.append(f"| {label.format(**sub)} | {unit} | " + " | ".join(cells + rs) + " |")
    return True


def report(cfg, res, info, upload_info, started):
    m = medians(res.rows)
    sub = dict(big=human(cfg.big_bytes), small=human(cfg.small_bytes), small_n=f"{cfg.small_n:,}",
               dir_n=f"{cfg.dir_n:,}", threads=cfg.threads, jobs=cfg.fio_jobs, ckpt_n=cfg.ckpt_files,
               ckpt=human(cfg.ckpt_bytes), wsize=human(cfg.ckpt_write), l2_l1=cfg.l2_l1)
    systems = [s for s in ("cairn", "rclone", "s3fs", "ceiling")]
    L = []
    L.append(f"### {info['date']}{'' if cfg.full_size else ' (reduced corpus — not comparable to full runs)'}")
    L.append("")
    L.append(f"Command: `{cfg.cmdline}`  ")
    L.append(f"Corpus: {cfg.corpus_text()}; median of {cfg.runs} run(s); fio {cfg.fio_runtime} s per point.  ")
    L.append("Cold: fresh mount, empty cache directory, page cache dropped. " + res.server_note)
    L.append("")
    notes = set()
    main_rows = [r for r in ROWS if any((r[0], s) in m for s in systems)]
    if main_rows:
        L.append("| workload | unit | cairn | rclone | s3fs | ceiling | cairn/rclone | cairn/s3fs | cairn/ceiling |")
        L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for key, label, unit, higher in main_rows:
        if not any((key, s) in m for s in systems):
            continue
        cells = []
        for s in systems:
            v = m.get((key, s), (None,))[0]
            c = fmt(v, unit)
            if v is not None and key.startswith("rand") and s != "ceiling" and res.direct.get(s) is False:
                c += " †"
                notes.add("† fio ran buffered (O_DIRECT refused by the mount); the page cache was dropped first "
                          "and fio ran with `--invalidate=1` and its default random map (no block is read twice).")
            if s == "ceiling" and v is None and (key.endswith("warm")):
                c = "n/a"
            if s == "ceiling" and v is not None and key in ("rand_qd1_cold", "rand_jobs_cold"):
                c += " ‡"
                notes.add("‡ raw 4 KiB ranged GETs, one in flight per thread: the store's small-read rate, not an "
                          "upper bound. A gateway that fetches the whole object in the background reaches its "
                          "warm speed within the fio window and can exceed it; the first-read row and fio's wall "
                          "time (details) show what the first reads cost.")
            cells.append(c)
        ratios = []
        cv = m.get((key, "cairn"), (None,))[0]
        for s in ("rclone", "s3fs", "ceiling"):
            ov = m.get((key, s), (None,))[0]
            if cv is None or ov is None or cv == 0 or ov == 0:
                ratios.append("—")
            else:
                ratios.append(f"{(cv / ov) if higher else (ov / cv):.2f}×")
        L.append(f"| {label.format(**sub)} | {unit} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    if main_rows:
        L.append("")
        L.append("Ratios are oriented so that > 1 means cairn is better (throughput ratio, or time ratio peer/cairn "
                 "for rows in seconds or ms). Warm rows have no ceiling (they are served from the mount's own "
                 "cache). MB/s = 10⁶ bytes/s.")
    for n in sorted(notes):
        L.append("")
        L.append(n)
    if res.verified:
        L.append("")
        L.append("Content check (sampled bytes of every object kind compared with what was uploaded): "
                 + ", ".join(f"{s} {'ok' if ok else 'MISMATCH'}" for s, ok in sorted(res.verified.items())))
    report_new_tables(cfg, res, m, sub, L)
    report_prefetch(cfg, res, L)
    L.append("")
    L.append("Machine: " + "; ".join(f"{k} {info[k]}" for k in ("cpu", "ram", "kernel", "os", "disk")) + ".  ")
    L.append("Versions: " + "; ".join(f"{k}: {info[k]}" for k in ("cairn", "rclone", "s3fs", "nullfs", "garage", "fio", "fuse",
                                                                  "curl", "python", "boto3") if k in info) + ".  ")
    L.append(f"Corpus upload: {upload_info}. Total wall time {(time.time() - started) / 60:.1f} min.")
    L.append("")
    L.append("<details><summary>Per-run values, ceiling variants, mount commands</summary>")
    L.append("")
    L.append("| workload | system | runs | extra (last run) |")
    L.append("|---|---|---|---|")
    seen = set()
    for key, label, unit, _ in ROWS + CKPT_ROWS + L2_ROWS + MEM_ROWS + pf_rows(cfg):
        if ":" in key or key in seen:
            continue
        seen.add(key)
        for s in ALL_SYSTEMS:
            rows = [r for r in res.rows if r["workload"] == key and r["system"] == s]
            if rows:
                extra = {k: v for k, v in rows[-1].items() if k not in ("run", "system", "workload", "value")}
                L.append(f"| {key} | {s} | {', '.join(fmt(r['value'], unit) for r in rows)} {unit} | "
                         f"{fmt_extra(extra)} |")
    L.append("")
    for s, cmd in sorted(res.mount_cmds.items()):
        shown = " ".join(shlex.quote(x) for x in cmd)
        shown = shown.replace(cfg.work, "$WORK")
        L.append(f"- {s}: `{shown}`")
    L.append("")
    L.append("</details>")
    if res.errors:
        L.append("")
        L.append("Errors:")
        L.append("")
        for e in res.errors:
            msg = e["error"].replace(cfg.work, "$WORK").replace("\n", " ")[:400]
            L.append(f"- run {e['run']} {e['system']} {e['what']}: {msg}")
    return "\n".join(L) + "\n"


def report_new_tables(cfg, res, m, sub, L):
    """The checkpoint-write, remount, local-reference and memory tables (each only when measured)."""
    def header(title, text):
        L.append("")
        L.append(f"#### {title}")
        L.append("")
        if text:
            L.append(text)
            L.append("")

    if any(k == "ckpt_write" for k, _ in m):
        how = ("cairn: `cairn flush` started right after the last close" if cfg.ckpt_flush
               else "cairn: background flusher only (BENCH_CKPT_FLUSH=0)")
        header("Checkpoint writes (`ckpt`)",
               f"Each file: open, {human(cfg.ckpt_write)} write() calls, fsync, close; files one after the "
               f"other. The bucket is polled with ListObjectsV2 every 50 ms, independently of the gateway, "
               f"until every file is listed with its full size ({how}; rclone: `--vfs-write-back 2s`; s3fs "
               f"uploads on fsync/close). Local disk: the same writes to ext4 under the work directory.")
        table(L, m, CKPT_ROWS, ["cairn", "rclone", "s3fs", "local"],
              [("cairn", "rclone"), ("cairn", "s3fs"), ("cairn", "local")], sub,
              na={("ckpt_bucket", "local"): "n/a"})
        if res.ckpt_verified:
            L.append("")
            L.append(f"Bucket check (every size, and the sha256 of the last file, against the bytes written): "
                     + ", ".join(f"{s} {'ok' if ok else 'MISMATCH'}" for s, ok in sorted(res.ckpt_verified.items())))

    if any(k in ("l2warm", "small_l2") for k, _ in m):
        header("Reads from the disk cache after a remount (`l2warm`, `small_l2`)",
               f"One cold read fills the disk cache (cairn mounted with `--l1-cache-size {cfg.l2_l1}`), the "
               f"mount is unmounted and mounted again on the same cache directory, the page cache is dropped, "
               f"and the same data is read again. s3fs is not measured (it runs with `del_cache`, which empties "
               f"its cache at every mount). Local disk: the same files on ext4 under the work directory, page "
               f"cache dropped.")
        table(L, m, L2_ROWS, ["cairn", "rclone", "local"], [("cairn", "rclone"), ("cairn", "local")], sub)

    def ref_key(key, ref):
        system, _, other = ref.partition(":")
        return (other or key, system)

    refs = [r for r in REF_ROWS if (r[0], "cairn") in m and ref_key(r[0], r[2]) in m]
    if refs:
        units = {k: (u, h) for k, _, u, h in ROWS + CKPT_ROWS + L2_ROWS}
        header("cairn against local references", "")
        L.append("| workload | unit | cairn | reference | value | cairn/reference | target |")
        L.append("|---|---|--:|---|--:|--:|---|")
        for key, label, ref, ref_label, target in refs:
            unit, _ = units[key]
            cv, rv = m[(key, "cairn")][0], m[ref_key(key, ref)][0]
            ratio = cv / rv if rv else 0
            t = "—" if target is None else f"≥ {target:.2f}: {'met' if ratio >= target else 'not met'}"
            L.append(f"| {label.format(**sub)} | {unit} | {fmt(cv, unit)} | {ref_label} | {fmt(rv, unit)} | "
                     f"{ratio:.2f}× | {t} |")

    if any(k in ("rss_seq", "rss_files") for k, _ in m):
        header("Memory",
               "VmHWM of the mount's daemon process, reset (`/proc/PID/clear_refs`) before each group of "
               "reads on mount A. rclone and s3fs keep no RAM block cache of a fixed size (rclone: "
               "`--buffer-size 32M` per open file).")
        table(L, m, MEM_ROWS, ["cairn", "rclone", "s3fs"], [], sub)
        l1 = m.get(("rss_seq:l1_budget_mib", "cairn"), (None,))[0]
        peaks = [(w, m[(w, "cairn")][0]) for w in ("rss_seq", "rss_files") if (w, "cairn") in m]
        if l1 and peaks:
            L.append("")
            L.append("cairn peak RSS / L1 budget: " + ", ".join(f"{w[4:]} {v / l1:.2f}×" for w, v in peaks) + ".")


# ----------------------------------------------------------------------------------------------


def cmd_run():
    # if run.sh disappears without its cleanup (SIGKILL), stop too: our finally blocks unmount
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        return 1
    cfg = Config()
    started = time.time()
    for d in ("mnt", "cache", "logs", "pids"):
        os.makedirs(os.path.join(cfg.work, d), exist_ok=True)
    os.makedirs(cfg.results_dir, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = os.path.join(cfg.results_dir, stamp + ("" if cfg.full_size else "-smoke"))
    res = Results(base + ".jsonl")
    res.direct, res.verified, res.mount_cmds, res.ckpt_verified = {}, {}, {}, {}
    res.pf_expect, res.pf_verified = None, {}
    log(f"corpus: {cfg.corpus_text()}")
    upload_info = upload(cfg)
    if "prefetch" in cfg.workloads and "cairn" in cfg.systems:
        try:
            res.pf_expect, pf_info = upload_prefetch(cfg)
            upload_info += "; " + pf_info
        except Exception as e:  # noqa: BLE001 - the other workloads can still run
            res.error(0, "cairn", "prefetch upload", e)
    if cfg.server_cache == "pin" and cfg.garage_dir:
        drop_caches()
        n = pin_server_files(cfg.garage_dir)
        log(f"pinned {n / MiB:,.0f} MiB of Garage's files in RAM (drop_caches will not evict them)")
        res.server_note = (f"Garage's data and metadata files ({n / MiB:,.0f} MiB) are pinned in RAM with mlock, so the "
                           "page-cache drops before each point empty the gateway side only (FUSE pages, cache "
                           "files) and the store behaves like a fast remote service instead of this VM's disk "
                           "(BENCH_SERVER_CACHE=drop makes the store cold too).")
    else:
        res.server_note = ("Garage's files are dropped from the page cache with everything else before each point, so "
                           "cold reads include the store reading this VM's disk (BENCH_SERVER_CACHE=drop).")
    info = machine_info(cfg)
    systems = [s for s in cfg.systems if s in ALL_SYSTEMS]
    for run in range(1, cfg.runs + 1):
        order = systems[(run - 1) % len(systems):] + systems[:(run - 1) % len(systems)]  # rotate to spread drift
        for system in order:
            log(f"run {run}/{cfg.runs}: {system}")
            if system == "ceiling":
                measure_ceiling(cfg, res, run)
            elif system == "local":
                measure_local(cfg, res, run)
            elif system == "nullfs":
                measure_nullfs(cfg, res, run)
            else:
                measure_fuse(cfg, res, run, system)
    text = report(cfg, res, info, upload_info, started)
    with open(base + ".md", "w") as f:
        f.write(text)
    print(text)
    log(f"results: {base}.md (raw values {base}.jsonl)")
    with open(os.path.join(cfg.work, "report-path"), "w") as f:
        f.write(base + ".md")
    return 3 if res.errors else 0


def update_docs(doc, report_path):
    """Replace the block between the BENCH-RESULTS markers of docs/BENCHMARKS.md with a report."""
    begin, end = "<!-- BENCH-RESULTS:BEGIN -->", "<!-- BENCH-RESULTS:END -->"
    with open(doc) as f:
        text = f.read()
    if begin not in text or end not in text:
        log(f"{doc}: markers {begin} / {end} not found; not updated")
        return 1
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(report_path) as f:
        rep = f.read()
    with open(doc, "w") as f:
        f.write(head + begin + "\n" + rep + end + tail)
    log(f"updated {doc} with {report_path}")
    return 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "update-docs":
        return update_docs(sys.argv[2], sys.argv[3])
    if len(sys.argv) >= 2 and sys.argv[1] == "worker":
        print(json.dumps(WORKERS[sys.argv[2]](*sys.argv[3:])))
        return 0
    if len(sys.argv) >= 2 and sys.argv[1] == "run":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return cmd_run()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
