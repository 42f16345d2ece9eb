"""What the oci:// storage tests share: settings that trust and log in to the test registry,
and a pushed model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelfleet_runtime.config import Settings
from modelfleet_runtime.storage.oci import push
from tests.helpers import onnx_models
from tests.helpers.registry import Registry

from .helpers import settings


def oci_settings(tmp: Path, registry: Registry, uri: str, **overrides: Any) -> Settings:
    """Test settings for ``uri`` with the registry's credentials and CA."""
    values: dict[str, Any] = {
        "registry_config": registry.docker_config,
        "registry_ca_file": registry.ca,
        "allowed_schemes": ["oci"],
    }
    return settings(tmp, uri, **(values | overrides))


def push_adder(tmp: Path, registry: Registry, uri: str, value: float) -> str:
    """Push ``add_constant(value)`` as a model image; return the pinned reference."""
    model = tmp / f"adder-{value}" / "model.onnx"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(onnx_models.add_constant(value))
    return push(uri, {"model.onnx": model}, oci_settings(tmp, registry, uri))
