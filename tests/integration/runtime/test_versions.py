"""Versions from a file repository through the real server: policies, a hot swap under load
with zero failed requests (S7), a failing new version while the old one serves (S6), and
the start phases each version exports."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelfleet_runtime.startup import PHASES
from tests.helpers import onnx_models
from tests.helpers.load import steady_load
from tests.helpers.runtime import serve_process, wait_until

ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}
BODY = {"inputs": [ROW]}


def publish(repo: Path, version: int, blob: bytes) -> None:
    """Add a version the way a careful uploader would: complete folder, then one rename."""
    staging = repo.parent / f".staging-{version}"
    onnx_models.write_repository(staging, {version: blob})
    os.rename(staging / str(version), repo / str(version))
    shutil.rmtree(staging)


def versions_of(url: str, name: str) -> list[str]:
    metadata: list[str] = httpx.get(f"{url}/v2/models/{name}").json()["versions"]
    return metadata


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["3"]),
        (["--num-versions", "2"], ["2", "3"]),
        (["--version-policy", "all"], ["1", "2", "3"]),
        (["--version-policy", "specific", "--versions", "[1,3]"], ["1", "3"]),
    ],
)
def test_version_policies(tmp_path: Path, args: list[str], expected: list[str]) -> None:
    blobs = {v: onnx_models.add_constant(float(v)) for v in (1, 2, 3)}
    repo = onnx_models.write_repository(tmp_path / "adder", blobs)
    (repo / "notes").mkdir()  # non-numeric folders are not versions
    with serve_process(tmp_path, "--model-uri", str(repo), *args) as served:
        assert versions_of(served.url, "adder") == expected
        for version in expected:
            url = f"{served.url}/v2/models/adder/versions/{version}/infer"
            answer = httpx.post(url, json=BODY).json()
            assert answer["outputs"][0]["data"] == [float(version)] * 4


def test_hot_swap_under_load_then_a_failing_version_changes_nothing(tmp_path: Path) -> None:
    repo = onnx_models.write_repository(tmp_path / "adder", {1: onnx_models.add_constant(1.0)})
    args = ["--model-uri", str(repo), "--poll-interval", "0.2"]
    with serve_process(tmp_path, *args) as served:
        url = f"{served.url}/v2/models/adder/infer"
        with steady_load(url, BODY, rate=60) as load:
            wait_until(lambda: len(load.outcomes) >= 30, 20, "traffic on version 1")
            publish(repo, 2, onnx_models.add_constant(2.0))
            wait_until(lambda: load.versions()[-5:] == ["2"] * 5, 20, "traffic on version 2")
            publish(repo, 3, b"corrupt bytes, not a model")
            wait_until(lambda: _state(served.url, "3") == "UNAVAILABLE", 20, "version 3 fails")
            seen = len(load.outcomes)
            wait_until(lambda: len(load.outcomes) >= seen + 30, 20, "traffic after the failure")
        assert load.failures == []
        answered = load.versions()
        first_two = answered.index("2")
        assert set(answered[:first_two]) == {"1"} and set(answered[first_two:]) == {"2"}
        assert versions_of(served.url, "adder") == ["2"]
        assert httpx.get(f"{served.url}/v2/health/ready").status_code == 200
        cache = tmp_path / "model-cache"
        wait_until(lambda: not list(cache.glob("*/1-*")), 10, "version 1's files removed")
        assert list(cache.glob("*/2-*/model.onnx"))
        status = _status(served.url, "3")
        assert status["reason"] == "ModelLoadFailed"


def _status(url: str, version: str) -> dict[str, str]:
    metadata = httpx.get(f"{url}/v2/models/adder").json()
    found = [s for s in metadata["version_status"] if s["version"] == version]
    return found[0] if found else {}


def _state(url: str, version: str) -> str:
    return _status(url, version).get("state", "")


def _start_phases(url: str) -> dict[tuple[str, str], float]:
    """``modelfleet_model_start_phase_seconds`` by (version, phase), from /metrics."""
    found = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        if family.name == "modelfleet_model_start_phase_seconds":
            for sample in family.samples:
                key = (sample.labels["version"], sample.labels["phase"])
                found[key] = sample.value
    return found


def test_each_version_exports_how_long_its_start_took(tmp_path: Path) -> None:
    repo = onnx_models.write_repository(tmp_path / "adder", {1: onnx_models.add_constant(1.0)})
    args = ["--model-uri", str(repo), "--poll-interval", "0.2"]
    with serve_process(tmp_path, *args) as served:
        phases = _start_phases(served.url)
        assert sorted(phases) == [("1", p) for p in sorted(PHASES)]
        assert phases["1", "load"] > 0 and phases["1", "warmup"] > 0
        assert all(seconds >= 0 for seconds in phases.values())

        publish(repo, 2, onnx_models.add_constant(2.0))
        wait_until(lambda: versions_of(served.url, "adder") == ["2"], 20, "version 2 serves")
        assert {version for version, _ in _start_phases(served.url)} == {"2"}  # 1 retired
