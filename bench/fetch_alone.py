"""Our S3 fetch alone, with and without hashing, against the limit's download, on the same
SeaweedFS as ``time_to_serve.py`` (where the first start's download phase is about twice the
limit's): is it our download code, the hash, or the server's imports running beside it?

    .venv/bin/python bench/fetch_alone.py [10MB|200MB|1GB] [--reps 3]

After one fetch that is not counted (SeaweedFS is slow to serve a version just pushed), each
repetition runs, each in a fresh process, one after the other (the order rotates each time):

- ``hash``: ``storage.open_source`` and the list and fetch of the newest version, as the server's
  prefetch thread does them (parts in parallel, each file's sha256 taken as the parts arrive,
  checked against the manifest), and nothing else: no web stack imported.
- ``no hash``: the same with the hashing and the manifest check patched out (an experiment
  only: the runtime never skips them).
- ``limit``: ``servers/limit_fetch_load.py``'s listing and download (its session excluded).

It prints seconds from just before the S3 client is created (the imports done) to the last
byte on disk, the same span the limit's "download" stamp covers (its ONNX Runtime import runs
beside it), and each process's CPU seconds (the limit's include its ONNX Runtime import and
session).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import time_to_serve as tts
import tts_models

OURS = r"""
import asyncio, sys, time, types
import botocore.session  # imported before the clock starts, as the limit's boto3 is
from modelfleet_runtime import storage
from modelfleet_runtime.config import Settings
from modelfleet_runtime.storage import layout, manifest, s3  # s3: before the clock
if sys.argv[2] == "no hash":
    layout.StoreSource._hashed_while_downloading = lambda self, files, number: set()
    manifest.verify = lambda *args, **kwargs: types.SimpleNamespace(files={})
settings = Settings(
    model_uri=f"s3://{sys.argv[4]}/{sys.argv[1]}", name="tts", model_dir=sys.argv[3],
    s3_endpoint_url=sys.argv[5], s3_addressing_style="path",
)
started = time.monotonic()
source = storage.open_source(settings)
async def fetch():
    versions = await source.list_versions()
    await source.fetch(versions[max(versions)])
asyncio.run(fetch())
print(time.monotonic() - started, time.process_time())
"""


def run_ours(shape: tts_models.Shape, mode: str, dest: Path) -> tuple[float, float]:
    command = [str(tts.VENV / "python"), "-c", OURS, shape.label, mode, str(dest), tts.BUCKET]
    done = subprocess.run(
        [*command, tts.S3], check=True, capture_output=True, env={**os.environ, **tts.ENV}
    )
    seconds, cpu = done.stdout.decode().split()
    return float(seconds), float(cpu)


def run_limit(shape: tts_models.Shape, work: Path) -> tuple[float, float]:
    """``time_to_serve``'s run of the limit: its download stamp and its CPU seconds."""
    stamps = tts.run_limit(shape, work)
    return stamps["download"], stamps["cpu"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", choices=list(tts_models.SHAPES), nargs="?", default="1GB")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    shape = tts_models.SHAPES[args.size]
    found: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="fetch-") as tmp, tts.seaweed(Path(tmp)):
        tts.push_models([shape])
        dest = Path(tmp) / "dest"
        run_limit(shape, Path(tmp))  # not counted
        modes = ["hash", "no hash", "limit"]
        for rep in range(args.reps):
            for mode in modes[rep % 3 :] + modes[: rep % 3]:
                seconds, cpu = (
                    run_limit(shape, Path(tmp)) if mode == "limit" else run_ours(shape, mode, dest)
                )
                shutil.rmtree(dest, ignore_errors=True)
                found.setdefault(mode, []).append((seconds, cpu))
                print(f"rep {rep + 1} {mode:8s} {seconds:.2f} s, CPU {cpu:.2f} s", flush=True)  # noqa: T201
    for mode, runs in found.items():
        seconds = statistics.median(s for s, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{args.size} {mode:8s} median {seconds:.2f} s, CPU {cpu:.2f} s")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
