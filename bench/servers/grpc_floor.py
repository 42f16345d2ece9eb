"""A reference floor for gRPC, not a product: the least a Python grpc.aio server can do per
ModelInfer call, as ``asgi_floor.py`` is for HTTP.

grpc.aio (the stack ours, KServe's and MLServer's gRPC servers all use) on uvloop, one
servicer method: typed FP32 contents -> numpy -> ONNX Runtime run inline (1 intra-op thread)
-> raw output bytes. No validation, metrics or errors. It also serves HTTP ``/ready`` on
``port`` (``bench/launch.py`` waits on that), gRPC on ``port + 1``.

    python grpc_floor.py MODEL.onnx NAME PORT
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import uvicorn
import uvloop

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, path: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    async def ModelInfer(self, request: pb.ModelInferRequest, _context: Any) -> Any:
        feeds = {
            t.name: np.asarray(t.contents.fp32_contents, dtype=np.float32).reshape(t.shape)
            for t in request.inputs
        }
        results = self.session.run(self.outputs, feeds)
        reply = pb.ModelInferResponse(model_name=request.model_name)
        for name, array in zip(self.outputs, results, strict=True):
            reply.outputs.add(name=name, datatype="FP32", shape=array.shape)
            reply.raw_output_contents.append(array.tobytes())
        return reply


async def main(path: str, port: int) -> None:
    """gRPC on ``port + 1`` (any model name is served), ``/ready`` on ``port``."""
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(path), server)
    server.add_insecure_port(f"127.0.0.1:{port + 1}")
    await server.start()

    async def ready(scope: Any, _receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b'{"ready":true}'})

    config = uvicorn.Config(ready, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off")  # fmt: skip
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[3])))  # argv[2], the name: as asgi_floor.py
