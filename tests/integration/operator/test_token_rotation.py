"""The operator's API client and a rotated service-account token: a 401 makes it read the
token again and retry once; a token the server still refuses is a temporary error.

The kubelet rewrites a pod's projected token file before the token expires; the client logs
in through the same function kopf uses, so re-reading the file is one more call of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp.web
import kopf
import pytest
import pytest_asyncio

from modelfleet_operator.kinds import INFERENCE_SERVICE as ISVC
from modelfleet_operator.kube import KubeClient

VALID = "Bearer rotated"


class ApiServer:
    """Answers GETs of one InferenceService to the valid token only, and records tokens."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.url = ""

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        token = request.headers.get("Authorization", "")
        self.seen.append(token)
        if token != VALID:
            return aiohttp.web.json_response({"kind": "Status", "code": 401}, status=401)
        return aiohttp.web.json_response({"metadata": {"name": request.match_info["name"]}})


@pytest_asyncio.fixture()
async def api() -> AsyncIterator[ApiServer]:
    server = ApiServer()
    app = aiohttp.web.Application()
    route = f"/apis/{ISVC.api_version}/namespaces/{{namespace}}/{ISVC.plural}/{{name}}"
    app.router.add_get(route, server.handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def token_file_logins(url: str, tokens: list[str]) -> list[kopf.ConnectionInfo]:
    """What successive reads of a token file give: each token, the last one from then on."""
    return [kopf.ConnectionInfo(server=url, token=t) for t in tokens]


async def test_a_401_logs_in_again_and_the_request_succeeds(api: ApiServer) -> None:
    logins = token_file_logins(api.url, ["expired", "rotated"])
    client = KubeClient(lambda: logins.pop(0) if len(logins) > 1 else logins[0])
    try:
        found = await client.get(ISVC, "ml", "iris")
        again = await client.get(ISVC, "ml", "iris")
    finally:
        await client.close()
    assert found == again == {"metadata": {"name": "iris"}}
    assert api.seen == ["Bearer expired", VALID, VALID]  # one retry, then the new token stays


async def test_a_token_still_refused_is_temporary_and_not_retried_in_a_loop(
    api: ApiServer,
) -> None:
    client = KubeClient(lambda: kopf.ConnectionInfo(server=api.url, token="revoked"))
    try:
        with pytest.raises(kopf.TemporaryError, match="401"):
            await client.get(ISVC, "ml", "iris")
    finally:
        await client.close()
    assert api.seen == ["Bearer revoked"]  # the same token after a new login: no retry
