"""DynamicBatcher: every caller gets exactly its own rows, identical to unbatched inference
with a real ONNX Runtime session; incompatible requests never share a batch; overload, errors,
cancellation and closing behave. Nothing here asserts on a wall time: batching is checked by
counting and inspecting the batches the model saw."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from modelfleet_runtime.models.batching import (
    BatcherClosedError,
    DynamicBatcher,
    QueueFullError,
    Tensors,
)
from modelfleet_runtime.models.rows import UnsplittableOutputError
from tests.helpers.onnx_models import add_constant, identity
from tests.helpers.onnx_models import mlp as _mlp

LONG_DELAY_US = 60_000_000  # a minute: batches in these tests form by size, never by time


def mlp(sizes: list[int], *, seed: int) -> bytes:
    """The helper's MLP with its weights cast to float32: under NumPy 2 its ``/ np.sqrt(n)``
    promotes them to float64, which ONNX Runtime refuses next to a float32 input."""
    model = onnx.load_from_string(_mlp(sizes, seed=seed))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init).astype(np.float32)
        init.CopyFrom(numpy_helper.from_array(array, init.name))
    return model.SerializeToString()


def _session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class Recorder:
    """An async run function over a real session that records every batch it was given."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.batches: list[Tensors] = []
        self.names = [o.name for o in session.get_outputs()]

    def infer(self, inputs: Tensors) -> Tensors:
        return dict(zip(self.names, self.session.run(self.names, inputs), strict=True))

    async def __call__(self, inputs: Tensors) -> Tensors:
        self.batches.append(inputs)
        return await asyncio.to_thread(self.infer, inputs)


class Gate:
    """A run function that holds every batch until ``open()``: lets tests fill the queue."""

    def __init__(self, fn: Callable[[Tensors], Tensors] = dict) -> None:
        self.fn = fn
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.batches: list[Tensors] = []

    async def __call__(self, inputs: Tensors) -> Tensors:
        self.batches.append(inputs)
        self.entered.set()
        await self.release.wait()
        return self.fn(inputs)


class Sizes:
    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def observe_batch(self, size: int, queue_seconds: float) -> None:
        self.seen.append((size, queue_seconds))


async def until(condition: Callable[[], bool], deadline: float = 10.0) -> None:
    """Wait for ``condition`` with a deadline (a condition, never a sleep standing in for it)."""
    async with asyncio.timeout(deadline):
        while not condition():
            await asyncio.sleep(0.001)


def rows(n: int, features: int, seed: int, dtype: type = np.float32) -> npt.NDArray[Any]:
    return np.random.default_rng(seed).standard_normal((n, features)).astype(dtype)


async def gather_all(*aws: Awaitable[Tensors]) -> list[Tensors]:
    return list(await asyncio.gather(*aws))


async def test_concurrent_requests_get_their_own_rows_from_an_mlp() -> None:
    recorder = Recorder(_session(mlp([8, 32, 16, 3], seed=3)))
    batcher = DynamicBatcher(recorder, max_batch_size=16, max_queue_delay_us=LONG_DELAY_US)
    sizes = [1, 3, 2, 5, 1, 4, 2, 1, 7, 1, 1, 4]  # 32 rows: exactly two full batches
    requests = [{"input0": rows(n, 8, seed=i)} for i, n in enumerate(sizes)]
    try:
        results = await gather_all(*(batcher.submit(r) for r in requests))
    finally:
        await batcher.close()
    assert [b["input0"].shape[0] for b in recorder.batches] == [16, 16]
    for request, result in zip(requests, results, strict=True):
        expected = recorder.infer(request)
        assert result.keys() == expected.keys()
        assert result["output0"].shape == (request["input0"].shape[0], 3)
        np.testing.assert_allclose(result["output0"], expected["output0"], rtol=1e-5, atol=1e-6)


async def test_outputs_are_identical_to_unbatched_inference() -> None:
    recorder = Recorder(_session(add_constant(2.5, features=4)))
    batcher = DynamicBatcher(recorder, max_batch_size=8, max_queue_delay_us=LONG_DELAY_US)
    requests = [{"input0": rows(n, 4, seed=10 + n)} for n in (3, 1, 4)]  # exactly one batch
    try:
        results = await gather_all(*(batcher.submit(r) for r in requests))
    finally:
        await batcher.close()
    assert [b["input0"].shape[0] for b in recorder.batches] == [8]
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["output0"], recorder.infer(request)["output0"])
        np.testing.assert_array_equal(result["output0"], request["input0"] + np.float32(2.5))


