"""One client, many callers: the blocking client shared by threads, and the async client with
300 calls in flight at once, each call with its own input so that a mixed-up answer (a
connection or stream handed to two callers) shows as a wrong mark."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelfleet_client import AsyncClient, Client
from tests.client.conftest import Server, assert_echoed, every_inputs

TRANSPORTS = ["http", "grpc"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_threads_share_one_blocking_client(every: Server, transport: str) -> None:
    with Client(every.url(transport)) as client:

        def call(mark: int) -> int:
            inputs = every_inputs(mark=mark)
            outputs = client.infer("every", inputs)
            assert_echoed(outputs, inputs)
            return int(outputs["out_INT64"][0, 1])

        with ThreadPoolExecutor(8) as pool:
            marks = list(pool.map(call, range(160)))
    assert marks == list(range(160))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_300_concurrent_calls_on_one_async_client(every: Server, transport: str) -> None:
    async with AsyncClient(every.url(transport)) as client:

        async def call(mark: int) -> int:
            inputs = every_inputs(mark=mark)
            outputs = await client.infer("every", inputs)
            assert_echoed(outputs, inputs)
            return int(outputs["out_INT64"][0, 1])

        marks = await asyncio.gather(*(call(mark) for mark in range(300)))
    assert marks == list(range(300))
