"""The runtime series the chart's alert rules read besides the request counters: versions the
policy wants but has not loaded (ModelFleetVersionNotReady) and requests shed by admission
control (ModelFleetRequestsShed), as ``/metrics`` shows them."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.helpers import onnx_models
from tests.helpers.prometheus import Samples, samples
from tests.helpers.runtime import open_in_process, serve_process, wait_until

ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}


def test_a_failed_version_is_not_ready_until_good_files_load(tmp_path: Path) -> None:
    blobs = {1: onnx_models.add_constant(1.0), 2: b"not an ONNX model"}
    repo = onnx_models.write_repository(tmp_path / "adder", blobs)
    args = ["--model-uri", str(repo), "--version-policy", "all", "--poll-interval", "0.2"]
    with serve_process(tmp_path, *args, "--grpc-port", "0") as served:

        def scrape() -> Samples:
            return samples(httpx.get(f"{served.url}/metrics").text)

        model = (("model", "adder"),)
        first = scrape()
        assert first[("modelfleet_model_versions_loaded", model)] == 1
        assert first[("modelfleet_model_versions_not_ready", model)] == 1
        failed = (("model", "adder"), ("reason", "ModelLoadFailed"), ("version", "2"))
        assert first[("modelfleet_model_load_failures_total", failed)] == 1
        good = repo / "2" / "model.onnx.new"
        good.write_bytes(onnx_models.add_constant(2.0))
        os.replace(good, repo / "2" / "model.onnx")  # new files: the version is tried again
        wait_until(
            lambda: scrape()[("modelfleet_model_versions_not_ready", model)] == 0, 20, "v2 loads"
        )
        assert scrape()[("modelfleet_model_versions_loaded", model)] == 2


async def test_requests_refused_at_the_concurrency_limit_count_as_shed(tmp_path: Path) -> None:
    versions = {1: onnx_models.add_constant(1.0)}
    async with open_in_process(tmp_path, "adder", versions, max_concurrency=1) as served:
        body = {"inputs": [ROW]}
        before = samples((await served.client.get("/metrics")).text)
        served.dataplane.admit()  # the one slot is taken
        try:
            refused = await served.client.post("/v2/models/adder/infer", json=body)
        finally:
            served.dataplane.in_flight -= 1  # and given back
        answered = await served.client.post("/v2/models/adder/infer", json=body)
        after = samples((await served.client.get("/metrics")).text)
    assert (refused.status_code, answered.status_code) == (503, 200)
    for reason, shed in (("concurrency", 1), ("queue", 0)):
        key = ("modelfleet_requests_shed_total", (("model", "adder"), ("reason", reason)))
        assert (before[key], after[key]) == (0, shed)
    status_503 = (("model", "adder"), ("protocol", "v2"), ("status", "503"), ("version", ""))
    assert after[("modelfleet_requests_total", status_503)] == 1


async def test_without_tls_the_expiry_family_has_no_sample(tmp_path: Path) -> None:
    """Nothing that an expiry alert could read as "expired at 1970" on a plain server."""
    async with open_in_process(tmp_path, "adder", {1: onnx_models.add_constant(1.0)}) as served:
        text = (await served.client.get("/metrics")).text
    name = "modelfleet_tls_certificate_expiry_timestamp_seconds"
    assert f"# TYPE {name} gauge" in text
    assert not [line for line in text.splitlines() if line.startswith(name)]
