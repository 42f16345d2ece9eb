"""The built images work: run from the mounted image as their non-root user, with a read-only
root and an emptyDir-like /tmp, the runtime serves the bundled iris model and answers an infer
request, and the operator image prints the CRD.

Slow (images must be built first): ``scripts/test-images`` builds them and runs this module.
Elsewhere these tests skip when podman, root or the images are missing; with
``MODELFLEET_REQUIRE_IMAGES=1`` (set by scripts/test-images) they fail instead.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.otlp import otlp_receiver
from tests.helpers.runtime import stop_process

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/modelfleet")
TAG = os.environ.get("IMAGE_TAG", VERSION)
UID = 10001
READY_DEADLINE_S = 90.0


def _unavailable(reason: str) -> None:
    if os.environ.get("MODELFLEET_REQUIRE_IMAGES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _podman(*args: str) -> str:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout.strip()


class Image:
    """A built image: its configuration and, while mounted, its root filesystem."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.config: dict[str, Any] = json.loads(_podman("image", "inspect", name))[0]["Config"]
        self.root = Path(_podman("image", "mount", name))

    def env(self, **overrides: str) -> list[str]:
        """The image's ENV (as `podman run` would set it), with overrides."""
        env = dict(item.split("=", 1) for item in self.config.get("Env", []))
        return [f"{k}={v}" for k, v in {**env, **overrides}.items()]

    def command(self, scratch: Path, *args: str, **env: str) -> list[str]:
        """Run ENTRYPOINT + args inside the image as its USER, with only the image's env, in a
        private mount namespace where /tmp is ``scratch`` (the pod's emptyDir) and everything
        else is the image's read-only root."""
        scratch.chmod(0o1777)
        user = self.config["User"]
        script = (
            'mount --bind "$2" "$1/tmp" && mount --rbind /dev "$1/dev" && '
            'mount -t proc proc "$1/proc" && root="$1" && user="$3" && shift 3 && '
            'exec chroot --userspec="$user" "$root" "$@"'
        )
        return [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(self.root), str(scratch), user,
            "/usr/bin/env", "-i", *self.env(**env), *self.config["Entrypoint"], *args,
        ]  # fmt: skip

    def unmount(self) -> None:
        _podman("image", "unmount", self.name)


def _image(kind: str) -> Iterator[Image]:
    if shutil.which("podman") is None:
        _unavailable("podman is not installed (scripts/test-images installs it)")
    if os.geteuid() != 0:
        _unavailable("mounting an image and chroot need root")
    name = f"{PREFIX}-{kind}:{TAG}"
    if subprocess.run(["podman", "image", "exists", name], check=False).returncode != 0:
        _unavailable(f"{name} is not built: run scripts/build-images")
    image = Image(name)
    try:
        yield image
    finally:
        image.unmount()


@pytest.fixture(scope="module")
def runtime_image() -> Iterator[Image]:
    yield from _image("runtime")