async def test_incompatible_shapes_and_dtypes_never_share_a_batch() -> None:
    recorder = Recorder(_session(identity(TensorProto.FLOAT, ["batch", "width"])))
    batcher = DynamicBatcher(recorder, max_batch_size=4, max_queue_delay_us=LONG_DELAY_US)
    narrow = [{"input0": rows(1, 3, seed=i)} for i in range(4)]
    wide = [{"input0": rows(2, 5, seed=20 + i)} for i in range(2)]
    mixed = [r for pair in zip(narrow[:2], wide, strict=True) for r in pair] + narrow[2:]
    try:
        results = await gather_all(*(batcher.submit(r) for r in mixed))
    finally:
        await batcher.close()
    assert sorted(b["input0"].shape for b in recorder.batches) == [(4, 3), (4, 5)]
    for request, result in zip(mixed, results, strict=True):
        np.testing.assert_array_equal(result["output0"], request["input0"])


async def test_dtypes_and_input_names_are_part_of_compatibility() -> None:
    gate = Gate()
    batcher = DynamicBatcher(gate, max_batch_size=2, max_queue_delay_us=LONG_DELAY_US)
    gate.release.set()
    requests: list[Tensors] = [
        {"x": rows(1, 2, seed=0)},
        {"x": rows(1, 2, seed=1, dtype=np.float64)},
        {"y": rows(1, 2, seed=2)},
        {"x": rows(1, 2, seed=3)},
        {"x": rows(1, 2, seed=4, dtype=np.float64)},
        {"y": rows(1, 2, seed=5)},
    ]
    try:
        results = await gather_all(*(batcher.submit(r) for r in requests))
    finally:
        await batcher.close()
    signatures = sorted((next(iter(b)), next(iter(b.values())).dtype.str) for b in gate.batches)
    assert signatures == [("x", "<f4"), ("x", "<f8"), ("y", "<f4")]
    for request, result in zip(requests, results, strict=True):
        assert result.keys() == request.keys()
        for name in request:
            assert result[name].dtype == request[name].dtype
            np.testing.assert_array_equal(result[name], request[name])


async def test_a_request_larger_than_max_batch_size_runs_alone() -> None:
    recorder = Recorder(_session(add_constant(1.0)))
    batcher = DynamicBatcher(recorder, max_batch_size=4, max_queue_delay_us=LONG_DELAY_US)
    big, small = {"input0": rows(9, 4, seed=1)}, {"input0": rows(4, 4, seed=2)}
    try:
        got_big, got_small = await gather_all(batcher.submit(big), batcher.submit(small))
    finally:
        await batcher.close()
    assert sorted(b["input0"].shape[0] for b in recorder.batches) == [4, 9]
    np.testing.assert_array_equal(got_big["output0"], big["input0"] + np.float32(1.0))
    np.testing.assert_array_equal(got_small["output0"], small["input0"] + np.float32(1.0))


async def test_preferred_size_dispatches_without_waiting_for_the_delay() -> None:
    recorder = Recorder(_session(add_constant(1.0)))
    sizes = Sizes()
    batcher = DynamicBatcher(
        recorder,
        max_batch_size=16,
        max_queue_delay_us=LONG_DELAY_US,
        preferred_batch_sizes=[4],
        observer=sizes,
    )
    try:
        # With a minute of delay these only finish because 4 rows is a preferred size.
        await gather_all(*(batcher.submit({"input0": rows(1, 4, seed=i)}) for i in range(4)))
        await gather_all(*(batcher.submit({"input0": rows(2, 4, seed=i)}) for i in range(2)))
    finally:
        await batcher.close()
    assert [b["input0"].shape[0] for b in recorder.batches] == [4, 4]
    assert [size for size, _ in sizes.seen] == [4, 4]
    assert all(seconds >= 0 for _, seconds in sizes.seen)


async def test_a_full_batch_dispatches_and_the_rest_waits_for_the_next() -> None:
    recorder = Recorder(_session(add_constant(1.0)))
    batcher = DynamicBatcher(recorder, max_batch_size=4, max_queue_delay_us=LONG_DELAY_US)
    requests = [{"input0": rows(1, 4, seed=i)} for i in range(8)]
    try:
        await gather_all(*(batcher.submit(r) for r in requests))
    finally:
        await batcher.close()
    assert [b["input0"].shape[0] for b in recorder.batches] == [4, 4]


async def test_a_zero_delay_runs_what_is_there() -> None:
    recorder = Recorder(_session(add_constant(1.0)))
    batcher = DynamicBatcher(recorder, max_batch_size=64, max_queue_delay_us=0)
    try:
        result = await batcher.submit({"input0": rows(2, 4, seed=0)})
    finally:
        await batcher.close()
    assert result["output0"].shape == (2, 4)
    assert len(recorder.batches) == 1


