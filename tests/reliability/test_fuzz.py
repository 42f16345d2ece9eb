"""S1: hypothesis-generated bad requests against the real app in-process (V2 infer, V1
predict, unknown models and versions, wrong methods): every answer is 400/404/405/413/415 with
a JSON ``{"error": str}`` body, never a 500 or FastAPI's 422, and the server stays live and
keeps serving. At least 2,000 generated cases across the tests (counted, and asserted)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet_runtime.protocol import DATATYPES
from tests.helpers import onnx_models
from tests.helpers.runtime import loaded_app

ALLOWED = {400, 404, 405, 413, 415}
BODY_LIMIT = 8192
GOOD_ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
shapes = st.one_of(
    st.lists(st.integers(min_value=-(2**63), max_value=2**64), max_size=5),
    json_values,
)


class Fuzzed:
    """The app with model ``m`` ([batch, 4] float32), a private event loop, and a count."""

    def __init__(self, tmp: Path) -> None:
        root = onnx_models.write_repository(tmp / "m", {1: onnx_models.add_constant(1.0)})
        self.app, self.dataplane, _ = loaded_app(
            "m", {1: root / "1" / "model.onnx"}, max_body_size=BODY_LIMIT
        )
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(self.app, raise_app_exceptions=False),
            base_url="http://test",
        )
        self.cases = 0

    def send(self, method: str, path: str, content: bytes = b"", **kw: Any) -> httpx.Response:
        request = self.client.request(method, path, content=content, **kw)
        return self.loop.run_until_complete(request)

    def check(self, method: str, path: str, content: bytes = b"", **kw: Any) -> None:
        """One bad request: a 4xx from ALLOWED with exactly ``{"error": "<text>"}``."""
        self.cases += 1
        answer = self.send(method, path, content, **kw)
        assert answer.status_code in ALLOWED, (answer.status_code, answer.text, content[:300])
        body = orjson.loads(answer.content)
        assert isinstance(body, dict) and set(body) == {"error"}, answer.text
        assert isinstance(body["error"], str) and body["error"]

    def still_serving(self) -> None:
        assert self.send("GET", "/v2/health/live").status_code == 200
        assert self.send("GET", "/v2/health/ready").status_code == 200
        good = orjson.dumps({"inputs": [GOOD_ROW]})
        answer = self.send("POST", "/v2/models/m/infer", good)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [2, 3, 4, 5]

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.dataplane.aclose())
        self.loop.close()


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[Fuzzed]:
    target = Fuzzed(tmp_path)
    try:
        yield target
        target.still_serving()
    finally:
        target.close()


def run(test: Callable[[], None], fuzzed: Fuzzed, at_least: int) -> None:
    test()
    assert fuzzed.cases >= at_least, fuzzed.cases


# --- V2 infer -------------------------------------------------------------------------------


def wrong_input() -> st.SearchStrategy[dict[str, Any]]:
    """An input object with at least one certain defect (wrong name or wrong datatype), and
    every other field random: it exercises the decoder on garbage but can never be valid."""
    other_name = st.text(max_size=10).filter(lambda n: n != "input0") | json_values
    other_type = st.sampled_from(sorted(set(DATATYPES) - {"FP32"})) | json_values
    fields = {
        "shape": shapes,
        "data": json_values | st.lists(st.floats(width=32), max_size=12),
        "parameters": json_values,
    }
    return st.one_of(
        st.fixed_dictionaries({"name": other_name, "datatype": st.just("FP32"), **fields}),
        st.fixed_dictionaries({"name": st.just("input0"), "datatype": other_type, **fields}),
    )


def count_mismatch() -> st.SearchStrategy[dict[str, Any]]:
    """FP32 data whose length is not the product of the declared shape."""

    def build(data: list[float], shape: list[int]) -> dict[str, Any]:
        return {"name": "input0", "datatype": "FP32", "shape": shape, "data": data}

    product = st.lists(st.integers(0, 6), min_size=1, max_size=3)
    pairs = st.tuples(st.lists(st.floats(width=32), max_size=24), product)
    return pairs.filter(lambda p: len(p[0]) != _prod(p[1])).map(lambda p: build(*p))


def _prod(shape: list[int]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total


def infer_bodies() -> st.SearchStrategy[dict[str, Any]]:
    inputs = st.lists(wrong_input() | count_mismatch(), min_size=1, max_size=3)
    return st.fixed_dictionaries(
        {"inputs": inputs},
        optional={"id": json_values, "outputs": json_values, "parameters": json_values},
    )


def test_v2_random_bytes_and_json_values(fuzzed: Fuzzed) -> None:
    @settings(FUZZ, max_examples=600)
    @given(
        raw=st.binary(max_size=BODY_LIMIT + 64) | json_values.map(lambda v: json.dumps(v).encode())
    )
    def case(raw: bytes) -> None:
        fuzzed.check("POST", "/v2/models/m/infer", raw)

    run(case, fuzzed, 600)


def test_v2_structured_requests_with_a_defect(fuzzed: Fuzzed) -> None:
    @settings(FUZZ, max_examples=700)
    @given(
        body=infer_bodies(),
        header=st.none() | st.text(st.characters(codec="ascii", min_codepoint=32), max_size=6),
    )
    def case(body: dict[str, Any], header: str | None) -> None:
        headers = {"inference-header-content-length": header} if header is not None else {}
        content = json.dumps(body).encode()
        fuzzed.check("POST", "/v2/models/m/infer", content, headers=headers)

    run(case, fuzzed, 700)


SEGMENT = st.text(
    st.characters(codec="ascii", min_codepoint=33, exclude_characters="/?#%\x7f"), min_size=1
)


def test_unknown_models_versions_and_methods(fuzzed: Fuzzed) -> None:
    good = orjson.dumps({"inputs": [GOOD_ROW]})

    @settings(FUZZ, max_examples=100)
    @given(
        name=SEGMENT.filter(lambda s: s not in ("m", ".", "..")),
        version=SEGMENT.filter(lambda s: s != "1" and s not in (".", "..")),
        method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]),
    )
    def case(name: str, version: str, method: str) -> None:
        fuzzed.check("POST", f"/v2/models/{name}/infer", good)
        fuzzed.check("POST", f"/v2/models/m/versions/{version}/infer", good)
        fuzzed.check(method, "/v2/models/m/infer")
        fuzzed.check("POST", f"/v1/models/{name}:predict", b'{"instances": [[1, 2, 3, 4]]}')

    run(case, fuzzed, 400)


# --- V1 predict -----------------------------------------------------------------------------


def v1_bodies() -> st.SearchStrategy[Any]:
    """V1 bodies that cannot be valid: rows of the wrong width or kind, both or neither of
    'instances' and 'inputs', or wrong top-level types."""
    bad_row = st.lists(st.floats(width=32), max_size=8).filter(lambda r: len(r) != 4)
    odd_row = st.lists(json_values, min_size=1, max_size=6).filter(
        lambda r: len(r) != 4 or not all(type(v) in (int, float) for v in r)
    )
    rows = st.lists(bad_row | odd_row, min_size=1, max_size=4) | json_scalars
    return st.one_of(
        st.fixed_dictionaries({"instances": rows}),
        st.fixed_dictionaries({"inputs": rows}),
        st.fixed_dictionaries({"instances": json_values, "inputs": json_values}),
        st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("instances", "inputs")),
                        json_values),
        st.lists(json_values) | json_scalars,
    )  # fmt: skip


def test_v1_predict(fuzzed: Fuzzed) -> None:
    @settings(FUZZ, max_examples=500)
    @given(body=v1_bodies() | st.binary(max_size=512))
    def case(body: Any) -> None:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        fuzzed.check("POST", "/v1/models/m:predict", content)

    run(case, fuzzed, 500)
