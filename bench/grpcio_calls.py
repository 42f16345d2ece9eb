"""``calls`` ModelInfer calls from grpcio (the C-core client that tritonclient, KServe's client
and ours use), ``streams`` at a time on one channel; prints a JSON line: calls, seconds and
each error's count by message. ``bench/grpc_h2.py`` runs it to count the failures a real client
sees when a server ends its connections (ghz v0.93.0 is built on grpc-go 1.34, which fails a
call it starts on a connection already draining instead of retrying it elsewhere).

    python grpcio_calls.py ADDRESS MODEL STREAMS CALLS   (from the "ours" venv: grpcio)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc


async def main(address: str, model: str, streams: int, calls: int) -> None:
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="input0", datatype="FP32", shape=[1, 64])
    tensor.contents.fp32_contents.extend([1.0] * 64)
    errors: dict[str, int] = {}
    started = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def caller() -> None:
            nonlocal started
            while started < calls:
                started += 1
                try:
                    await stub.ModelInfer(request, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    key = f"{exc.code().name}: {exc.details()}"
                    errors[key] = errors.get(key, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(streams)))
    seconds = time.perf_counter() - began
    print(json.dumps({"calls": calls, "seconds": seconds, "errors": errors}))  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
