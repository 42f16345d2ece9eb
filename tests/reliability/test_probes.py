"""What the pod's probes see while a model starts (issue 13, part 4): the operator's startup
probe asks ``/v2/health/ready`` until the model serves, then liveness asks ``/v2/health/live``.

* A real ``modelfleet serve`` downloading from S3 (moto) through the fault proxy slowed to a
  byte rate: while bytes still flow, live answers 200 (the event loop is not blocked by the
  download) and ready 503; once the version is loaded and warmed up, ready is 200.
* The real app with its real repository, warm-up held open: ready stays 503 until warm-up has
  run, so the first request a ready pod gets never pays for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from modelfleet_runtime.config import Settings
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.server import build
from tests.helpers import onnx_models
from tests.helpers.runtime import wait_until

from .faultproxy import FaultProxy, fault_proxy
from .storage import BUCKET, ROW, Moto, infer, s3_args, serve_s3, status

RATE = 512 * 1024
"""Bytes a second the slowed S3 answers at: a ~4 MB model takes ~8 s to arrive."""


@pytest.fixture
def slow_proxy(moto: Moto) -> Iterator[FaultProxy]:
    with fault_proxy(moto.port, rate=RATE) as p:
        p.set_mode("slow")
        yield p


def test_live_and_not_ready_while_a_slow_download_runs(
    moto: Moto, slow_proxy: FaultProxy, tmp_path: Path
) -> None:
    blob = onnx_models.mlp([4, 1024, 1024, 4])  # ~4.2 MB: one ranged GET, ~8 s at RATE
    moto.client.put_object(Bucket=BUCKET, Key="m/1/model.onnx", Body=blob)
    with serve_s3(tmp_path, *s3_args(slow_proxy.endpoint, deadline=60.0)) as served:
        url = served.url
        wait_until(lambda: slow_proxy.answered > 256 * 1024, 30, "the download to start")
        probes = 0
        # Probe until three quarters of the model have passed the proxy: every probe lands
        # while the download still runs.
        while slow_proxy.answered < len(blob) * 3 // 4:
            assert status(url, "/v2/health/live") == 200  # 0 if it took over 2 s
            assert status(url, "/v2/health/ready") == 503
            probes += 1
        assert probes >= 5, f"only {probes} probes landed during the download"
        wait_until(lambda: status(url, "/v2/health/ready") == 200, 60, "ready after download")
        assert slow_proxy.answered >= len(blob)  # the model came through the slowed proxy
        assert status(url, "/v2/health/live") == 200
        assert infer(url).status_code == 200


async def test_ready_only_after_warm_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = onnx_models.write_repository(tmp_path / "m", {1: onnx_models.add_constant(1.0)})
    settings = Settings(
        model_uri=f"file://{root}", name="m", model_dir=tmp_path / "cache", grpc_port=None
    )
    warming, release = threading.Event(), threading.Event()
    real_warm_up = OnnxModel.warm_up

    def held_warm_up(model: OnnxModel, runs: int = 5) -> float:
        warming.set()
        assert release.wait(30), "the test never released warm-up"
        return real_warm_up(model, runs)

    monkeypatch.setattr(OnnxModel, "warm_up", held_warm_up)
    app, _ = build(settings)
    inner: FastAPI = app.app  # the FastAPI app behind the fast path holds the lifespan
    transport = httpx.ASGITransport(app)
    async with (
        inner.router.lifespan_context(inner),  # starts the repository, as uvicorn would
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        try:
            assert await asyncio.to_thread(warming.wait, 30), "warm-up never began"
            assert (await client.get("/v2/health/live")).status_code == 200
            assert (await client.get("/v2/health/ready")).status_code == 503
            assert (await client.get("/v2/models/m/ready")).status_code == 503
        finally:
            release.set()
        deadline = asyncio.get_running_loop().time() + 30
        while (await client.get("/v2/health/ready")).status_code != 200:
            assert asyncio.get_running_loop().time() < deadline, "not ready after warm-up"
            await asyncio.sleep(0.05)  # polling a condition, with a deadline
        answer = await client.post("/v2/models/m/infer", json={"inputs": [ROW]})
        assert answer.status_code == 200
