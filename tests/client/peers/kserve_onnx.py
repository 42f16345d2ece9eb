"""KServe 0.21's ModelServer serving one ONNX file through ONNX Runtime, every datatype, for
``tests/client/test_peers.py``.

Runs in the kserve peer venv (``tests/helpers/peers.py``), never in the dev venv:
``python kserve_onnx.py --http_port P --grpc_port G`` (KServe parses its own flags), the model
from $PEER_MODEL_PATH under the name $PEER_MODEL_NAME. Outputs go back binary or JSON as the
request asks (KServe's own ``use_binary_outputs`` and requested outputs), and the metadata
lists the ONNX signature, so that a client can look an input's name up.
"""

from __future__ import annotations

import os
from typing import Any

import kserve
import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import from_np_dtype
from onnx_signature import signature, strings  # type: ignore[import-not-found]  # beside it


def model_input(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """BYTES arrive as bytes; ONNX Runtime's string tensors take str."""
    return strings(array.reshape(-1), array.shape) if array.dtype.kind in "OS" else array


class OnnxModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True

    def get_input_types(self) -> list[dict[str, Any]]:
        return list(signature(self.session.get_inputs()))

    def get_output_types(self) -> list[dict[str, Any]]:
        return list(signature(self.session.get_outputs()))

    def predict(
        self,
        payload: InferRequest,
        headers: Any = None,  # noqa: ARG002 (KServe's signature)
        response_headers: Any = None,  # noqa: ARG002
    ) -> InferResponse:
        inputs = {i.name: model_input(i.as_numpy()) for i in payload.inputs}
        outputs = []
        for name, array in zip(
            self.output_names, self.session.run(self.output_names, inputs), strict=True
        ):
            array = np.asarray(array)
            if array.dtype.kind in "OU":
                array = np.array(
                    [str(v).encode() for v in array.reshape(-1)], dtype=object
                ).reshape(array.shape)
            out = InferOutput(
                name=name,
                shape=list(array.shape),
                datatype=from_np_dtype(array.dtype) if array.dtype != object else "BYTES",
            )
            out.set_data_from_numpy(array, binary_data=payload.use_binary_outputs)
            outputs.append(out)
        return InferResponse(
            model_name=self.name,
            infer_outputs=outputs,
            response_id=payload.id or "peer",
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


if __name__ == "__main__":
    model = OnnxModel(os.environ["PEER_MODEL_NAME"], os.environ["PEER_MODEL_PATH"])
    kserve.ModelServer(workers=1).start([model])
