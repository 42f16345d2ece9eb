"""An MLServer 1.7.1 runtime serving one ONNX file through ONNX Runtime (1 intra-op thread).

Runs in bench/.work/venvs/mlserver. ``bench/run.py`` writes settings.json and
model-settings.json (implementation ``mlserver_onnx.OnnxRuntime``, the model path in
``parameters.uri``) into a folder next to a copy of this file and runs ``mlserver start``.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = self.settings.parameters.uri
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        outputs = self.session.run(self.output_names, inputs)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, array)
                for name, array in zip(self.output_names, outputs, strict=True)
            ],
        )
