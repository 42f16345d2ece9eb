"""The raw in-process limits, measured with no server: ONNX Runtime ``run()`` alone, and the
whole V2 JSON path done in one process (orjson parse -> numpy -> run -> orjson dump).

``bench/run.py`` runs it as ``taskset -c 0 python bench/inprocess.py MODEL.onnx BODY.json``
(the same CPU the servers get) and reads one JSON line of results from stdout.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import orjson


def per_call_us(fn: Callable[[], object], seconds: float = 2.0) -> tuple[float, float]:
    """(median µs per call over 20 slices, calls per second overall)."""
    for _ in range(50):
        fn()
    slices: list[float] = []
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for _ in range(20):
            fn()
        slices.append((time.perf_counter() - t0) / 20 * 1e6)
        calls += 20
    elapsed = time.perf_counter() - start
    return float(np.median(slices)), calls / elapsed


def main(model_path: str, body_path: str) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    body = open(body_path, "rb").read()
    request = orjson.loads(body)
    tensor = request["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])

    def run_only() -> object:
        return session.run(None, {"input0": x})

    def json_path() -> object:
        req = orjson.loads(body)
        inputs = {
            t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
            for t in req["inputs"]
        }
        (out,) = session.run(["output0"], inputs)
        return orjson.dumps(
            {
                "model_name": "m",
                "outputs": [
                    {"name": "output0", "shape": list(out.shape), "datatype": "FP32",
                     "data": out.ravel().tolist()}
                ],
            }
        )  # fmt: skip

    run_us, run_rps = per_call_us(run_only)
    json_us, json_rps = per_call_us(json_path)
    result = {"run_us": run_us, "run_rps": run_rps, "json_us": json_us, "json_rps": json_rps}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
