"""The runtime's OpenAPI document (``/openapi.json``, shown by ``/docs``): what the server
accepts and answers, checked by schemathesis against a real server
(tests/integration/runtime/test_openapi_schemathesis.py).

``app.create_app`` installs ``Document`` as the app's ``openapi``. The inference routes are
served by ``fastpath.FastPath`` before FastAPI sees them, so they are described here by routes
that never run (``_infer`` and friends), merged with the app's real routes. Three things
FastAPI cannot know are fixed after generation: errors are ``{"error": "..."}`` with a 400,
never FastAPI's 422 ``detail``; a 401 exists only when tokens are configured; and the examples
are requests the served model accepts (taken from its signature and its
``modelfleet.example_input`` metadata), so "Try it out" in ``/docs`` works as it stands.

The pydantic models below describe the wire format only; requests are parsed by ``codec.py``
(orjson and numpy), so each constraint here states a rule written there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Body, FastAPI
from fastapi import Path as PathParam
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from modelfleet_runtime import openapi_signature as signature
from modelfleet_runtime.errors import ServingError
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.models.registry import ModelRegistry
from modelfleet_runtime.protocol import DATATYPES

VERSION_PATTERN = r"^[1-9][0-9]*$"
"""A version path segment, as ``fastpath.parse_version`` checks it."""

Datatype = Annotated[str, Field(json_schema_extra={"enum": list(DATATYPES)})]

ModelName = Annotated[
    str,
    PathParam(description="The served model's name; any other name is answered with 404."),
]
Version = Annotated[
    str,
    PathParam(
        description="A version number (positive, no leading zero); 404 if the server does not "
        "know it, 503 if it is known but not loaded.",
        json_schema_extra={"pattern": VERSION_PATTERN},
    ),
]


# --- Requests ---------------------------------------------------------------------------


class RequestInput(BaseModel):
    """One input tensor: ``data`` holds product(shape) elements, flat or nested row-major."""

    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """Open Inference Protocol request body. The binary tensor data extension (an
    ``application/octet-stream`` body whose JSON head is ``Inference-Header-Content-Length``
    bytes long) is accepted too."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


def _one_of(schema: dict[str, Any]) -> None:
    """Either field, never both: not what "required" says of each."""
    schema.pop("required", None)
    schema["oneOf"] = [{"required": ["instances"]}, {"required": ["inputs"]}]


class V1PredictRequest(BaseModel):
    """TensorFlow Serving style: exactly one of ``instances`` (rows) or ``inputs``
    (columns; an object of input name to values, or the values of a model's only input)."""

    model_config = ConfigDict(json_schema_extra=_one_of)

    instances: list[Any] = Field(min_length=1)
    inputs: list[Any] | dict[str, Any]


# --- Answers ----------------------------------------------------------------------------


class ErrorModel(BaseModel):
    """Every error: what went wrong and why."""

    error: str


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 marks a dynamic dimension")


class VersionStatus(BaseModel):
    version: str
    state: Literal["LOADING", "READY", "UNAVAILABLE"]
    reason: str | None = None
    message: str | None = None


class IndexEntry(VersionStatus):
    name: str


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    version_status: list[VersionStatus]


class V1ModelStatus(BaseModel):
    name: str
    ready: bool


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    """Open Inference Protocol response body (``application/octet-stream`` when binary
    outputs were asked for: this JSON head, then the tensors' bytes)."""

    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class V1PredictResponse(BaseModel):
    """``predictions`` for ``instances`` requests, ``outputs`` for ``inputs`` requests."""

    predictions: list[Any] | None = None
    outputs: Any = None


# --- Responses per route ----------------------------------------------------------------


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    return {code: {"model": ErrorModel} for code in codes}


NOT_READY = errors(503)
MODEL_ERRORS = errors(400, 404, 503)
"""A model route: a malformed version (400), an unknown model or version (404), one not
loaded (503)."""
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _inference_routes() -> APIRouter:
    """The routes ``FastPath`` serves, for the document only (never mounted)."""
    docs = APIRouter()
    infer = {
        "responses": {200: {"content": BINARY}, **MODEL_ERRORS, **errors(413, 500)},
        "response_model": InferenceResponse,
        "tags": ["v2"],
    }
    docs.post("/v2/models/{name}/infer", summary="Infer", **infer)(_infer)  # type: ignore[arg-type]
    docs.post(
        "/v2/models/{name}/versions/{version}/infer",
        summary="Infer with a version",
        **infer,  # type: ignore[arg-type]
    )(_infer_version)
    docs.post(
        "/v1/models/{name}:predict",
        summary="Predict",
        response_model=V1PredictResponse,
        responses={**MODEL_ERRORS, **errors(413, 500)},
        tags=["v1"],
    )(_predict)
    return docs


