"""S4 and S8 through a real server, with S3 (moto) behind the fault proxy: readiness while the
download stalls, S3 down at start-up (bounded, backed-off retries, a clear reason, recovery)
and S3 down during an update (the old version keeps serving, no partial files)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import onnx_models
from tests.helpers.load import steady_load
from tests.helpers.runtime import wait_until

from .faultproxy import FaultProxy, fault_proxy
from .storage import BUCKET, ROW, Moto, files_under, infer, s3_args, serve_s3, status


@pytest.fixture
def proxy(moto: Moto) -> Iterator[FaultProxy]:
    with fault_proxy(moto.port) as p:
        yield p


def put_version(moto: Moto, version: int, blob: bytes) -> None:
    moto.client.put_object(Bucket=BUCKET, Key=f"m/{version}/model.onnx", Body=blob)


def test_readiness_while_the_download_stalls(moto: Moto, proxy: FaultProxy, tmp_path: Path) -> None:
    put_version(moto, 1, onnx_models.add_constant(1.0))
    proxy.set_mode("stall")
    with serve_s3(tmp_path, *s3_args(proxy.endpoint)) as served:
        url = served.url
        wait_until(lambda: proxy.count("connect") >= 1, 10, "the server to reach S3")
        # A 3 s window of the stall, probed throughout. The stall holds every connection to S3
        # until the proxy passes, after the window: a liveness that waited on storage could
        # not answer in it at all.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert status(url, "/v2/health/live") == 200
            assert status(url, "/v2/health/ready") == 503
            assert status(url, "/v2/models/m/ready") == 503
            answer = infer(url)
            assert answer.status_code == 503 and set(answer.json()) == {"error"}
            assert "not ready" in answer.json()["error"]
        proxy.set_mode("pass")
        wait_until(lambda: status(url, "/v2/health/ready") == 200, 30, "ready after the stall")
        assert status(url, "/v2/models/m/ready") == 200
        assert infer(url).status_code == 200


def test_s3_down_at_startup_backs_off_then_recovers(
    moto: Moto, proxy: FaultProxy, tmp_path: Path
) -> None:
    put_version(moto, 1, onnx_models.add_constant(1.0))
    proxy.set_mode("reset")
    args = s3_args(proxy.endpoint, initial=0.5, max=2.0, deadline=6.0)
    started = time.monotonic()
    with serve_s3(tmp_path, *args, "--poll-interval", "2") as served:
        url = served.url
        reason = wait_until(
            lambda: (a := infer(url)).status_code == 503 and "Unavailable" in a.text and a.text,
            15,
            "a not-ready reason naming the outage",
        )
        assert "S3 endpoint unreachable" in reason, reason
        assert status(url, "/v2/health/live") == 200
        assert status(url, "/v2/health/ready") == 503
        # Let the outage run past 10 s, then count connections to S3 over the next 6 s:
        # at most one a second (each boto3 call is one connection: its own retries are off).
        wait_until(lambda: time.monotonic() - started >= 10, 15, "10 s of outage")
        window_start = time.monotonic()
        wait_until(lambda: time.monotonic() - window_start >= 6, 10, "a 6 s window")
        attempts = proxy.count("connect", since=window_start)
        print(f"S8: {attempts} connections to S3 in the 6 s after 10 s of outage")  # noqa: T201
        assert 1 <= attempts <= 6, f"{attempts} connections in 6 s after 10 s of outage"
        assert files_under(tmp_path / "model-cache") == []
        proxy.set_mode("pass")
        wait_until(lambda: status(url, "/v2/health/ready") == 200, 20, "recovery")
        assert infer(url).status_code == 200
        assert served.process.poll() is None


def test_s3_down_during_an_update_keeps_the_old_version(
    moto: Moto, proxy: FaultProxy, tmp_path: Path
) -> None:
    put_version(moto, 1, onnx_models.add_constant(1.0))
    args = s3_args(proxy.endpoint, initial=0.2, max=1.0, deadline=2.0)
    with serve_s3(tmp_path, *args, "--poll-interval", "0.5") as served:
        url, cache = served.url, tmp_path / "model-cache"
        wait_until(lambda: status(url, "/v2/health/ready") == 200, 30, "version 1 serving")
        body = {"inputs": [ROW]}
        with steady_load(f"{url}/v2/models/m/infer", body, rate=40) as load:
            wait_until(lambda: len(load.outcomes) >= 10, 10, "load running")
            # Version 2 appears; S3 breaks mid-listing/download, for a few retry cycles.
            proxy.set_mode("reset")
            put_version(moto, 2, onnx_models.mlp([4, 512, 512, 4]))
            since = time.monotonic()
            wait_until(lambda: proxy.count("connect", since) >= 4, 20, "failed attempts")
            assert promoted(cache) == ["1"] and temporary(cache) == [], files_under(cache)
            proxy.set_mode("stall")  # and a stalled connection mid-update
            wait_until(lambda: proxy.count("connect", since) >= 5, 20, "a stalled attempt")
            assert promoted(cache) == ["1"], files_under(cache)  # a .tmp-2-* may be in flight
            proxy.set_mode("pass")
            wait_until(lambda: _version_of(url) == "2", 30, "version 2 after recovery")
            settled = len(load.outcomes)
            wait_until(lambda: len(load.outcomes) >= settled + 10, 10, "load after the swap")
        assert load.outcomes and load.failures == [], load.failures[:5]
        versions = [v or "" for v in load.versions()]
        assert versions[0] == "1" and versions[-1] == "2"
        assert versions == sorted(versions)  # never back to 1 once 2 served
        wait_until(lambda: promoted(cache) == ["2"], 10, "version 1 files freed")
        assert temporary(cache) == [], files_under(cache)


def promoted(cache: Path) -> list[str]:
    """Version numbers with a promoted folder (``<version>-<fingerprint>``) in the cache."""
    folders = (cache / "m").iterdir() if (cache / "m").exists() else iter(())
    return sorted(f.name.split("-")[0] for f in folders if not f.name.startswith("."))


def temporary(cache: Path) -> list[str]:
    return [name for name in files_under(cache) if "/.tmp-" in f"/{name}"]


def _version_of(url: str) -> str | None:
    answer = httpx.post(f"{url}/v2/models/m/infer", json={"inputs": [ROW]}, timeout=10)
    return answer.json().get("model_version") if answer.status_code == 200 else None
