"""S16: bearer-token authentication. A missing or wrong token is refused with 401 before the
body is read or a model runs; health probes and /metrics stay open; tokens rotate through the
mounted file (Kubernetes' symlink swap) without a restart and never appear in logs."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.protocol import Arrays
from tests.helpers import onnx_models
from tests.helpers.runtime import InProcess, serve_process, wait_until

from .conftest import OpenApp

TOKEN = "tok-3f9c1e7d-first"
ROTATED = "tok-b41a09c2-second"
ROW = {"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
INFER = "/v2/models/m/infer"


def count_runs(served: InProcess) -> list[int]:
    """Wrap the data plane's runner so the test can see whether a model ran."""
    runs: list[int] = []
    inner = served.dataplane.runner

    async def counting(model: OnnxModel, inputs: Arrays, outputs: list[str] | None) -> Arrays:
        runs.append(1)
        return await inner(model, inputs, outputs)

    served.dataplane.runner = counting
    return runs


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def k8s_secret_volume(mount: Path, tokens: list[str], generation: int) -> Path:
    """Lay out (or update) a Secret volume the way the kubelet does: ``tokens`` is a symlink
    to ``..data/tokens``; ``..data`` points at a timestamped folder and is swapped atomically."""
    folder = mount / f"..2026_{generation}"
    folder.mkdir(parents=True)
    (folder / "tokens").write_text("\n".join(tokens) + "\n")
    staging = mount / "..data_tmp"
    os.symlink(folder.name, staging)
    os.replace(staging, mount / "..data")
    if not (mount / "tokens").is_symlink():
        os.symlink("..data/tokens", mount / "tokens")
    return mount / "tokens"


async def test_without_auth_settings_everything_is_open(open_app: OpenApp) -> None:
    async with open_app("m", {1: onnx_models.add_constant(1.0)}) as served:
        answer = await served.client.post(INFER, json={"inputs": [ROW]})
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="modelfleet"'),
        (bearer("wrong-token"), 'Bearer realm="modelfleet", error="invalid_token"'),
        ({"authorization": f"Basic {TOKEN}"}, 'Bearer realm="modelfleet"'),
        ({"authorization": "Bearer "}, 'Bearer realm="modelfleet"'),
        (bearer(TOKEN + "x"), 'Bearer realm="modelfleet", error="invalid_token"'),
        (bearer(TOKEN[:-1]), 'Bearer realm="modelfleet", error="invalid_token"'),
    ],
)
async def test_refused_before_the_body_is_read_or_the_model_runs(
    open_app: OpenApp, headers: dict[str, str], challenge: str
) -> None:
    body_read: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        body_read.append(True)
        yield b'{"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32", '
        yield b'"data": [1, 2, 3, 4]}]}'

    async with open_app("m", {1: onnx_models.add_constant(1.0)}, auth_token=TOKEN) as served:
        runs = count_runs(served)
        answer = await served.client.post(INFER, content=body(), headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == challenge
        assert set(answer.json()) == {"error"}
        assert TOKEN not in answer.text
        assert (body_read, runs) == ([], [])
        for path in ("/v2/models/m", "/v2/models/m/ready", "/v2", "/v1/models/m"):
            assert (await served.client.get(path, headers=headers)).status_code == 401
        v1 = await served.client.post("/v1/models/m:predict", json={"instances": [[1, 2, 3, 4]]})
        assert v1.status_code == 401
        assert (body_read, runs) == ([], [])


async def test_accepted_token_serves_and_health_and_metrics_stay_open(open_app: OpenApp) -> None:
    async with open_app("m", {1: onnx_models.add_constant(1.0)}, auth_token=TOKEN) as served:
        runs = count_runs(served)
        answer = await served.client.post(INFER, json={"inputs": [ROW]}, headers=bearer(TOKEN))
        assert answer.status_code == 200, answer.text
        lower = {"authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive
        assert (await served.client.get("/v2/models/m", headers=lower)).status_code == 200
        assert runs == [1]
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics", "/docs", "/openapi.json"):
            assert (await served.client.get(path)).status_code == 200, path


async def test_tokens_rotate_through_a_secret_volume_without_restart(
    open_app: OpenApp, tmp_path: Path
) -> None:
    mount = tmp_path / "secret"
    tokens = k8s_secret_volume(mount, ["", TOKEN, "  other-token  "], 1)
    model = {1: onnx_models.add_constant(1.0)}
    async with open_app("m", model, auth_tokens_file=tokens) as served:
        c = served.client

        async def status(token: str) -> int:
            answer = await c.post(INFER, json={"inputs": [ROW]}, headers=bearer(token))
            return answer.status_code

        assert [await status(TOKEN), await status("other-token"), await status("")] == [
            200,
            200,
            401,
        ]
        k8s_secret_volume(mount, [ROTATED], 2)
        assert [await status(TOKEN), await status(ROTATED)] == [401, 200]
        # An in-place rewrite of the same size (new mtime) is seen too.
        target = mount / "..2026_2" / "tokens"
        target.write_text(ROTATED[::-1] + "\n")
        os.utime(target, ns=(1, 1))
        assert [await status(ROTATED), await status(ROTATED[::-1])] == [401, 200]


async def test_unreadable_tokens_file_fails_closed(open_app: OpenApp, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret" / "tokens"
    async with open_app("m", {1: onnx_models.add_constant(1.0)}, auth_tokens_file=missing) as s:
        assert (await s.client.post(INFER, json={"inputs": [ROW]})).status_code == 401
        assert (await s.client.post(INFER, headers=bearer(""))).status_code == 401
        assert (await s.client.post(INFER, headers=bearer("x"))).status_code == 401
        assert (await s.client.get("/v2/health/live")).status_code == 200


async def test_tokens_never_reach_the_logs(
    open_app: OpenApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = k8s_secret_volume(tmp_path / "secret", [TOKEN], 1)
    model = {1: onnx_models.add_constant(1.0)}
    async with open_app("m", model, auth_tokens_file=tokens, auth_token=ROTATED) as served:
        for token in (TOKEN, ROTATED, "wrong-" + TOKEN):
            await served.client.post(INFER, json={"inputs": [ROW]}, headers=bearer(token))
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "rejected request: invalid bearer token" in logged
    assert "auth tokens file read: 1 token(s)" in logged
    assert TOKEN not in logged and ROTATED not in logged


def test_real_server_with_a_mounted_tokens_file(tmp_path: Path) -> None:
    repo = onnx_models.write_repository(tmp_path / "m", {1: onnx_models.add_constant(1.0)})
    tokens = k8s_secret_volume(tmp_path / "secret", [TOKEN], 1)
    args = ["--model-uri", str(repo), "--auth-tokens-file", str(tokens), "--log-level", "DEBUG"]
    with serve_process(tmp_path, *args) as served:
        url = served.url + INFER
        body = {"inputs": [ROW]}
        refused = httpx.post(url, json=body, headers=bearer("nope"))
        assert (refused.status_code, set(refused.json())) == (401, {"error"})
        assert httpx.post(url, json=body, headers=bearer(TOKEN)).status_code == 200
        k8s_secret_volume(tmp_path / "secret", [ROTATED], 2)
        assert httpx.post(url, json=body, headers=bearer(ROTATED)).status_code == 200
        assert httpx.post(url, json=body, headers=bearer(TOKEN)).status_code == 401
        assert httpx.get(f"{served.url}/metrics").status_code == 200
        wait_until(lambda: "invalid bearer token" in served.output(), 10, "refusal logged")
    output = served.output()
    assert TOKEN not in output and ROTATED not in output
