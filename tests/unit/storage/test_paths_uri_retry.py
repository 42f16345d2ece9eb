"""Pure parts of the storage layer: key containment, version names, URI parsing and
redaction, host matching, grouping a listing into versions, and the retry policy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from modelfleet_runtime.storage.base import (
    NotAllowedError,
    NotFoundError,
    ObjectInfo,
    UnavailableError,
    UnsafePathError,
)
from modelfleet_runtime.storage.paths import check_relative, contained, version_number
from modelfleet_runtime.storage.retry import Retrier
from modelfleet_runtime.storage.uri import (
    check_hosts,
    check_scheme,
    parse_uri,
    split_single,
)
from modelfleet_runtime.storage.versions import group_versions


@pytest.mark.parametrize(
    "path", ["", "/abs", "a/../b", "..", "a/./b", "a//b", "a\\b", "C:/x", "a/\0", "a/"]
)
def test_unsafe_relative_paths(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_relative(path, where="s3://b/p")


@pytest.mark.parametrize("path", ["model.onnx", "weights/w.bin", "a.b..c", "...x"])
def test_safe_relative_paths(path: str) -> None:
    assert check_relative(path, where="s3://b/p") == path


def test_contained_refuses_a_planted_symlink(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        contained(tmp_path / "root", "link/x")
    assert contained(tmp_path / "root", "a/b") == tmp_path / "root" / "a" / "b"


@pytest.mark.parametrize(
    ("name", "number"),
    [("1", 1), ("42", 42), ("0", None), ("01", None), ("1.0", None), ("-1", None),
     (" 1", None), ("1 ", None), ("v1", None), ("١", None), ("1_0", None), ("docs", None)],
)  # fmt: skip
def test_version_names(name: str, number: int | None) -> None:
    assert version_number(name, where="x") == number


def test_redacted_uri_drops_query_and_userinfo() -> None:
    parsed = parse_uri("https://models.example.com/a/iris.onnx?X-Amz-Signature=secret")
    assert parsed.redacted == "https://models.example.com/a/iris.onnx"
    assert parse_uri("s3://bucket/a/b").redacted == "s3://bucket/a/b"
    assert parse_uri("/mnt/pvc/m").redacted == "file:///mnt/pvc/m"
    with pytest.raises(Exception, match="credentials"):
        parse_uri("https://user:secret@host/m.onnx")


def test_split_single() -> None:
    assert split_single("a/b/iris.onnx") == ("a/b", "iris.onnx")
    assert split_single("iris.onnx") == ("", "iris.onnx")
    assert split_single("a/b/") == ("a/b", None)


def test_scheme_and_host_checks() -> None:
    check_scheme(parse_uri("http://127.0.0.1:9/m.onnx"), ["http"])
    with pytest.raises(NotAllowedError):
        check_scheme(parse_uri("http://10.0.0.1/m.onnx"), ["http"])
    check_hosts("x", ["s3.eu-west-1.amazonaws.com"], ["*.amazonaws.com"])
    check_hosts("x", ["minio:9000"], ["minio"])
    check_hosts("x", ["anything"], [])
    with pytest.raises(NotAllowedError):
        check_hosts("x", ["minio:9000"], ["minio:9001"])
    with pytest.raises(NotAllowedError):
        check_hosts("x", ["evilamazonaws.com"], ["*.amazonaws.com"])


def test_group_versions() -> None:
    objects = [
        ObjectInfo("1/", 0, ""),  # folder marker
        ObjectInfo("1/model.onnx", 10, "a"),
        ObjectInfo("1/weights/w.bin", 20, "b"),
        ObjectInfo("2/weights.bin", 5, "c"),  # no model.onnx yet
        ObjectInfo("README", 3, "d"),
    ]
    versions = group_versions(objects, where="s3://b/p")
    assert list(versions) == [1]
    assert {f.path for f in versions[1].files} == {"model.onnx", "weights/w.bin"}
    with pytest.raises(UnsafePathError):
        group_versions([*objects, ObjectInfo("1/../../x", 1, "e")], where="s3://b/p")


async def test_retry_gives_up_at_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise UnavailableError("s3://b/k: S3 endpoint unreachable")

    retrier = Retrier(initial=0.01, cap=0.05, deadline=0.3)
    with caplog.at_level(logging.WARNING), pytest.raises(UnavailableError):
        await retrier.call("s3://b/k", down)
    assert 3 <= calls <= 60
    assert len(caplog.records) == calls - 1


async def test_retry_does_not_retry_permanent_errors() -> None:
    calls = 0

    async def missing() -> None:
        nonlocal calls
        calls += 1
        raise NotFoundError("s3://b/k: not found")

    with pytest.raises(NotFoundError):
        await Retrier(initial=0.01, cap=0.05, deadline=5).call("s3://b/k", missing)
    assert calls == 1


async def test_retry_recovers() -> None:
    outcomes: list[Exception | None] = [UnavailableError("x"), UnavailableError("x"), None]

    async def flaky() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "ok"

    assert await Retrier(initial=0.01, cap=0.05, deadline=5).call("x", flaky) == "ok"
    assert outcomes == []
