"""An experiment, not a product: the least a gRPC server on uvicorn's own HTTP/2 (uvicorn
0.54 with ``http="zttp"``, zttp's Zig HTTP/2 core, ASGI response trailers) can do per
ModelInfer call, to set beside ``grpc_floor.py`` (grpc.aio) in ``bench/grpc_h2.py``.

The same work per call as ``grpc_floor.py``: typed FP32 contents -> numpy -> ONNX Runtime run
inline (1 intra-op thread) -> raw output bytes, framed by hand (gRPC's 5-byte length prefix,
``grpc-status`` as a trailer). No validation, metrics, compression, deadlines or errors. Any
GET answers 200 (``bench/launch.py`` waits on ``/v2/models/NAME/ready``); gRPC and HTTP/1.1
share ``port``.

    python grpc_h2_floor.py MODEL.onnx NAME PORT
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn

from modelfleet_client.oip import inference_pb2 as pb

HEADERS = [(b"content-type", b"application/grpc")]
OK = [(b"grpc-status", b"0")]


def make_app(path: str) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = pb.ModelInferRequest.FromString(body[5:])  # past the length prefix
        feeds = {
            t.name: np.asarray(t.contents.fp32_contents, dtype=np.float32).reshape(t.shape)
            for t in request.inputs
        }
        results = session.run(outputs, feeds)
        reply = pb.ModelInferResponse(model_name=request.model_name)
        for name, array in zip(outputs, results, strict=True):
            reply.outputs.add(name=name, datatype="FP32", shape=array.shape)
            reply.raw_output_contents.append(array.tobytes())
        data = reply.SerializeToString()
        frame = b"\0" + struct.pack(">I", len(data)) + data
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS,
                    "trailers": True})  # fmt: skip
        await send({"type": "http.response.body", "body": frame})
        await send({"type": "http.response.trailers", "headers": OK})

    return app


if __name__ == "__main__":
    uvicorn.run(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[3]), http="zttp",
                http2=True, loop="uvloop", log_level="warning", access_log=False,
                lifespan="off")  # fmt: skip