@pytest.fixture(scope="module")
def operator_image() -> Iterator[Image]:
    yield from _image("operator")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _request(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _wait_ready(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the runtime exited with {server.returncode}")
        try:
            if _request(f"{base}/v2/health/ready")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    pytest.fail(f"not ready within {READY_DEADLINE_S} s")


@pytest.fixture(scope="module")
def runtime_server(
    runtime_image: Image, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """`modelfleet serve --port P` from the image, on 127.0.0.1, as UID 10001."""
    port = _free_port()
    cmd = runtime_image.command(
        tmp_path_factory.mktemp("runtime-tmp"),
        *runtime_image.config["Cmd"],
        "--port",
        str(port),
        MODELFLEET_HOST="127.0.0.1",
    )
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        yield base, server.pid
    finally:
        stop_process(server)


def test_runtime_serves_and_infers_iris(runtime_server: tuple[str, int]) -> None:
    base, _ = runtime_server
    status, meta = _request(f"{base}/v2/models/iris")
    assert status == 200
    (spec,) = meta["inputs"]
    shape = [1 if dim < 0 else dim for dim in spec["shape"]]
    body = {
        "inputs": [
            {
                "name": spec["name"],
                "shape": shape,
                "datatype": spec["datatype"],
                "data": [5.1, 3.5, 1.4, 0.2][: math.prod(shape)],
            }
        ]
    }
    status, result = _request(f"{base}/v2/models/iris/infer", body)
    assert status == 200
    assert result["model_name"] == "iris"
    assert {o["name"] for o in result["outputs"]} == {o["name"] for o in meta["outputs"]}


def test_runtime_runs_as_its_non_root_user(runtime_server: tuple[str, int]) -> None:
    _, pid = runtime_server
    status = Path(f"/proc/{pid}/status").read_text()
    (uids,) = [line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")]
    assert set(uids) == {str(UID)}


def test_runtime_image_exports_spans_with_tracing_on(runtime_image: Image, tmp_path: Path) -> None:
    """MODELFLEET_TRACING=true works in a pod (the image holds the otel extra): the spans of
    loading the bundled iris reach an OTLP receiver on the host's loopback."""
    with otlp_receiver() as receiver:
        cmd = runtime_image.command(
            tmp_path,
            *runtime_image.config["Cmd"],
            "--port",
            str(_free_port()),
            "--grpc-port",
            "0",
            MODELFLEET_HOST="127.0.0.1",
            MODELFLEET_TRACING="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="50",
        )
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            load = receiver.wait_for("a load span", lambda s: s.name == "load", READY_DEADLINE_S)
        finally:
            stop_process(server)
    assert (load.resource["service.name"], load.attributes["modelfleet.version"]) == (
        "modelfleet",
        1,
    )


@pytest.mark.parametrize("kind", ["runtime", "operator"])
def test_image_configuration(kind: str, request: pytest.FixtureRequest) -> None:
    image: Image = request.getfixturevalue(f"{kind}_image")
    assert image.config["User"] == f"{UID}:{UID}"
    assert image.config["Entrypoint"] == ["modelfleet"]
    assert image.config["Cmd"] == ["serve" if kind == "runtime" else "operator"]
    assert image.config["Labels"]["org.opencontainers.image.version"] == TAG
    with pytest.raises(OSError, match="Read-only"):
        (image.root / "probe").write_text("")  # the mounted image is read-only
    venv = image.root / "opt" / "modelfleet"
    assert not (venv / "bin" / "pip").exists()
    for absent in ("usr/bin/gcc", "usr/bin/cc", "root/.cache/pip", "opt/pip", "src"):
        assert not (image.root / absent).exists(), absent


def test_operator_image_prints_the_crd(operator_image: Image, tmp_path: Path) -> None:
    out = subprocess.run(
        operator_image.command(tmp_path, "crd"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    crd = yaml.safe_load(out)
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "inferenceservices.serving.modelfleet.dev"
    committed = REPO / "crds" / "inferenceservices.serving.modelfleet.dev.yaml"
    assert crd == yaml.safe_load(committed.read_text())


def test_operator_image_leaves_the_serving_stack_out(operator_image: Image) -> None:
    """The operator's venv holds its own dependencies only: no ONNX Runtime, numpy, web
    server, S3 client or gRPC (the runtime image's weight)."""
    site = operator_image.root / "opt" / "modelfleet" / "lib" / "python3.11" / "site-packages"
    assert (site / "kopf").is_dir() and (site / "modelfleet_operator").is_dir()
    for heavy in ("onnxruntime", "numpy", "fastapi", "uvicorn", "boto3", "grpc"):
        assert not (site / heavy).exists(), heavy


def test_operator_image_runs_the_operator_command(operator_image: Image, tmp_path: Path) -> None:
    """kopf and the operator import as UID 10001 on a read-only root (no cluster to talk to)."""
    result = subprocess.run(
        operator_image.command(tmp_path, "operator", "--help"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--peering" in result.stdout