async def test_a_full_queue_raises_queue_full_instead_of_growing() -> None:
    gate = Gate()
    batcher = DynamicBatcher(gate, max_batch_size=1, max_queue_delay_us=0, max_queue_size=2)
    running = asyncio.ensure_future(batcher.submit({"x": rows(1, 2, seed=0)}))
    await asyncio.wait_for(gate.entered.wait(), 10)  # the first one is in the model now
    queued = [asyncio.ensure_future(batcher.submit({"x": rows(1, 2, seed=i)})) for i in (1, 2)]
    await until(lambda: batcher.queued == 2)
    with pytest.raises(QueueFullError):
        await batcher.submit({"x": rows(1, 2, seed=3)})
    gate.release.set()
    await asyncio.gather(running, *queued)
    await batcher.submit({"x": rows(1, 2, seed=4)})  # room again once the queue drained
    await batcher.close()


async def test_an_error_in_the_run_fails_every_request_of_that_batch_only() -> None:
    calls = 0

    async def flaky(inputs: Tensors) -> Tensors:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model exploded")
        return {"y": inputs["x"] * 2}

    batcher = DynamicBatcher(flaky, max_batch_size=3, max_queue_delay_us=LONG_DELAY_US)
    first = [batcher.submit({"x": rows(1, 2, seed=i)}) for i in range(3)]
    outcomes = await asyncio.gather(*first, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) and str(o) == "model exploded" for o in outcomes)
    x = rows(3, 2, seed=9)
    result = await batcher.submit(x_dict := {"x": x})
    np.testing.assert_array_equal(result["y"], x_dict["x"] * 2)
    await batcher.close()


async def test_an_output_without_the_batch_dimension_cannot_be_split() -> None:
    async def summed(inputs: Tensors) -> Tensors:
        return {"total": np.asarray(inputs["x"].sum())}

    batcher = DynamicBatcher(summed, max_batch_size=2, max_queue_delay_us=LONG_DELAY_US)
    outcomes = await asyncio.gather(
        *(batcher.submit({"x": rows(1, 2, seed=i)}) for i in range(2)), return_exceptions=True
    )
    assert all(isinstance(o, UnsplittableOutputError) for o in outcomes)
    await batcher.close()


async def test_cancelling_one_waiter_leaves_the_others_intact() -> None:
    gate = Gate(lambda t: {"y": t["x"] + 1})
    batcher = DynamicBatcher(gate, max_batch_size=2, max_queue_delay_us=LONG_DELAY_US)
    in_run = [asyncio.ensure_future(batcher.submit({"x": rows(1, 2, seed=i)})) for i in (0, 1)]
    await asyncio.wait_for(gate.entered.wait(), 10)
    queued = [asyncio.ensure_future(batcher.submit({"x": rows(1, 2, seed=i)})) for i in (2, 3)]
    await until(lambda: batcher.queued == 2)
    in_run[0].cancel()  # cancelled while its batch runs
    queued[0].cancel()  # cancelled while waiting in the queue: its place is freed at once
    await until(lambda: batcher.queued == 1)
    gate.release.set()
    await batcher.close()  # runs the last queued request without waiting out the delay
    survivors = await asyncio.gather(in_run[1], queued[1])
    np.testing.assert_array_equal(survivors[0]["y"], rows(1, 2, seed=1) + 1)
    np.testing.assert_array_equal(survivors[1]["y"], rows(1, 2, seed=3) + 1)
    assert in_run[0].cancelled() and queued[0].cancelled()
    assert [b["x"].shape[0] for b in gate.batches] == [2, 1]


async def test_a_sync_run_function_runs_in_the_executor() -> None:
    session = _session(add_constant(3.0))

    def infer(inputs: Tensors) -> Tensors:
        return {"output0": session.run(["output0"], inputs)[0]}

    batcher = DynamicBatcher(infer, max_batch_size=4, max_queue_delay_us=LONG_DELAY_US)
    requests = [{"input0": rows(2, 4, seed=i)} for i in range(2)]
    results = await gather_all(*(batcher.submit(r) for r in requests))
    await batcher.close()
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["output0"], request["input0"] + np.float32(3.0))


