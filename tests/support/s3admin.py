#!/usr/bin/env python3
"""Independent S3 admin client for cairn's end-to-end tests (boto3, path-style addressing).

It never goes through cairn: tests use it to put objects into the bucket that cairn mounts and to
inspect what ended up there.

    s3admin.py [--endpoint URL] [--access-key AK] [--secret-key SK] [--region R] COMMAND ...

Commands (BUCKET is always explicit):
    create-bucket BUCKET
    put BUCKET KEY [--file PATH]        body from PATH (streamed, multipart above 64 MiB) or stdin
    put-bytes BUCKET KEY TEXT           body is the UTF-8 bytes of TEXT
    delete BUCKET KEY
    list BUCKET [--prefix P]            one JSON object per line: {"key": ..., "size": ...}
    head BUCKET KEY                     JSON {"size", "etag", "content_type"}; exit 3 if missing
    batch BUCKET                        JSON lines on stdin, each one of
                                          {"op": "put", "key": K, "hex": HEX}
                                          {"op": "put", "key": K, "file": PATH}
                                          {"op": "delete", "key": K}
    setup-auth BUCKET                   for a moto server started with
                                        INITIAL_NO_AUTH_ACTION_COUNT=4: creates BUCKET, an IAM user
                                        with s3:* and an access key (exactly 4 unauthenticated
                                        actions), prints JSON {"access_key", "secret_key"}

Connection settings default to AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_REGION, then to "test"/"test"/us-east-1.
"""

import argparse
import json
import os
import sys

# The machines this runs on set AWS_CA_BUNDLE; it is irrelevant for the plain-http loopback
# endpoints used here and only risks a failed TLS setup, so drop it before boto3 reads it.
os.environ.pop("AWS_CA_BUNDLE", None)
# Never pick up a developer's ~/.aws config or profile.
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("AWS_CONFIG_FILE", os.devnull)
os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", os.devnull)

import boto3  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

MiB = 1024 * 1024


def client(args, service="s3"):
    cfg = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3, "mode": "standard"},
        signature_version="s3v4" if service == "s3" else None,
    )
    return boto3.client(
        service,
        endpoint_url=args.endpoint,
        aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key,
        region_name=args.region,
        config=cfg,
    )


def transfer_config():
    return TransferConfig(multipart_threshold=64 * MiB, multipart_chunksize=16 * MiB, max_concurrency=4)


def put_file(s3, bucket, key, path):
    s3.upload_file(path, bucket, key, Config=transfer_config())


def cmd_create_bucket(args):
    s3 = client(args)
    s3.create_bucket(Bucket=args.bucket)


def cmd_put(args):
    s3 = client(args)
    if args.file:
        put_file(s3, args.bucket, args.key, args.file)
    else:
        s3.upload_fileobj(sys.stdin.buffer, args.bucket, args.key, Config=transfer_config())


def cmd_put_bytes(args):
    s3 = client(args)
    s3.put_object(Bucket=args.bucket, Key=args.key, Body=args.text.encode("utf-8"))


def cmd_delete(args):
    s3 = client(args)
    s3.delete_object(Bucket=args.bucket, Key=args.key)


def cmd_list(args):
    s3 = client(args)
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=args.bucket, Prefix=args.prefix or ""):
        for obj in page.get("Contents", []):
            print(json.dumps({"key": obj["Key"], "size": obj["Size"]}))


def cmd_hashes(args):
    """Every object under the prefix with its size and sha256, read back with a plain GET."""
    import hashlib

    s3 = client(args)
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=args.bucket, Prefix=args.prefix or ""):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=args.bucket, Key=obj["Key"])["Body"]
            h = hashlib.sha256()
            n = 0
            for chunk in iter(lambda: body.read(1 << 20), b""):
                h.update(chunk)
                n += len(chunk)
            print(json.dumps({"key": obj["Key"], "size": n, "sha256": h.hexdigest()}))


def cmd_head(args):
    s3 = client(args)
    try:
        r = s3.head_object(Bucket=args.bucket, Key=args.key)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchKey", "NotFound"):
            print(json.dumps({"error": "not found"}))
            sys.exit(3)
        raise
    print(
        json.dumps(
            {
                "size": r["ContentLength"],
                "etag": r.get("ETag"),
                "content_type": r.get("ContentType"),
            }
        )
    )


def cmd_batch(args):
    s3 = client(args)
    n = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        op = json.loads(line)
        if op["op"] == "put":
            if "file" in op:
                put_file(s3, args.bucket, op["key"], op["file"])
            else:
                s3.put_object(Bucket=args.bucket, Key=op["key"], Body=bytes.fromhex(op.get("hex", "")))
        elif op["op"] == "delete":
            s3.delete_object(Bucket=args.bucket, Key=op["key"])
        else:
            raise SystemExit(f"s3admin: unknown batch op {op['op']!r}")
        n += 1
    print(json.dumps({"ops": n}))


def cmd_setup_auth(args):
    # Each call below is one unauthenticated action on a moto server started with
    # INITIAL_NO_AUTH_ACTION_COUNT=4; from the fifth action on, moto checks signatures and IAM policy.
    s3 = client(args)
    s3.create_bucket(Bucket=args.bucket)  # 1
    iam = client(args, "iam")
    user = "cairn-test"
    iam.create_user(UserName=user)  # 2
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=json.dumps(policy))  # 3
    key = iam.create_access_key(UserName=user)["AccessKey"]  # 4
    print(json.dumps({"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}))


def main():
    p = argparse.ArgumentParser(prog="s3admin.py")
    p.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID", "test"))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"))
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("create-bucket")
    s.add_argument("bucket")
    s.set_defaults(fn=cmd_create_bucket)

    s = sub.add_parser("put")
    s.add_argument("bucket")
    s.add_argument("key")
    s.add_argument("--file")
    s.set_defaults(fn=cmd_put)

    s = sub.add_parser("put-bytes")
    s.add_argument("bucket")
    s.add_argument("key")
    s.add_argument("text")
    s.set_defaults(fn=cmd_put_bytes)

    s = sub.add_parser("delete")
    s.add_argument("bucket")
    s.add_argument("key")
    s.set_defaults(fn=cmd_delete)

    s = sub.add_parser("list")
    s.add_argument("bucket")
    s.add_argument("--prefix")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("hashes")
    s.add_argument("bucket")
    s.add_argument("--prefix")
    s.set_defaults(fn=cmd_hashes)

    s = sub.add_parser("head")
    s.add_argument("bucket")
    s.add_argument("key")
    s.set_defaults(fn=cmd_head)

    s = sub.add_parser("batch")
    s.add_argument("bucket")
    s.set_defaults(fn=cmd_batch)

    s = sub.add_parser("setup-auth")
    s.add_argument("bucket")
    s.set_defaults(fn=cmd_setup_auth)

    args = p.parse_args()
    if not args.endpoint:
        p.error("--endpoint (or AWS_ENDPOINT_URL) is required")
    args.fn(args)


if __name__ == "__main__":
    main()
