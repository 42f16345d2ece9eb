"""An experiment, not a product: our gRPC ModelInfer on uvicorn's HTTP/2 (zttp) in place of
grpc.aio, to measure what our own per-call work costs on that stack (``bench/grpc_h2.py``).

Each call does what ``grpc_api.InferenceServicer.ModelInfer`` does: ``grpc_api.decode`` and
``encode`` inside ``DataPlane.handle`` (admission, the model lookup, the signature checks, the
request id, the W3C trace context from the call's metadata, every failure classified, the
request metrics with ``protocol="grpc"``), its errors as gRPC statuses (``grpc_api.CODES``,
in the trailers). gRPC's framing is done by hand, as in ``grpc_h2_floor.py``, whose
stream budget it shares. HTTP/1.1 on the same port reaches the runtime's whole app
(readiness, ``/metrics``); the app's lifespan loads the model. Not here, and needed before it
could be a product: the other RPCs, TLS, ``grpc-timeout``, compression, bearer tokens and the
gRPC port's connection limits.

    python grpc_h2_ours.py MODEL.onnx NAME PORT   (a venv with the runtime, uvicorn>=0.54, zttp)
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import uvicorn
from grpc_h2_floor import budget_streams

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_runtime import grpc_api
from modelfleet_runtime.config import Settings
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.server import build

INFER = "/inference.GRPCInferenceService/ModelInfer"
HEADERS = [(b"content-type", b"application/grpc")]
OK = [(b"grpc-status", b"0")]


def make_app(path: str, name: str, port: int) -> Any:
    settings = Settings(
        model_uri=path, name=name, intra_op_threads=1, inter_op_threads=1, poll_interval=0,
        model_dir=Path(f"/tmp/modelfleet-h2-{port}"), log_level="WARNING", grpc_port=None,
    )  # fmt: skip
    app, dataplane = build(settings)
    max_elements = settings.max_body_size

    async def model_infer(scope: Any, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = pb.ModelInferRequest.FromString(body[5:])  # past the length prefix

        async def work(model: OnnxModel) -> pb.ModelInferResponse:
            decoded = grpc_api.decode(request, max_elements)
            return grpc_api.encode(await dataplane.infer(model, decoded))

        metadata = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        traceparent, tracestate = grpc_api.trace_metadata(metadata)
        outcome = await dataplane.handle(
            "grpc", request.model_name, request.model_version, work,
            request_id=request.id, traceparent=traceparent, tracestate=tracestate,
        )  # fmt: skip
        if outcome.value is None:
            code = grpc_api.CODES.get(outcome.status, grpc.StatusCode.INTERNAL).value[0]
            status = [(b"grpc-status", str(code).encode()),
                      (b"grpc-message", quote(outcome.error).encode())]  # fmt: skip
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS,
                        "trailers": True})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
            await send({"type": "http.response.trailers", "headers": status})
            return
        data = outcome.value.SerializeToString()
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS,
                    "trailers": True})  # fmt: skip
        frame = b"\0" + struct.pack(">I", len(data)) + data
        await send({"type": "http.response.body", "body": frame})
        await send({"type": "http.response.trailers", "headers": OK})

    async def both(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == INFER:
            await model_infer(scope, receive, send)
        else:
            await app(scope, receive, send)

    return both


if __name__ == "__main__":
    streams_budget = int(os.environ.get("H2_STREAM_BUDGET", "3584"))
    if streams_budget:
        budget_streams(streams_budget)
    model_path, model_name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uvicorn.run(make_app(model_path, model_name, port), host="127.0.0.1", port=port,
                http="zttp", http2=True, loop="uvloop", log_level="warning",
                access_log=False, lifespan="on")  # fmt: skip
