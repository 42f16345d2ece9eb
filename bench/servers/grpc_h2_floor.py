"""An experiment, not a product: the least a gRPC server on uvicorn's own HTTP/2 (uvicorn
0.54 with ``http="zttp"``, zttp's Zig HTTP/2 core, ASGI response trailers) can do per
ModelInfer call, to set beside ``grpc_floor.py`` (grpc.aio) in ``bench/grpc_h2.py``.

The same work per call as ``grpc_floor.py``: typed FP32 contents -> numpy -> ONNX Runtime run
inline (1 intra-op thread) -> raw output bytes, framed by hand (gRPC's 5-byte length prefix,
``grpc-status`` as a trailer). No validation, metrics, compression, deadlines or errors. Any
GET answers 200 (``bench/launch.py`` waits on ``/v2/models/NAME/ready``); gRPC and HTTP/1.1
share ``port``.

zttp 0.0.35 ends a connection (GOAWAY ENHANCE_YOUR_CALM, failing the calls in flight) once it
has opened 4,096 streams, with no setting to change that. ``budget_streams`` ends each
connection gracefully before that, as a gRPC server with a maximum connection age does:
``H2_STREAM_BUDGET`` streams (default 3,584; 0 turns it off), then GOAWAY(NO_ERROR) naming the
last stream taken, the streams in flight answered, a stream the client opened before it saw the
GOAWAY refused with REFUSED_STREAM (gRPC retries those on its new connection), and the
connection left for the client to close (ours closes it 5 s later if the client does not).

    python grpc_h2_floor.py MODEL.onnx NAME PORT
"""

from __future__ import annotations

import os
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


def budget_streams(budget: int) -> None:
    """End each HTTP/2 connection gracefully after ``budget`` streams (the module docstring),
    by patching uvicorn 0.54's ``ZttpH2Protocol``: an experiment's shortcut, not a product's."""
    from uvicorn.protocols.http import zttp_h2_impl

    original = zttp_h2_impl.ZttpH2Protocol.handle_request

    def handle_request(self: Any, event: Any) -> None:
        last = getattr(self, "_goaway_last", None)
        if last is not None and event.stream_id > last:
            self.conn.stream(event.stream_id).reset(0x7)  # REFUSED_STREAM
            self.flush()
            return
        original(self, event)
        if last is None and event.stream_id >= 2 * budget - 1:  # the client's n-th: 2n - 1
            self._goaway_last = event.stream_id
            self.conn.close(0, event.stream_id)
            self.shutdown_requested = True
            self.flush()

    close = zttp_h2_impl.ZttpH2Protocol._close_connection

    def close_connection(self: Any) -> None:
        if getattr(self, "_goaway_last", None) is None or self.transport.is_closing():
            close(self)
            return
        # Drained: the client closes it once it has read every answer; a later close of
        # ours only backs that up (closing at once can cut frames the client still sends).
        self.flush()
        if not getattr(self, "_linger", None):
            self._linger = self.loop.call_later(5.0, self.transport.close)

    zttp_h2_impl.ZttpH2Protocol.handle_request = handle_request  # type: ignore[method-assign]
    zttp_h2_impl.ZttpH2Protocol._close_connection = close_connection  # type: ignore[method-assign]


if __name__ == "__main__":
    streams_budget = int(os.environ.get("H2_STREAM_BUDGET", "3584"))
    if streams_budget:
        budget_streams(streams_budget)
    uvicorn.run(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[3]), http="zttp",
                http2=True, loop="uvloop", log_level="warning", access_log=False,
                lifespan="off")  # fmt: skip
