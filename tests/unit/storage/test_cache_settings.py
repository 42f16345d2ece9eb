"""The cache's settings as a pod's manifest writes them, and what its keys promise."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelfleet_runtime.config import Settings
from modelfleet_runtime.storage.cache import version_key


@pytest.mark.parametrize(
    ("written", "size"),
    [("10Gi", 10 * 1024**3), ("500Mi", 500 * 1024**2), ("2G", 2 * 10**9), ("1048576", 2**20),
     (4096, 4096), ("1e3", 1000)],
)  # fmt: skip
def test_the_size_limit_reads_kubernetes_quantities(
    monkeypatch: pytest.MonkeyPatch, written: str | int, size: int
) -> None:
    monkeypatch.setenv("MODELFLEET_CACHE_SIZE_LIMIT", str(written))
    assert Settings().cache_size_limit == size
    assert Settings(cache_size_limit=written).cache_size_limit == size


@pytest.mark.parametrize("written", ["ten", "-1Gi", "1.5", "500m", "10 GiB"])
def test_a_size_that_is_no_whole_number_of_bytes_is_refused(written: str) -> None:
    with pytest.raises(ValidationError, match="cache_size_limit"):
        Settings(cache_size_limit=written)


def test_no_cache_unless_asked() -> None:
    settings = Settings()
    assert (settings.cache_dir, settings.cache_size_limit) == (None, None)
    assert settings.optimized_model_cache


def test_keys_say_whether_they_name_content() -> None:
    content = {"model.onnx": "sha256:" + "a" * 64}
    assert version_key(content, {}).startswith("c-")
    assert version_key(content, {"w.bin": "s3://b/m/1/w.bin 10 etag"}).startswith("r-")
    # The same bytes from any URI: one key; other bytes or another etag: another key.
    assert version_key(content, {}) == version_key(dict(content), {})
    assert version_key({"model.onnx": "sha256:" + "b" * 64}, {}) != version_key(content, {})
    remote = {"model.onnx": "s3://b/m/1/model.onnx 10 e1"}
    assert version_key({}, remote) != version_key({}, {"model.onnx": "s3://b/m/1/model.onnx 10 e2"})
