"""KServe 0.21 ModelServer serving one ONNX file through ONNX Runtime (1 intra-op thread).

Runs in bench/.work/venvs/kserve. ``bench/run.py`` starts it as
``python kserve_onnx.py --http_port P --enable_grpc false ...`` (KServe parses its own flags
from argv); the model comes from $BENCH_MODEL_PATH and $BENCH_MODEL_NAME. Requests arrive on
KServe's V2 endpoint, /v2/models/NAME/infer.
"""

from __future__ import annotations

import os
import uuid

import kserve
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse


class OnnxModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:  # noqa: ARG002
        inputs = {i.name: i.as_numpy() for i in payload.inputs}
        outputs = self.session.run(self.output_names, inputs)
        infer_outputs = []
        for name, array in zip(self.output_names, outputs, strict=True):
            out = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
            out.set_data_from_numpy(array, binary_data=False)
            infer_outputs.append(out)
        return InferResponse(
            model_name=self.name,
            infer_outputs=infer_outputs,
            response_id=payload.id or str(uuid.uuid4()),
        )


if __name__ == "__main__":
    model = OnnxModel(os.environ["BENCH_MODEL_NAME"], os.environ["BENCH_MODEL_PATH"])
    kserve.ModelServer(workers=1).start([model])
