"""``modelfleet_runtime.schemes``: the one table of URI schemes that the runtime and the operator
both read, held in agreement with the runtime's stores and settings and the operator's checks;
and the light imports the operator's image depends on (it installs the package without the
runtime's storage and inference dependencies, Dockerfile.operator)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from modelfleet_operator.parse import SpecError, parse
from modelfleet_runtime import schemes, storage
from modelfleet_runtime.config import Settings
from modelfleet_runtime.schemes import SCHEMES
from tests.unit.operator.helpers import isvc

# Main dependencies that the operator's extra does not install (pyproject.toml); the client
# is a distribution of its own, also absent from the operator's image.
NOT_IN_THE_OPERATOR_IMAGE = (
    "boto3",
    "botocore",
    "urllib3",
    "onnxruntime",
    "numpy",
    "fastapi",
    "uvicorn",
    "grpc",
    "orjson",
    "tenacity",
    "tqdm",
    "google",
    "modelfleet_client",
)
_BLOCKER = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # absent: import raises, importlib.util.find_spec answers None
"""


def _new_modules(code: str) -> list[str]:
    """Top-level modules that ``code`` imports, in a fresh interpreter."""
    script = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps(sorted({m.partition('.')[0] for m in set(sys.modules) - before})))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found: list[str] = json.loads(done.stdout)
    return found


def test_the_table_imports_only_the_standard_library() -> None:
    new = _new_modules("import modelfleet_runtime.schemes")
    foreign = [m for m in new if m not in sys.stdlib_module_names and m != "modelfleet_runtime"]
    assert foreign == []


def test_the_operator_imports_nothing_its_image_lacks() -> None:
    """The operator's modules (the live half included) and the command that starts it import
    with every runtime-only dependency blocked."""
    blocker = _BLOCKER.format(blocked=NOT_IN_THE_OPERATOR_IMAGE)
    imports = (
        "import modelfleet_operator.main, modelfleet_operator.cli, modelfleet_runtime.cli\n"
        "from modelfleet_operator.render import render\n"
    )
    _new_modules(blocker + imports)  # fails on an ImportError


def test_every_fetched_scheme_has_a_store_and_no_other() -> None:
    assert set(storage.STORES) == {s.name for s in SCHEMES.values() if s.fetched}
    assert set(storage.WRITERS) <= set(storage.STORES)
    # Each scheme's module (imported on first use) opens its store; a writer's writes too.
    for scheme, module_name in storage.STORES.items():
        module = importlib.import_module(f"modelfleet_runtime.storage.{module_name}")
        assert callable(module.open_store), scheme
        assert callable(getattr(module, "open_writable", None)) == (scheme in storage.WRITERS)


def test_the_runtime_allows_the_default_schemes() -> None:
    allowed = Settings().allowed_schemes
    assert allowed == [s.name for s in SCHEMES.values() if s.default_allowed]
    assert allowed == ["s3", "gs", "https", "oci", "file"]


@pytest.mark.parametrize("scheme", list(SCHEMES.values()), ids=lambda s: s.name)
def test_the_operator_takes_exactly_the_spec_schemes(scheme: schemes.Scheme) -> None:
    uri = f"{scheme.name}://models.example.com/iris"
    body = isvc({"predictor": {"model": {"modelFormat": {"name": "onnx"}, "storageUri": uri}}})
    if scheme.in_spec:
        assert parse(body).spec.model.storage_uri == uri
    else:
        with pytest.raises(SpecError, match=f"scheme '{scheme.name}' of .* is not supported"):
            parse(body)


def test_a_row_per_trait_the_operator_renders() -> None:
    """One scheme per special case today; a new row states its own."""
    by = {
        trait: sorted(s.name for s in SCHEMES.values() if getattr(s, field) == trait)
        for field, trait in (
            ("netloc", "bucket"),
            ("netloc", "claim"),
            ("credentials", "aws-env"),
            ("credentials", "key-file"),
            ("credentials", "pull-secret"),
            ("mount", "claim"),
            ("mount", "image"),
        )
    }
    assert by["bucket"] == ["gs", "s3"] and by["claim"] == ["pvc"]
    assert (by["aws-env"], by["key-file"], by["pull-secret"]) == (["s3"], ["gs"], ["oci"])
    assert by["image"] == ["oci"]
    assert [s.name for s in SCHEMES.values() if s.loopback_only] == ["http"]


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("s3://models/iris", "iris"),
        ("s3://models/iris/", "iris"),
        ("gs://b/a/resnet.onnx", "resnet"),
        ("https://h/m/bert.tar.gz", "bert"),
        ("https://h/m/bert.TGZ", "bert"),
        ("/srv/models/yolo.zip", "yolo"),
        ("oci://h:5000/models/iris:v1", "iris"),
        ("OCI://h/models/iris@sha256:" + "ab" * 32, "iris"),
        ("s3://bucket/", "bucket"),
        ("/", "model"),
    ],
)
def test_the_name_a_uri_gives_a_model(uri: str, name: str) -> None:
    assert schemes.model_name(uri) == name
    assert Settings(model_uri=uri).model_name == name
    assert Settings(model_uri=uri, name="given").model_name == "given"


def test_unknown_and_unparsable_uris_have_every_trait_off() -> None:
    for uri in ("ftp://h/x", "models/iris", "https://[::1/x"):
        assert schemes.scheme_of(uri) is schemes.UNKNOWN
    assert schemes.scheme_of("S3://b/k") is SCHEMES["s3"]
