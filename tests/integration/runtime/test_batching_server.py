"""Dynamic batching behind the HTTP API: concurrent requests of different sizes each get
exactly their own rows, identical to unbatched inference, and the batch metrics move."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import onnxruntime as ort

from tests.helpers import onnx_models
from tests.integration.runtime.conftest import OpenClient


async def test_concurrent_requests_get_their_own_rows(open_client: OpenClient) -> None:
    blob = onnx_models.mlp([8, 16, 3], seed=3)
    reference = ort.InferenceSession(blob)
    rng = np.random.default_rng(0)
    requests = [rng.standard_normal((int(n), 8)).astype(np.float32) for n in rng.integers(1, 5, 40)]
    settings = {"max_batch_size": 16, "max_queue_delay_us": 20_000}
    async with open_client("mlp", {1: blob}, **settings) as served:

        async def one(x: np.ndarray) -> list[float]:
            tensor = {"name": "input0", "shape": list(x.shape), "datatype": "FP32",
                      "data": x.ravel().tolist()}  # fmt: skip
            answer = await served.client.post("/v2/models/mlp/infer", json={"inputs": [tensor]})
            assert answer.status_code == 200, answer.text
            data: list[float] = answer.json()["outputs"][0]["data"]
            return data

        answers = await asyncio.gather(*(one(x) for x in requests))
        metrics = (await served.client.get("/metrics")).text
    for x, got in zip(requests, answers, strict=True):
        (expected,) = reference.run(None, {"input0": x})
        np.testing.assert_allclose(np.asarray(got).reshape(expected.shape), expected, rtol=1e-5)
    batches = float(re.findall(r'modelfleet_batch_size_count\{model="mlp"\} (\S+)', metrics)[0])
    rows = float(re.findall(r'modelfleet_batch_size_sum\{model="mlp"\} (\S+)', metrics)[0])
    assert rows == sum(len(x) for x in requests)
    assert batches < len(requests)  # some requests shared a batch


async def test_with_nothing_else_in_flight_a_batch_does_not_wait_out_the_delay(
    open_client: OpenClient,
) -> None:
    """Ten minutes of queue delay and room for 64 rows: the requests are answered because the
    batch runs once it holds every request the server holds."""
    blob = onnx_models.mlp([8, 16, 3], seed=3)
    settings = {"max_batch_size": 64, "max_queue_delay_us": 600_000_000}
    x = np.ones((1, 8), dtype=np.float32)
    tensor = {"name": "input0", "shape": [1, 8], "datatype": "FP32", "data": x.ravel().tolist()}
    async with open_client("mlp", {1: blob}, **settings) as served:

        async def one() -> int:
            answer = await served.client.post("/v2/models/mlp/infer", json={"inputs": [tensor]})
            return answer.status_code

        async with asyncio.timeout(60):
            for round_size in (1, 8, 3):  # one alone, then concurrent rounds
                assert (
                    await asyncio.gather(*(one() for _ in range(round_size))) == [200] * round_size
                )
