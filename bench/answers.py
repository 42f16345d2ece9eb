"""Checks a server's answer numerically against ONNX Runtime in-process, before any timing.

``bench/run.py`` calls ``check(server_url, body, expected)`` (HTTP) or ``check_grpc(address,
model, request_file, expected)`` (gRPC, through bench/servers/grpc_answer.py); a server whose
answer differs is reported and not timed. ``bench/check.py`` checks its two servers the same way.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
from load import Body


def fetch_output(url: str, body: Body, name: str = "output0") -> np.ndarray:
    """POST the body once; decode the named output (JSON data or binary extension)."""
    parts = urllib.parse.urlsplit(url)
    headers = {"Content-Type": body.content_type}
    if body.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(body.header_length)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", parts.path, body=body.path.read_bytes(), headers=headers)
        response = connection.getresponse()
        raw = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {raw[:500]!r}")
        split = response.getheader("Inference-Header-Content-Length")
    finally:
        connection.close()
    head = json.loads(raw if split is None else raw[: int(split)])
    offset = 0 if split is None else int(split)
    for output in head["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if output["name"] == name:
            if size is not None:
                data = np.frombuffer(raw[offset : offset + size], dtype="<f4")
            else:
                data = np.asarray(output["data"], dtype=np.float32)
            return data.reshape(output["shape"])
        offset += size or 0
    raise RuntimeError(f"no output {name!r} in {[o['name'] for o in head['outputs']]}")


HERE = Path(__file__).resolve().parent


def check(url: str, body: Body, expected: np.ndarray) -> str | None:
    """None when the answer matches (rtol 1e-4, atol 1e-5), else what went wrong."""
    try:
        got = fetch_output(url, body)
    except Exception as error:
        return f"request failed: {error}"
    return compare(got, expected)


def check_grpc(address: str, model: str, request: Path, expected: np.ndarray) -> str | None:
    """The same check over gRPC: ghz's request file sent once to ``address``."""
    python = HERE / ".work/venvs/ours/bin/python"
    script = HERE / "servers/grpc_answer.py"
    done = subprocess.run([str(python), str(script), address, str(request)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    if done.returncode:
        return f"{model} over gRPC failed: {done.stderr.strip()[-500:]}"
    answer = json.loads(done.stdout)
    return compare(np.asarray(answer["data"], dtype=np.float32).reshape(answer["shape"]), expected)


def compare(got: np.ndarray, expected: np.ndarray) -> str | None:
    if got.size != expected.size:
        return f"shape {list(got.shape)} != {list(expected.shape)}"
    if not np.allclose(got.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5):
        return f"values differ by up to {np.max(np.abs(got.reshape(expected.shape) - expected))}"
    return None
