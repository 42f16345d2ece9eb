"""Triton's own clients (``tritonclient.http`` over https, ``tritonclient.grpc`` with
``ssl=True``) calling a ``modelfleet serve`` that speaks TLS, for ``test_tls.py``.

Runs in the tritonclient peer venv (``tests/helpers/peers.py``), never in the dev venv:
``python triton_tls.py HTTP_PORT GRPC_PORT CA [CLIENT_CERT CLIENT_KEY]``. Checks liveness,
readiness and the model's metadata, runs the iris model on one row through each client,
and prints one JSON line: per client, what it saw.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton_grpc  # type: ignore[import-not-found]
import tritonclient.http as triton_http  # type: ignore[import-not-found]

ROW = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)


def call(module: Any, client: Any) -> dict[str, Any]:
    infer_input = module.InferInput("input", list(ROW.shape), "FP32")
    infer_input.set_data_from_numpy(ROW)
    result = client.infer("iris", [infer_input])
    metadata = client.get_model_metadata("iris")
    inputs = metadata["inputs"] if isinstance(metadata, dict) else metadata.inputs
    first = inputs[0]
    return {
        "live": client.is_server_live(),
        "ready": client.is_model_ready("iris"),
        "input": first["name"] if isinstance(first, dict) else first.name,
        "label": result.as_numpy("label").tolist(),
    }


def main(http_port: str, grpc_port: str, ca: str, cert: str = "", key: str = "") -> None:
    options = {"ca_certs": ca, **({"certfile": cert, "keyfile": key} if cert else {})}
    http = triton_http.InferenceServerClient(
        f"127.0.0.1:{http_port}", ssl=True, ssl_options=options
    )
    grpc = triton_grpc.InferenceServerClient(
        f"127.0.0.1:{grpc_port}",
        ssl=True,
        root_certificates=ca,
        private_key=key or None,
        certificate_chain=cert or None,
    )
    seen = {"http": call(triton_http, http), "grpc": call(triton_grpc, grpc)}
    http.close()
    grpc.close()
    sys.stdout.write(json.dumps(seen) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
