"""A second server with the model cache: bytes it downloads and seconds to ready, against the
first server (which fills the cache) and a server without the cache.

    .venv/bin/python bench/cache_start.py [--megabytes 200] [--reps 3]

moto's S3 server on loopback holds one version (an MLP built here with onnx.helper, about
``megabytes`` MB); every S3 request passes the tests' fault proxy (``tests/reliability/
faultproxy.py``, in pass mode), which counts request lines. Each repetition runs, one after
another, ``modelfleet serve`` processes on a free port:

- first: an empty ``--cache-dir`` (fills it);
- second: the same ``--cache-dir`` (the figure: it should download nothing);
- no cache: no ``--cache-dir``, an empty ``--model-dir`` (today's behaviour, for scale).

Seconds to ready: from ``Popen`` to the first 200 of ``/v2/health/ready`` (polled every 20 ms),
process start and imports included. Bytes downloaded: the runtime's own "downloaded ... N bytes"
log lines; S3 GETs: request lines at the proxy during the run. Prints a Markdown table, and
what one sha256 pass over the model costs here (``cache_verify=always`` pays it on every start).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from moto.server import ThreadedMotoServer
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelfleet_runtime.storage.manifest import sha256_file  # noqa: E402 - after the path
from tests.helpers.aws import s3_client  # noqa: E402
from tests.reliability.faultproxy import FaultProxy  # noqa: E402

DOWNLOADED = re.compile(r"downloaded .* (\d+) bytes in")


def big_mlp(megabytes: int) -> bytes:
    """input0 [batch, 4] -> hidden -> output0 [batch, 4], about ``megabytes`` MB of weights."""
    hidden = int(np.sqrt(megabytes * 1e6 / 4))
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((4, hidden)) / 2).astype(np.float32)
    w2 = (rng.standard_normal((hidden, hidden)) / hidden).astype(np.float32)
    w3 = (rng.standard_normal((hidden, 4)) / hidden).astype(np.float32)
    inits = [numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))]
    nodes = [
        helper.make_node("MatMul", ["input0", "w1"], ["h1"]),
        helper.make_node("MatMul", ["h1", "w2"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["r2"]),
        helper.make_node("MatMul", ["r2", "w3"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "big_mlp",
        [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def serve(endpoint: str, folder: Path, cache: Path | None) -> tuple[float, int, str]:
    """Start ``modelfleet serve``; (seconds to ready, bytes downloaded, its /metrics page)."""
    port = free_port()
    args = [
        sys.executable, "-m", "modelfleet_runtime.cli", "serve", "--port", str(port),
        "--grpc-port", "0", "--model-uri", "s3://models/m", "--name", "m",
        "--s3-endpoint-url", endpoint, "--s3-addressing-style", "path",
        "--s3-region", "us-east-1", "--poll-interval", "0", "--log-format", "json",
        "--model-dir", str(folder / "models"),
    ] + (["--cache-dir", str(cache)] if cache else [])  # fmt: skip
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "x"}
    log = folder / "serve.log"
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = started + 300
        while not ready(url):
            if process.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit(f"server did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        process.terminate()
        process.wait(timeout=60)
    downloaded = sum(int(m.group(1)) for m in DOWNLOADED.finditer(log.read_text()))
    return seconds, downloaded, metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    model = big_mlp(args.megabytes)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    proxy = FaultProxy(port).start()
    rows: dict[str, list[tuple[float, int, int, str]]] = {}
    try:
        client = s3_client(f"http://{host}:{port}")
        client.create_bucket(Bucket="models")
        client.put_object(Bucket="models", Key="m/1/model.onnx", Body=model)
        for _ in range(args.reps):
            with tempfile.TemporaryDirectory(prefix="cache-start-") as tmp:
                cache = Path(tmp) / "cache"
                for kind, use in (("first", cache), ("second", cache), ("no cache", None)):
                    folder = Path(tmp) / kind
                    folder.mkdir()
                    before = time.monotonic()
                    seconds, downloaded, metrics = serve(proxy.endpoint, folder, use)
                    gets = proxy.count("request", since=before)
                    result = re.findall(
                        r'modelfleet_model_cache_total\{model="m",result="(\w+)"\}', metrics
                    )
                    rows.setdefault(kind, []).append((seconds, downloaded, gets, ",".join(result)))
    finally:
        proxy.close()
        moto.stop()
    report(len(model), rows, args.reps)
    with tempfile.NamedTemporaryFile() as file:
        file.write(model)
        file.flush()
        hashing = []
        for _ in range(3):
            started = time.perf_counter()
            sha256_file(Path(file.name))
            hashing.append(time.perf_counter() - started)
    seconds = statistics.median(hashing)
    sys.stdout.write(
        f"\nsha256 of model.onnx (page cache warm): {seconds:.2f} s, "
        f"{len(model) / seconds / 1e6:.0f} MB/s (median of 3)\n"
    )
    return 0


def report(size: int, rows: dict[str, list[tuple[float, int, int, str]]], reps: int) -> None:
    out = sys.stdout
    out.write(
        f"model.onnx {size:,} bytes, {reps} repetitions (first, second, no cache in turn)\n\n"
    )
    out.write(
        "| Server | seconds to ready (median, min–max) | bytes downloaded | S3 requests "
        "| cache lookups |\n"
    )
    out.write("|---|---:|---:|---:|---|\n")
    for kind, values in rows.items():
        seconds = [v[0] for v in values]
        span = f"{statistics.median(seconds):.2f} ({min(seconds):.2f}–{max(seconds):.2f})"
        downloaded = sorted({v[1] for v in values})
        gets = sorted({v[2] for v in values})
        lookups = sorted({v[3] for v in values})
        out.write(
            f"| {kind} | {span} | {json.dumps(downloaded)} | {json.dumps(gets)} | "
            f"{' '.join(lookups) or '-'} |\n"
        )


if __name__ == "__main__":
    sys.exit(main())