async def _infer(name: ModelName, body: Annotated[InferenceRequest, Body()]) -> None:
    raise NotImplementedError((name, body))  # documentation only: FastPath serves this


async def _infer_version(
    name: ModelName, version: Version, body: Annotated[InferenceRequest, Body()]
) -> None:
    raise NotImplementedError((name, version, body))  # documentation only


async def _predict(name: ModelName, body: Annotated[V1PredictRequest, Body()]) -> None:
    raise NotImplementedError((name, body))  # documentation only


class Document:
    """The app's ``openapi``: built on first use and again whenever the version that
    requests without a version go to changes (its signature is in the examples)."""

    def __init__(self, app: FastAPI, registry: ModelRegistry, auth: bool) -> None:
        self.app, self.registry, self.auth = app, registry, auth
        self._inference = _inference_routes()
        self._built: tuple[tuple[OnnxModel, ...], dict[str, Any]] | None = None

    def __call__(self) -> dict[str, Any]:
        loaded = tuple(self.registry.versions.values())
        if self._built is None or self._built[0] != loaded:
            self._built = (loaded, self._build(loaded))
        return self._built[1]

    def _build(self, loaded: tuple[OnnxModel, ...]) -> dict[str, Any]:
        app = self.app
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=[*app.routes, *self._inference.routes],
        )
        _without_422(document)
        if self.auth:
            _with_bearer_auth(document)
        model = _default_version(self.registry)
        if model is not None:
            _with_signature(document, model, same=all(_same_signature(model, m) for m in loaded))
        _with_examples(document, self.registry.name, model)
        return document


def _default_version(registry: ModelRegistry) -> OnnxModel | None:
    try:
        return registry.get(registry.name)
    except ServingError:  # nothing loaded yet: the document has no request examples
        return None


def _same_signature(one: OnnxModel, other: OnnxModel) -> bool:
    return (one.inputs, one.outputs) == (other.inputs, other.outputs)


def _with_signature(document: dict[str, Any], model: OnnxModel, same: bool) -> None:
    """The served version's signature in place of the protocol's generic request bodies;
    for requests naming a version only when every loaded version has that signature."""
    inputs, outputs = list(model.inputs.values()), list(model.outputs)
    bodies = {
        "/v2/models/{name}/infer": signature.v2_request(inputs, outputs),
        "/v1/models/{name}:predict": signature.v1_request(inputs),
    }
    if same:
        bodies["/v2/models/{name}/versions/{version}/infer"] = bodies["/v2/models/{name}/infer"]
    for path, body in bodies.items():
        if body is not None:
            content = document["paths"][path]["post"]["requestBody"]["content"]
            content["application/json"]["schema"] = body


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, op) for path, item in document["paths"].items() for op in item.values()]


def _without_422(document: dict[str, Any]) -> None:
    """``http_errors.py`` answers a request FastAPI cannot validate with 400 ``{"error"}``."""
    for _, operation in _operations(document):
        if operation["responses"].pop("422", None) is not None:
            operation["responses"].setdefault("400", {"description": "Bad Request"})
            operation["responses"]["400"]["content"] = {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorModel"}}
            }
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _with_bearer_auth(document: dict[str, Any]) -> None:
    """Every route but the health probes needs a bearer token (``auth.EXEMPT_PATHS``)."""
    document.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    unauthorized = {"description": "Unauthorized", "content": _error_content()}
    for path, operation in _operations(document):
        if not path.startswith("/v2/health/"):
            operation["security"] = [{"bearer": []}]
            operation["responses"]["401"] = unauthorized


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorModel"}}}


def _with_examples(document: dict[str, Any], name: str, model: OnnxModel | None) -> None:
    """The served model's name in every path, and (once it is loaded) a request it accepts."""
    for path, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "name":
                parameter["example"] = name
            elif parameter["name"] == "version" and model is not None:
                parameter["example"] = str(model.version)
        if model is None or "requestBody" not in operation:
            continue
        inputs = model.example_inputs()
        example = _v1_example(inputs) if path.startswith("/v1/") else {"inputs": inputs}
        operation["requestBody"]["content"]["application/json"]["example"] = example


def _v1_example(inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The same request in V1 form: ``instances`` (rows) when every input is batched along its
    first dimension, else ``inputs`` (columns by name)."""
    columns = {i["name"]: np.asarray(i["data"]).reshape(i["shape"]).tolist() for i in inputs}
    if not all(isinstance(column, list) for column in columns.values()):
        return {"inputs": columns}
    if len(columns) == 1:
        return {"instances": next(iter(columns.values()))}
    count = min(len(column) for column in columns.values())
    return {"instances": [{n: c[row] for n, c in columns.items()} for row in range(count)]}
