"""The model cache by digest (``cache_dir``), against moto's S3 through a recording proxy that
counts the GETs each model file costs: a second server downloads nothing, processes starting
together download once, a killed downloader is taken over, eviction keeps what live processes
hold, and a cached file that no longer matches its record is fetched again, never served."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet_runtime.config import Settings
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.storage import open_source
from tests.helpers import onnx_models
from tests.helpers.runtime import serve_process
from tests.helpers.waiting import wait_until

from .cache_helpers import Fetcher, GateProxy
from .conftest import MotoS3
from .helpers import RecordingProxy

MODEL_GET = b"GET /models/m/1/model.onnx"
WAITING = "another process is fetching or checking it; waiting"


def moto_port(moto: MotoS3) -> int:
    return int(moto.endpoint.rsplit(":", 1)[1])


@pytest.fixture
def proxy(moto_server: MotoS3) -> Iterator[RecordingProxy]:
    """A recording proxy in front of moto: every request line the runtime sends passes it."""
    recording = RecordingProxy(("127.0.0.1", moto_port(moto_server)))
    try:
        yield recording
    finally:
        recording.close()


def cached(tmp: Path, endpoint: str, **overrides: Any) -> dict[str, Any]:
    """Settings (as keyword values) for ``s3://models/m`` with the cache under ``tmp``."""
    values: dict[str, Any] = {
        "model_uri": "s3://models/m",
        "name": "m",
        "model_dir": tmp / "models",
        "cache_dir": tmp / "cache",
        "s3_endpoint_url": endpoint,
        "s3_addressing_style": "path",
        "s3_region": "us-east-1",
        "retry_initial_backoff": 0.05,
        "retry_max_backoff": 0.2,
        "retry_deadline": 5.0,
    }
    return values | overrides


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus text page (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def damage(path: Path) -> None:
    """Flip one byte in the middle of ``path``, keeping its size and its mtime."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def lookups(metrics: Metrics, result: str) -> float | None:
    labels = {"model": "m", "result": result}
    return metrics.registry.get_sample_value("modelfleet_model_cache_total", labels)


def test_a_second_server_downloads_nothing(
    moto_server: MotoS3, proxy: RecordingProxy, tmp_path: Path
) -> None:
    model = onnx_models.mlp([4, 512, 4])
    moto_server.client.put_object(Bucket="models", Key="m/1/model.onnx", Body=model)
    pages = []
    for run in ("first", "second"):
        args = [
            "--model-uri", "s3://models/m", "--name", "m", "--s3-endpoint-url", proxy.url,
            "--s3-addressing-style", "path", "--s3-region", "us-east-1", "--poll-interval", "0",
            "--cache-dir", str(tmp_path / "cache"), "--model-dir", str(tmp_path / run),
        ]  # fmt: skip
        with serve_process(tmp_path, *args) as served:
            pages.append(httpx.get(f"{served.url}/metrics").text)
            answer = httpx.post(
                f"{served.url}/v2/models/m/infer",
                json={"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32",
                                  "data": [1, 2, 3, 4]}]},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
    assert proxy.count(MODEL_GET) == 1  # the second server took it from the cache
    first, second = pages
    assert metric(first, "modelfleet_model_cache_total", model="m", result="miss") == 1
    assert metric(second, "modelfleet_model_cache_total", model="m", result="hit") == 1
    assert metric(second, "modelfleet_model_cache_total", model="m", result="miss") == 0
    hit = {"model": "m", "result": "hit"}  # and started from the saved optimized graph
    assert metric(first, "modelfleet_optimized_model_cache_total", model="m", result="miss") == 1
    assert metric(second, "modelfleet_optimized_model_cache_total", **hit) == 1
    assert not (tmp_path / "second").exists() or not any((tmp_path / "second").rglob("*.onnx"))


def test_processes_starting_together_download_once(moto_server: MotoS3, tmp_path: Path) -> None:
    model = onnx_models.mlp([4, 256, 4])
    moto_server.client.put_object(Bucket="models", Key="m/1/model.onnx", Body=model)
    gate = GateProxy(("127.0.0.1", moto_port(moto_server)), b"/models/m/1/model.onnx")
    fetchers = []
    try:
        values = cached(tmp_path, gate.url)
        fetchers = [Fetcher(tmp_path / f"f{i}.log", values, 1, hold=False) for i in range(3)]
        gate.wait_held(1)  # one downloads (held at the proxy); the others wait for it
        wait_until(lambda: sum(f.logged(WAITING) for f in fetchers) == 2, 60, "two waiting")
        gate.open_gate()
        paths = {f.path() for f in fetchers}
    finally:
        for fetcher in fetchers:
            fetcher.close()
        gate.close()
    assert gate.count(MODEL_GET) == 1
    assert len(paths) == 1
    assert next(iter(paths)).read_bytes() == model


def test_a_killed_downloader_is_taken_over(moto_server: MotoS3, tmp_path: Path) -> None:
    model = onnx_models.mlp([4, 1024, 1024, 4])  # 4.2 MB: five 1 MiB parts, one at a time
    moto_server.client.put_object(Bucket="models", Key="m/1/model.onnx", Body=model)
    gate = GateProxy(("127.0.0.1", moto_port(moto_server)), MODEL_GET, pass_first=2)
    values = cached(tmp_path, gate.url, download_part_size=1024 * 1024, download_concurrency=1)
    downloader = waiter = None
    try:
        downloader = Fetcher(tmp_path / "downloader.log", values, 1, hold=False)
        gate.wait_held(1)  # two parts written, the third held: mid-download
        staged = [p for p in (tmp_path / "cache" / "staging").glob(".tmp-*") if p.is_dir()]
        assert [p.stat().st_size for p in staged[0].rglob("model.onnx")] == [len(model)]
        waiter = Fetcher(tmp_path / "waiter.log", values, 1, hold=False)
        wait_until(lambda: waiter.logged(WAITING), 60, "the second process waiting")
        downloader.process.send_signal(signal.SIGKILL)
        downloader.process.wait(timeout=10)
        gate.open_gate()
        path = waiter.path()
    finally:
        for fetcher in (downloader, waiter):
            if fetcher is not None:
                fetcher.close()
        gate.close()
    assert path.read_bytes() == model
    assert not list((tmp_path / "cache" / "staging").glob(".tmp-*"))  # the dead one's swept


async def test_a_corrupted_cached_file_is_fetched_again(
    moto_server: MotoS3, proxy: RecordingProxy, tmp_path: Path
) -> None:
    model = onnx_models.mlp([4, 64, 4])
    moto_server.client.put_object(Bucket="models", Key="m/1/model.onnx", Body=model)
    metrics = Metrics()
    source = open_source(Settings(**cached(tmp_path, proxy.url)), metrics)
    version = (await source.list_versions())[1]
    path = await source.fetch(version)
    source.release(path)
    damage(path)
    again = await source.fetch(version)
    assert again.read_bytes() == model
    assert proxy.count(MODEL_GET) == 2
    assert lookups(metrics, "corrupt") == 1 and lookups(metrics, "miss") == 2
    source.release(again)
    again.unlink()  # a file gone from the folder: corrupt as well
    third = await source.fetch(version)
    assert third.read_bytes() == model and proxy.count(MODEL_GET) == 3


async def test_eviction_removes_the_least_recently_used_versions_nobody_holds(
    moto_server: MotoS3, tmp_path: Path
) -> None:
    blobs = {n: onnx_models.mlp([4, 256, 4], seed=n) for n in range(1, 5)}  # ~9 KB each
    for number, blob in blobs.items():
        moto_server.client.put_object(Bucket="models", Key=f"m/{number}/model.onnx", Body=blob)
    size = len(blobs[1])
    values = cached(tmp_path, moto_server.endpoint, cache_size_limit=int(size * 2.5))
    metrics = Metrics()
    source = open_source(Settings(**values), metrics)
    versions = await source.list_versions()
    holder = Fetcher(tmp_path / "holder.log", values, 1, hold=True)  # another process serves 1
    try:
        one = holder.path()
        two = await source.fetch(versions[2])
        source.release(two)  # retired here: nobody holds 2
        three = await source.fetch(versions[3])  # over the bound: 2 goes, 1 is held
        assert one.is_file() and not two.exists() and three.is_file()
        four = await source.fetch(versions[4])  # 3 is held here, 1 there: over the bound
        assert one.is_file() and three.is_file() and four.is_file()
    finally:
        holder.close()  # process 1 exits: its version is free
    source.release(three)
    two = await source.fetch(versions[2])
    assert not one.exists() and not three.exists()  # the least recently used two went
    assert four.is_file() and two.read_bytes() == blobs[2]
    assert metrics.registry.get_sample_value("modelfleet_model_cache_evictions_total") == 3


async def test_cache_verify_always_catches_what_the_stat_stamps_cannot(
    moto_server: MotoS3, proxy: RecordingProxy, tmp_path: Path
) -> None:
    """Bytes changed below the file system keep a file's stat stamp: 'changed' (the default)
    then trusts the entry, 'always' hashes it and fetches it again."""
    model = onnx_models.mlp([4, 64, 4])
    moto_server.client.put_object(Bucket="models", Key="m/1/model.onnx", Body=model)
    sources = {
        verify: open_source(Settings(**cached(tmp_path, proxy.url, cache_verify=verify)))
        for verify in ("changed", "always")
    }
    version = (await sources["changed"].list_versions())[1]
    path = await sources["changed"].fetch(version)
    sources["changed"].release(path)
    damage(path)
    record_path = path.parent.with_suffix(".json")
    record = json.loads(record_path.read_text())
    stat = path.stat()  # as if the disk had flipped the byte: the stamp is the recorded one
    record["stamps"]["model.onnx"] = [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    record_path.write_text(json.dumps(record))
    trusted = await sources["changed"].fetch(version)
    assert trusted.read_bytes() != model and proxy.count(MODEL_GET) == 1
    sources["changed"].release(trusted)
    checked = await sources["always"].fetch(version)
    assert checked.read_bytes() == model and proxy.count(MODEL_GET) == 2
