"""The download that starts before the server's imports (prefetch.py), on a file repository:
the repository's first listing, fetches and loads are the thread's, errors included, and every
later call goes to storage itself."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.models.onnx import ModelLoadError, OnnxModel
from modelfleet_runtime.prefetch import Prefetch
from modelfleet_runtime.startup import StartPhases
from modelfleet_runtime.storage import NotAllowedError, NotFoundError
from tests.helpers.onnx_models import add_constant, write_repository

from .helpers import settings


async def test_the_first_listing_and_fetch_are_the_threads(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "adder", {1: add_constant(1.0), 2: add_constant(2.0)})
    source = Prefetch(settings(tmp_path, str(repo)), Metrics()).start().source()

    listing = await source.list_versions()
    write_repository(repo, {3: add_constant(3.0)})  # after the thread listed
    phases = StartPhases()
    path = await source.fetch(listing[2], phases)

    assert sorted(listing) == [1, 2]
    assert path.read_bytes() == add_constant(2.0)
    assert phases.seconds["download"] > 0  # the thread's timings came along
    assert sorted(await source.list_versions()) == [1, 2, 3]  # storage itself now
    again = StartPhases()
    assert await source.fetch(listing[2], again) == path  # already in place: nothing fetched
    assert again.seconds["download"] == 0
    assert (await source.fetch(listing[1])).read_bytes() == add_constant(1.0)  # not prefetched


async def test_a_failed_listing_reaches_the_repository_then_storage_is_asked_again(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "not-yet"
    source = Prefetch(settings(tmp_path, str(missing)), Metrics()).start().source()
    with pytest.raises(NotFoundError):
        await source.list_versions()
    write_repository(missing, {1: add_constant(1.0)})
    assert sorted(await source.list_versions()) == [1]


def test_a_refused_uri_is_refused_as_before(tmp_path: Path) -> None:
    refused = settings(tmp_path, "s3://models/iris", allowed_schemes=["file"])
    with pytest.raises(NotAllowedError):
        Prefetch(refused, Metrics()).start().source()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(thread name, version) of every ``OnnxModel.load`` from here on."""
    seen: list[tuple[str, int]] = []
    real = OnnxModel.load

    def recorded(name: str, version: int, path: Path, settings: Any) -> OnnxModel:
        seen.append((threading.current_thread().name, version))
        return real(name, version, path, settings)

    monkeypatch.setattr(OnnxModel, "load", recorded)
    return seen


async def test_the_thread_loads_what_it_fetched_and_the_repository_takes_it_once(
    tmp_path: Path, loads: list[tuple[str, int]]
) -> None:
    repo = write_repository(tmp_path / "adder", {1: add_constant(1.0), 2: add_constant(2.0)})
    configured = settings(tmp_path, str(repo))
    prefetch = Prefetch(configured, Metrics()).start()
    source = prefetch.source()
    listing = await source.list_versions()
    path = await source.fetch(listing[2])

    model = prefetch.load(configured.model_name, 2, path, configured)

    assert loads == [("modelfleet-prefetch", 2)]  # made in the thread, not here
    x = np.ones((1, 4), dtype=np.float32)
    assert model.version == 2 and model.path == path
    np.testing.assert_array_equal(model.run({"input0": x})["output0"], x + 2.0)
    again = prefetch.load(configured.model_name, 2, path, configured)  # taken once only
    assert again is not model and loads[-1] == (threading.current_thread().name, 2)


async def test_a_load_that_fails_in_the_thread_fails_the_repositorys_load(
    tmp_path: Path, loads: list[tuple[str, int]]
) -> None:
    repo = write_repository(tmp_path / "broken", {1: b"not a model"})
    configured = settings(tmp_path, str(repo))
    prefetch = Prefetch(configured, Metrics()).start()
    source = prefetch.source()
    path = await source.fetch((await source.list_versions())[1])

    with pytest.raises(ModelLoadError, match="cannot load version 1"):
        prefetch.load(configured.model_name, 1, path, configured)
    assert loads == [("modelfleet-prefetch", 1)]