async def test_close_drains_queued_requests_and_refuses_new_ones() -> None:
    recorder = Recorder(_session(add_constant(1.0)))
    batcher = DynamicBatcher(recorder, max_batch_size=8, max_queue_delay_us=LONG_DELAY_US)
    pending = [
        asyncio.ensure_future(batcher.submit({"input0": rows(1, 4, seed=i)})) for i in (0, 1)
    ]
    await until(lambda: batcher.queued == 2)
    await batcher.close()  # does not wait out the minute of delay
    assert all(p.done() and p.result()["output0"].shape == (1, 4) for p in pending)
    with pytest.raises(BatcherClosedError):
        await batcher.submit({"input0": rows(1, 4, seed=3)})


async def test_close_without_draining_fails_queued_and_running_requests() -> None:
    gate = Gate()
    batcher = DynamicBatcher(gate, max_batch_size=1, max_queue_delay_us=0)
    running = asyncio.ensure_future(batcher.submit({"x": rows(1, 2, seed=0)}))
    await asyncio.wait_for(gate.entered.wait(), 10)
    queued = asyncio.ensure_future(batcher.submit({"x": rows(1, 2, seed=1)}))
    await until(lambda: batcher.queued == 1)
    await batcher.close(drain=False)
    for future in (running, queued):
        with pytest.raises(BatcherClosedError):
            await future


async def test_concurrent_batches_keep_rows_apart() -> None:
    recorder = Recorder(_session(mlp([4, 8, 2], seed=1)))
    batcher = DynamicBatcher(
        recorder, max_batch_size=4, max_queue_delay_us=1000, max_concurrent_batches=3
    )
    requests = [{"input0": rows(1 + i % 3, 4, seed=i)} for i in range(30)]
    results = await gather_all(*(batcher.submit(r) for r in requests))
    await batcher.close()
    for request, result in zip(requests, results, strict=True):
        expected = recorder.infer(request)["output0"]
        np.testing.assert_allclose(result["output0"], expected, rtol=1e-5, atol=1e-6)


async def test_a_failing_observer_does_not_stop_batching(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def observe_batch(self, size: int, queue_seconds: float) -> None:
            raise RuntimeError(f"metrics backend down ({size} rows, {queue_seconds} s)")

    recorder = Recorder(_session(add_constant(1.0)))
    batcher = DynamicBatcher(recorder, max_batch_size=2, max_queue_delay_us=0, observer=Broken())
    for seed in range(3):
        request = {"input0": rows(1, 4, seed=seed)}
        result = await batcher.submit(request)
        np.testing.assert_array_equal(result["output0"], request["input0"] + np.float32(1.0))
    await batcher.close()
    assert "batch observer failed" in caplog.text


def test_invalid_settings_are_refused() -> None:
    async def run(inputs: Tensors) -> Tensors:
        return inputs

    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(run, max_batch_size=0)
    with pytest.raises(ValueError, match="preferred"):
        DynamicBatcher(run, max_batch_size=4, preferred_batch_sizes=[8])
    with pytest.raises(ValueError, match="max_queue_delay_us"):
        DynamicBatcher(run, max_batch_size=4, max_queue_delay_us=-1)


class Held:
    """The server's count of requests held (admitted, not answered), as the data plane keeps
    it in ``in_flight``."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __call__(self) -> int:
        return self.count


async def test_a_queue_holding_every_request_of_the_server_runs_at_once() -> None:
    recorder = Recorder(_session(add_constant(1.0)))
    batcher = DynamicBatcher(
        recorder, max_batch_size=16, max_queue_delay_us=LONG_DELAY_US, held=Held(3)
    )
    try:
        # With a minute of delay and room for 16 rows, only the rule can run these now.
        async with asyncio.timeout(10):
            await gather_all(*(batcher.submit({"input0": rows(1, 4, seed=i)}) for i in range(3)))
    finally:
        await batcher.close()
    assert [b["input0"].shape[0] for b in recorder.batches] == [3]


async def test_a_request_held_elsewhere_keeps_the_batch_waiting_until_poked() -> None:
    recorder = Recorder(_session(add_constant(1.0)))
    held = Held(4)  # one more request in the server, not queued here (being decoded, say)
    batcher = DynamicBatcher(
        recorder, max_batch_size=16, max_queue_delay_us=LONG_DELAY_US, held=held
    )
    try:
        waiting = asyncio.ensure_future(
            gather_all(*(batcher.submit({"input0": rows(1, 4, seed=i)}) for i in range(3)))
        )
        await until(lambda: batcher.queued == 3)
        for _ in range(20):  # the collector gets its turns and still waits
            await asyncio.sleep(0)
        assert recorder.batches == [] and not waiting.done()
        held.count = 3  # the other request was answered
        batcher.poke()
        async with asyncio.timeout(10):
            await waiting
    finally:
        await batcher.close()
    assert [b["input0"].shape[0] for b in recorder.batches] == [3]
