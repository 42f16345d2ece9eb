"""One gRPC ModelInfer call with ghz's request file (protobuf JSON), printing the first output
as a JSON list. Run with the "ours" venv's Python (it has grpcio and the protocol's generated
modules in modelfleet_client.oip): ``bench/answers.py`` checks any server's gRPC answer with it,
so the request checked is byte for byte the one ghz sends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc
from google.protobuf import json_format

from modelfleet_client.oip import inference_pb2 as pb
from modelfleet_client.oip import inference_pb2_grpc as pb_grpc
from modelfleet_client.rpc import decode_reply


def main(address: str, request_file: str) -> None:
    request = json_format.Parse(Path(request_file).read_text(), pb.ModelInferRequest())
    with grpc.insecure_channel(address) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    outputs = decode_reply(reply)
    first = outputs[reply.outputs[0].name]
    print(json.dumps({"shape": list(first.shape), "data": first.ravel().tolist()}))  # noqa: T201


if __name__ == "__main__":
    main(*sys.argv[1:])
