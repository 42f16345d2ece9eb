"""A reference floor, not a product: the least a Python V2 JSON server can do per request.

A raw ASGI app (no framework, no validation beyond the happy path, no metrics) under uvicorn
with uvloop and httptools, like our runtime: orjson parse -> numpy -> ONNX Runtime run inline
on the event loop (1 intra-op thread) -> orjson dump. ``bench/run.py`` runs it from the
"ours" venv to show how much of our per-request cost is framework; the lead's server cannot
be faster than this on the same request.

    python asgi_floor.py MODEL.onnx NAME PORT
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn

Scope = dict[str, Any]


def make_app(path: str, name: str) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    infer_path = f"/v2/models/{name}/infer"
    ready_path = f"/v2/models/{name}/ready"
    json_headers = [(b"content-type", b"application/json")]

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == ready_path:
            await send({"type": "http.response.start", "status": 200, "headers": json_headers})
            await send({"type": "http.response.body", "body": b'{"ready":true}'})
            return
        if scope["path"] != infer_path:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        request = orjson.loads(b"".join(chunks))
        feeds = {
            t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
            for t in request["inputs"]
        }
        results = session.run(outputs, feeds)
        body = orjson.dumps(
            {
                "model_name": name,
                "outputs": [
                    {"name": n, "datatype": "FP32", "shape": list(a.shape), "data": a.ravel()}
                    for n, a in zip(outputs, results, strict=True)
                ],
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        await send({"type": "http.response.start", "status": 200, "headers": json_headers})
        await send({"type": "http.response.body", "body": body})

    return app


if __name__ == "__main__":
    model_path, model_name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uvicorn.run(
        make_app(model_path, model_name),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
