"""A model pushed with ``storage.oci.push`` is an image a container runtime takes: podman
(containers/image and containers/storage, the libraries CRI-O pulls image volumes with) pulls
it from the real registry over TLS with the Docker config's credentials, checks its digests and
diff_ids, and mounts it; the runtime serves the mounted folder as version 1, as it serves
``/mnt/models`` in a pod with an image volume.

Slow and run by ``scripts/test-images`` with the other podman tests; it skips (fails with
``MODELFLEET_REQUIRE_IMAGES=1``) where podman or root is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from modelfleet_runtime.config import Settings
from modelfleet_runtime.storage.oci import push
from tests.helpers import onnx_models
from tests.helpers.registry import run_registry
from tests.helpers.runtime import serve_process
from tests.images.test_images import _podman, _unavailable

pytestmark = pytest.mark.slow

BODY = {"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}


def test_a_pushed_model_is_an_image_podman_pulls_and_mounts(tmp_path: Path) -> None:
    if shutil.which("podman") is None or os.geteuid() != 0:
        _unavailable("podman, as root, is needed to pull and mount an image")
    model = tmp_path / "model.onnx"
    model.write_bytes(onnx_models.add_constant(5.0))
    with run_registry(tmp_path / "registry") as registry:
        config = Settings(registry_config=registry.docker_config, registry_ca_file=registry.ca)
        pinned = push(registry.uri("models/adder", "v1"), {"model.onnx": model}, config)
        certs = tmp_path / "certs"  # podman's per-registry CA folder
        certs.mkdir()
        shutil.copy(registry.ca, certs / "ca.crt")
        reference = pinned.removeprefix("oci://")
        auth = ["--cert-dir", str(certs), "--authfile", str(registry.docker_config)]
        _podman("pull", "--quiet", *auth, reference)
    try:
        root = Path(_podman("image", "mount", reference))
        try:
            assert sorted(p.name for p in root.iterdir()) == ["model.onnx"]
            assert (root / "model.onnx").stat().st_mode & 0o777 == 0o644
            with serve_process(tmp_path, "--model-uri", str(root), "--name", "adder") as served:
                url = f"{served.url}/v2/models/adder/infer"
                assert httpx.post(url, json=BODY).json()["outputs"][0]["data"] == [5.0] * 4
        finally:
            _podman("image", "unmount", reference)
    finally:
        subprocess.run(["podman", "rmi", "--force", reference], capture_output=True, timeout=60)
