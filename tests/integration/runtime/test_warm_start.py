"""Warm starts (``optimized_model_cache``): the optimized graph ONNX Runtime saves beside a cached
version is what the next session loads, only when the options match, and never when it no
longer matches its digests. The versions come through the real model cache (``cache_dir``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modelfleet_runtime.config import Settings
from modelfleet_runtime.models import warm
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.storage import open_source
from modelfleet_runtime.storage.manifest import digest_of
from tests.helpers import onnx_models
from tests.integration.storage.helpers import external_data_model

ONES = {"input0": np.ones((1, 4), dtype=np.float32)}


def cache_settings(tmp: Path, repo: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"model_uri": str(repo), "name": "m", "model_dir": tmp / "models"}
    return Settings(**(values | {"cache_dir": tmp / "cache"} | overrides))


async def cached_model(tmp: Path, repo: Path) -> Path:
    """Version 1 of ``repo`` fetched into the cache; its model.onnx there."""
    source = open_source(cache_settings(tmp, repo))
    return await source.fetch((await source.list_versions())[1])


def load(path: Path, settings: Settings) -> tuple[str | None, list[float]]:
    model = OnnxModel.load("m", 1, path, settings)
    return model.graph_cache, model.run(ONES)["output0"].ravel().tolist()


async def warmed(tmp: Path) -> tuple[Path, Settings, Path]:
    """Version 1 (output0 = input0 + 1) in the cache, loaded once: its model.onnx, the
    settings, and the folder of the optimized graph that load saved."""
    repo = onnx_models.write_repository(tmp / "repo", {1: onnx_models.add_constant(1.0)})
    path = await cached_model(tmp, repo)
    settings = cache_settings(tmp, repo)
    assert load(path, settings) == ("miss", [2.0] * 4)
    folder = warm.optimized_folder(path, settings)
    assert folder is not None and (folder / warm.GRAPH_FILE).is_file()
    return path, settings, folder


def replace_saved_graph(folder: Path, model: bytes) -> None:
    """Put another valid model in the saved graph's place, with matching digests."""
    (folder / warm.GRAPH_FILE).write_bytes(model)
    files = {warm.GRAPH_FILE: digest_of(folder / warm.GRAPH_FILE).model_dump()}
    (folder / warm.DIGESTS_FILE).write_text(json.dumps({"files": files}))


async def test_the_next_session_loads_the_saved_graph(tmp_path: Path) -> None:
    path, settings, folder = await warmed(tmp_path)
    assert load(path, settings) == ("hit", [2.0] * 4)
    # Proof that the saved graph, not the original, is what loads: swap in one adding 99.
    replace_saved_graph(folder, onnx_models.add_constant(99.0))
    assert load(path, settings) == ("hit", [100.0] * 4)


async def test_a_graph_saved_with_other_options_is_ignored(tmp_path: Path) -> None:
    path, settings, folder = await warmed(tmp_path)
    replace_saved_graph(folder, onnx_models.add_constant(99.0))
    basic = settings.model_copy(update={"graph_optimization": "basic"})
    assert warm.optimized_folder(path, basic) != folder
    assert load(path, basic) == ("miss", [2.0] * 4)  # its own graph, from the original
    assert load(path, basic) == ("hit", [2.0] * 4)
    off = settings.model_copy(update={"optimized_model_cache": False})
    assert load(path, off) == (None, [2.0] * 4)


async def test_a_damaged_saved_graph_is_never_loaded(tmp_path: Path) -> None:
    path, settings, folder = await warmed(tmp_path)
    graph = folder / warm.GRAPH_FILE
    replaced = onnx_models.add_constant(99.0)  # loadable, but not what the digests say
    graph.write_bytes(replaced)
    assert load(path, settings) == ("corrupt", [2.0] * 4)
    assert graph.read_bytes() != replaced  # saved again from the original
    assert load(path, settings) == ("hit", [2.0] * 4)


async def test_a_model_with_external_data_starts_warm(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    w = external_data_model(repo / "1", floats=4096)
    path = await cached_model(tmp_path, repo)
    settings = cache_settings(tmp_path, repo)
    feeds = {"input0": np.ones((1, 4096), dtype=np.float32)}
    outputs = []
    for expected in ("miss", "hit"):
        model = OnnxModel.load("m", 1, path, settings)
        assert model.graph_cache == expected
        outputs.append(model.run(feeds)["output0"])
    folder = warm.optimized_folder(path, settings)
    assert folder is not None and (folder / warm.DATA_FILE).is_file()  # its own weights file
    np.testing.assert_array_equal(outputs[0], [w + 1])
    np.testing.assert_array_equal(outputs[1], [w + 1])


def test_a_model_outside_the_cache_is_left_alone(tmp_path: Path) -> None:
    repo = onnx_models.write_repository(tmp_path / "repo", {1: onnx_models.add_constant(1.0)})
    path = repo / "1" / "model.onnx"
    assert load(path, cache_settings(tmp_path, repo)) == (None, [2.0] * 4)
    assert list(path.parent.iterdir()) == [path]
