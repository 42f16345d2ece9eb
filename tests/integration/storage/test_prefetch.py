"""The download that starts before the server's imports (prefetch.py), on a file repository:
the repository's first listing and fetches are the thread's, errors included, and every later
call goes to storage itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet_runtime.metrics import Metrics
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
