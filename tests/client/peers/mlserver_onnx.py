"""An MLServer 1.7.1 runtime serving one ONNX file through ONNX Runtime, every datatype, for
``tests/client/test_peers.py``.

Runs in the mlserver peer venv (``tests/helpers/peers.py``), never in the dev venv: the test
writes settings.json and model-settings.json (implementation ``mlserver_onnx.OnnxRuntime``,
the model path in ``parameters.uri``) into a folder beside copies of this file and
``onnx_signature.py``, and runs ``mlserver start``. The metadata lists the ONNX signature.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor, RequestInput
from onnx_signature import signature, strings  # type: ignore[import-not-found]  # beside it


def model_input(tensor: RequestInput) -> np.ndarray[Any, Any]:
    """A request input as ONNX Runtime takes it: BYTES (bytes from gRPC, str from JSON) as an
    object array of str, which NumpyCodec would read as raw numeric buffers."""
    if tensor.datatype != "BYTES":
        decoded: np.ndarray[Any, Any] = NumpyCodec.decode_input(tensor)
        return decoded
    found: np.ndarray[Any, Any] = strings(tensor.data.root, tensor.shape)
    return found


class OnnxRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        self.session = ort.InferenceSession(
            self.settings.parameters.uri, providers=["CPUExecutionProvider"]
        )
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.inputs = [MetadataTensor(**t) for t in signature(self.session.get_inputs())]
        self.outputs = [MetadataTensor(**t) for t in signature(self.session.get_outputs())]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {i.name: model_input(i) for i in payload.inputs}
        outputs = self.session.run(self.output_names, inputs)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, np.asarray(array))
                for name, array in zip(self.output_names, outputs, strict=True)
            ],
        )
