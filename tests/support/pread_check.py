#!/usr/bin/env python3
"""Random-offset reads through a mount, compared with the expected bytes.

    pread_check.py MOUNTED_FILE EXPECTED_FILE [--seed N] [--reads N] [--max-len BYTES]
                   [--boundary BYTES]

EXPECTED_FILE is a local copy of the object's bytes. The script checks, with os.pread on one
file descriptor of MOUNTED_FILE:
  - --reads random (offset, length) pairs inside the file (lengths 1..max-len),
  - reads that straddle every multiple of --boundary (the block size) near the start and end,
  - a read that starts inside the file and runs past EOF returns exactly the tail,
  - reads at EOF and past EOF return b"",
  - the same checks through a second, independently opened descriptor read backwards.
Exits 1 with a description of the first mismatch. Prints one summary line on success.
"""

import argparse
import os
import random
import sys


def fail(msg):
    print(f"pread_check: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(fd, expected, off, length, what):
    got = os.pread(fd, length, off)
    want = expected[off : off + length]
    if got != want:
        # find the first differing byte for the message
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        fail(
            f"{what}: pread(len={length}, off={off}) returned {len(got)} bytes, "
            f"expected {len(want)}; first difference at +{first}"
        )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mounted")
    p.add_argument("expected")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reads", type=int, default=200)
    p.add_argument("--max-len", type=int, default=1 << 20)
    p.add_argument("--boundary", type=int, default=8 << 20)
    a = p.parse_args()

    with open(a.expected, "rb") as f:
        expected = f.read()
    size = len(expected)
    st = os.stat(a.mounted)
    if st.st_size != size:
        fail(f"st_size {st.st_size} != expected {size}")

    rng = random.Random(a.seed)
    fd = os.open(a.mounted, os.O_RDONLY)
    n = 0
    try:
        if size > 0:
            for _ in range(a.reads):
                off = rng.randrange(size)
                length = rng.randint(1, a.max_len)
                check(fd, expected, off, length, "random read")
                n += 1
            # straddle block boundaries
            b = a.boundary
            k = b
            while k < size:
                for delta, length in ((-1, 2), (-4096, 8192), (-1, 1), (0, 1), (-(b // 2), b)):
                    off = max(0, k + delta)
                    check(fd, expected, off, length, f"boundary {k}")
                    n += 1
                k += b
            # tail and past EOF
            tail = min(size, 12345)
            check(fd, expected, size - tail, tail + 100000, "read across EOF")
            check(fd, expected, size - 1, 10, "last byte")
            n += 2
        for off in (size, size + 1, size + 4096, size + (1 << 30)):
            got = os.pread(fd, 4096, off)
            if got != b"":
                fail(f"pread at offset {off} (size {size}) returned {len(got)} bytes, expected b''")
            n += 1
        # sequential read of the whole file through a plain read() loop must end with b""
        os.lseek(fd, 0, os.SEEK_SET)
        parts = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            parts.append(chunk)
        if b"".join(parts) != expected:
            fail("sequential read() of the whole file differs from the expected bytes")
        n += 1
    finally:
        os.close(fd)

    # a second descriptor, reading backwards in 64 KiB steps
    if size > 0:
        fd2 = os.open(a.mounted, os.O_RDONLY)
        try:
            step = 64 * 1024
            off = size
            steps = 0
            while off > 0 and steps < 64:
                start = max(0, off - step)
                check(fd2, expected, start, off - start, "backwards read")
                off = start
                steps += 1
                n += 1
        finally:
            os.close(fd2)

    print(f"pread_check: ok: {n} reads on {a.mounted} ({size} bytes)")


if __name__ == "__main__":
    main()
