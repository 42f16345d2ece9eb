"""Retries and HTTP framing, against scripted servers on 127.0.0.1 (``scripted.py``): 503
retried with backoff and ``Retry-After``, 4xx and other errors never, gRPC's UNAVAILABLE
retried, unreachable and silent servers, chunked and unframed answers, a keep-alive
connection the server closed, TLS, and what actually goes on the wire."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelfleet_client import AsyncClient, Client, InferenceServerError
from tests.client.scripted import Reply, scripted_grpc, scripted_http
from tests.helpers.runtime import free_port
from tests.helpers.tls import make_tls

X = {"x": np.array([1, 2], dtype=np.int32)}
BUSY = Reply(503, b'{"error": "server is at its limit"}')


def infer(url: str, **options: Any) -> dict[str, Any]:
    with Client(url, **options) as client:
        return {k: v.tolist() for k, v in client.infer("m", X).items()}


def test_a_503_with_retry_after_is_tried_again_that_much_later() -> None:
    with scripted_http(Reply(503, b'{"error": "busy"}', {"retry-after": "1"}), Reply()) as (
        url,
        script,
    ):
        assert infer(url) == {"y": [4, 2]}
    first, second = script.seen
    assert second.at - first.at >= 1.0


async def test_the_async_client_honours_retry_after_too() -> None:
    with scripted_http(Reply(503, b"{}", {"retry-after": "1"}), Reply()) as (url, script):
        async with AsyncClient(url) as client:
            found = await client.infer("m", X)
    assert found["y"].tolist() == [4, 2]
    assert script.seen[1].at - script.seen[0].at >= 1.0


def test_503_backs_off_exponentially_until_the_retries_run_out() -> None:
    with scripted_http(BUSY) as (url, script):
        with pytest.raises(InferenceServerError) as busy:
            infer(url, retries=3)
    assert (busy.value.status, busy.value.message) == (503, "server is at its limit")
    gaps = [b.at - a.at for a, b in zip(script.seen, script.seen[1:], strict=False)]
    assert len(gaps) == 3  # the first try and three more
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # half of 0.1 * 2**n, at least


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422, 429, 500, 501])
def test_other_errors_are_never_retried(status: int) -> None:
    with scripted_http(Reply(status, b'{"error": "input x: no"}')) as (url, script):
        with pytest.raises(InferenceServerError) as refused:
            infer(url, retries=5)
    assert (refused.value.status, refused.value.message) == (status, "input x: no")
    assert len(script.seen) == 1


def test_error_bodies_that_are_not_the_protocols_still_say_something() -> None:
    replies = [Reply(400, b'{"detail": [{"loc": ["body"]}]}'), Reply(500, b"Internal Error")]
    with scripted_http(*replies) as (url, _):
        with Client(url) as client:
            for expected in ('[{"loc": ["body"]}]', "Internal Error"):
                with pytest.raises(InferenceServerError) as failed:
                    client.infer("m", X)
                assert failed.value.message == expected


def test_grpc_unavailable_is_retried() -> None:
    with scripted_grpc(unavailable=2) as (url, script):
        with Client(url, retries=3) as client:
            assert client.infer("m", X)["x"].tolist() == [1, 2]
    assert len(script.seen) == 3
    with scripted_grpc(unavailable=5) as (url, script):
        with Client(url, retries=1) as client, pytest.raises(InferenceServerError) as busy:
            client.infer("m", X)
    assert (busy.value.status, busy.value.grpc_code) == (503, "UNAVAILABLE")
    assert busy.value.message == "busy, try again" and len(script.seen) == 2


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_server_that_is_not_there_is_a_503_after_the_retries(scheme: str) -> None:
    with pytest.raises(InferenceServerError) as away:
        infer(f"{scheme}://127.0.0.1:{free_port()}", retries=1, timeout=5)
    assert away.value.status == 503


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_server_that_never_answers_is_a_504_not_retried(scheme: str) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), reads nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"{scheme}://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(InferenceServerError) as late:
            infer(url, timeout=0.5)
    assert late.value.status == 504


def test_chunked_and_connection_framed_answers_are_read() -> None:
    error = Reply(503, b'{"error": "chunked busy"}', chunked=True)
    with scripted_http(Reply(chunked=True), Reply(framed=False), error) as (url, _):
        with Client(url, retries=0) as client:
            assert client.infer("m", X)["y"].tolist() == [4, 2]
            assert client.infer("m", X)["y"].tolist() == [4, 2]
            with pytest.raises(InferenceServerError, match="chunked busy"):
                client.infer("m", X)


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_connection_the_server_closed_is_replaced_without_a_retry(
    asynchronous: bool,
) -> None:
    with scripted_http(Reply(hang_up=True)) as (url, script):
        if asynchronous:
            async with AsyncClient(url, retries=0) as aclient:
                for _ in range(3):
                    assert (await aclient.infer("m", X))["y"].tolist() == [4, 2]
        else:
            with Client(url, retries=0) as client:
                for _ in range(3):
                    assert client.infer("m", X)["y"].tolist() == [4, 2]
    assert [s.connection for s in script.seen] == [1, 2, 3]


def test_what_goes_on_the_wire() -> None:
    """Binary tensors by default, the token, the path; JSON tensors with binary=False."""
    with scripted_http(Reply()) as (url, script):
        with Client(f"{url}/prefix/", token="t0k") as client:
            client.infer("my model", X, version=3, outputs=["y"])
        with Client(url, binary=False) as client:
            client.infer("m", X)
    binary, plain = script.seen
    assert (binary.method, binary.path) == ("POST", "/prefix/v2/models/my%20model/versions/3/infer")
    assert binary.headers["authorization"] == "Bearer t0k"
    split = int(binary.headers["inference-header-content-length"])
    header = json.loads(binary.body[:split])
    assert header == {
        "inputs": [
            {"name": "x", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}}
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    assert binary.body[split:] == np.array([1, 2], dtype="<i4").tobytes()
    assert "inference-header-content-length" not in plain.headers
    assert json.loads(plain.body) == {
        "inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": [1, 2]}]
    }


def test_answers_that_are_not_the_protocols_are_a_502() -> None:
    bad = [
        Reply(body=b"not json"),
        Reply(body=b'{"outputs": [{"name": "y"}]}'),
        Reply(body=b'{"outputs": []}12', headers={"inference-header-content-length": "99"}),
    ]
    with scripted_http(*bad) as (url, _):
        with Client(url) as client:
            for _ in bad:
                with pytest.raises(InferenceServerError) as broken:
                    client.infer("m", X)
                assert broken.value.status == 502, broken.value


async def test_one_array_calls_look_the_input_name_up_once() -> None:
    """Metadata is fetched once per model and version, even by 50 calls that start at once."""
    meta = {"name": "m", "inputs": [{"name": "x", "datatype": "INT32", "shape": [2]}]}
    body = json.dumps(meta | json.loads(Reply().body)).encode()  # metadata and answer in one
    with scripted_http(Reply(body=body)) as (url, script):
        async with AsyncClient(url) as aclient:
            await asyncio.gather(*(aclient.infer("m", X["x"]) for _ in range(50)))
        with Client(url) as client:
            client.infer("m", X["x"])
            client.infer("m", X["x"], version=2)
            client.infer("m", X["x"])
    lookups = [s.path for s in script.seen if s.method == "GET"]
    assert lookups == ["/v2/models/m", "/v2/models/m", "/v2/models/m/versions/2"]
    last = script.seen[-1]
    split = int(last.headers["inference-header-content-length"])
    assert json.loads(last.body[:split])["inputs"][0]["name"] == "x"


async def test_https_and_grpcs_with_the_servers_ca(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    with scripted_http(Reply(), tls=tls) as (url, script):
        assert infer(url, ca_file=str(tls.ca)) == {"y": [4, 2]}
        async with AsyncClient(url, ca_file=str(tls.ca)) as aclient:
            assert (await aclient.infer("m", X))["y"].tolist() == [4, 2]
        assert len(script.seen) == 2
        with pytest.raises(InferenceServerError) as untrusted:  # the system's CAs: not this one
            infer(url)
        assert untrusted.value.status == 502 and "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)
        assert len(script.seen) == 2  # refused at the handshake, and not tried again
    with scripted_grpc(unavailable=0, tls=tls) as (url, _):
        with Client(url, ca_file=str(tls.ca)) as client:
            assert client.infer("m", X)["x"].tolist() == [1, 2]
