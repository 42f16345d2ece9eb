"""The limit of ``bench/time_to_serve.py``: what any server must do to serve a model from S3,
and nothing else, in a fresh process (so the interpreter's start counts, as it does for the
servers).

    python limit_fetch_load.py ENDPOINT BUCKET PREFIX DEST [--concurrency 8 --part-size MiB]

Lists ``PREFIX`` once, fetches every object in parallel ranged GETs (boto3, ``concurrency``
threads, ``part-size`` parts, written at their offsets), imports ONNX Runtime in the main
thread while the parts download (the best a start can do with these steps), then creates the
session from ``DEST/model.onnx`` with ONNX Runtime's default options (1 intra-op thread, as
the servers here). Prints one JSON line of ``time.monotonic()`` stamps, which is system-wide
on Linux, so the driver can subtract its own start stamp.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import boto3
from botocore.config import Config

stamps: dict[str, float] = {"imported_boto3": time.monotonic()}


def fetch(client: object, bucket: str, key: str, dest: Path, offset: int, length: int) -> None:
    response = client.get_object(  # type: ignore[attr-defined]
        Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
    )
    with dest.open("r+b") as out:
        out.seek(offset)
        for chunk in response["Body"].iter_chunks(1024 * 1024):
            out.write(chunk)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("endpoint", "bucket", "prefix", "dest"):
        parser.add_argument(name)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--part-size", type=int, default=16, help="MiB")
    args = parser.parse_args()
    part = args.part_size * 1024 * 1024
    config = Config(max_pool_connections=args.concurrency + 2, retries={"total_max_attempts": 1})
    client = boto3.session.Session().client(
        "s3", endpoint_url=args.endpoint, region_name="us-east-1", config=config
    )
    listing = client.list_objects_v2(Bucket=args.bucket, Prefix=args.prefix.rstrip("/") + "/")
    dest = Path(args.dest)
    pool = ThreadPoolExecutor(args.concurrency)
    futures = []
    for obj in listing.get("Contents", []):
        target = dest / obj["Key"][len(args.prefix.rstrip("/")) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as f:
            f.truncate(obj["Size"])
        for offset in range(0, obj["Size"], part):
            length = min(part, obj["Size"] - offset)
            futures.append(
                pool.submit(fetch, client, args.bucket, obj["Key"], target, offset, length)
            )
    downloaded = threading.Event()

    def done_when_all() -> None:
        wait(futures)
        stamps["downloaded"] = time.monotonic()
        downloaded.set()

    threading.Thread(target=done_when_all).start()
    import onnxruntime as ort  # while the parts download

    stamps["imported_ort"] = time.monotonic()
    downloaded.wait()
    for future in futures:
        future.result()  # raise a failed part's error
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(dest / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    stamps["session"] = time.monotonic()
    stamps["cpu"] = time.process_time()  # every thread of this process
    assert session.get_inputs()
    sys.stdout.write(json.dumps(stamps) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
