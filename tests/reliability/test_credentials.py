"""S9 through the real server: with a wrong S3 secret (a unique canary string) or an unknown
key id, the server is live but not ready with an AccessDenied reason that says to check the
credentials, and the canary appears in no log line, no HTTP response (model metadata, ready,
infer errors, the repository index, /metrics) and no exception text."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from moto import settings as moto_settings

from tests.helpers import onnx_models
from tests.helpers.aws import iam_key_id
from tests.helpers.runtime import serve_process, wait_until

from .storage import BUCKET, ROW, Moto, s3_args, status


@pytest.mark.parametrize(
    ("wrong", "code"), [("secret", "SignatureDoesNotMatch"), ("key id", "InvalidAccessKeyId")]
)
def test_wrong_credentials_are_reported_and_never_leak(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong: str, code: str
) -> None:
    body = onnx_models.add_constant(1.0)
    moto.client.put_object(Bucket=BUCKET, Key="m/1/model.onnx", Body=body)
    key_id = iam_key_id(moto.endpoint)
    canary = f"CANARY{uuid.uuid4().hex}"
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # enforce auth
    env = {
        "AWS_ACCESS_KEY_ID": key_id if wrong == "secret" else "AKIANOSUCHKEY0000000",
        "AWS_SECRET_ACCESS_KEY": canary,
    }
    args = [*s3_args(moto.endpoint, deadline=1.0), "--poll-interval", "0.5"]
    args += ["--log-level", "DEBUG"]
    seen: list[str] = []
    with serve_process(tmp_path, *args, env=env, wait_ready=False) as served:
        url = served.url
        infer = f"{url}/v2/models/m/infer"

        def reason() -> str | None:
            answer = httpx.post(infer, json={"inputs": [ROW]}, timeout=5)
            seen.append(answer.text)
            return answer.text if "AccessDenied" in answer.text else None

        text = wait_until(reason, 20, "an AccessDenied reason")
        assert code in text and "check credentials" in text, text
        assert status(url, "/v2/health/live") == 200
        assert status(url, "/v2/health/ready") == 503
        for method, path in [
            ("GET", "/v2/models/m"),
            ("GET", "/v2/models/m/ready"),
            ("GET", "/v2/models/m/versions/1"),
            ("GET", "/v2/models/m/versions/1/ready"),
            ("POST", "/v2/models/m/versions/1/infer"),
            ("POST", "/v1/models/m:predict"),
            ("GET", "/v1/models/m"),
            ("POST", "/v2/repository/index"),
            ("GET", "/v2"),
            ("GET", "/metrics"),
        ]:
            answer = httpx.request(method, f"{url}{path}", json={"inputs": [ROW]}, timeout=5)
            seen.append(f"{answer.headers}\n{answer.text}")
        wait_until(lambda: served.output().count(code) >= 2, 20, "retries logged")
    output = served.output()
    assert code in output  # the capture is live: an empty search below means something
    assert "Traceback" not in output
    assert canary not in output
    assert not [text for text in seen if canary in text]
    assert canary[6:] not in output + "".join(seen)  # not even the hex part alone
