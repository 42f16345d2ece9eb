"""``TlsFiles``: which changes on disk are taken, and that a pair is taken only whole (the
servers that use it are tested in tests/integration/runtime/test_tls*.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from modelfleet_runtime.tls import TlsError, TlsFiles
from tests.helpers.tls import Ca, publish


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return Ca(tmp_path / "ca", "unit CA")


def test_a_half_written_pair_keeps_the_previous_one_until_it_is_whole(
    tmp_path: Path, ca: Ca, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = ca.issue("first"), ca.issue("second")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    files = TlsFiles(cert, key)
    old = files.context
    assert not files.refresh()  # nothing changed

    cert.write_bytes(second.cert.read_bytes())
    with caplog.at_level(logging.WARNING):
        assert not files.refresh()
        assert not files.refresh()  # tried again, said once
    assert files.context is old
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "does not match" in warnings[0]

    key.write_bytes(second.key.read_bytes())
    assert files.refresh()
    assert files.context is not old and files.current.material.cert == second.cert.read_bytes()


def test_missing_or_broken_files_keep_the_previous_pair(tmp_path: Path, ca: Ca) -> None:
    pair = ca.issue("server")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pair.cert.read_bytes())
    key.write_bytes(pair.key.read_bytes())
    files = TlsFiles(cert, key)
    loaded = files.current
    key.unlink()
    assert not files.refresh()
    key.write_bytes(b"not a key")
    assert not files.refresh()
    assert files.current is loaded


def test_a_swap_to_the_same_bytes_is_no_rotation(tmp_path: Path, ca: Ca) -> None:
    pair = ca.issue("server")
    files_in = {"tls.crt": pair.cert.read_bytes(), "tls.key": pair.key.read_bytes()}
    publish(tmp_path / "secret", files_in)
    files = TlsFiles(tmp_path / "secret" / "tls.crt", tmp_path / "secret" / "tls.key")
    publish(tmp_path / "secret", files_in)  # a new ..data folder, the same content
    assert not files.refresh()
    os.utime(tmp_path / "secret" / "tls.crt", ns=(1, 1))
    assert not files.refresh()


def test_unusable_files_are_refused_at_start_with_the_reason(tmp_path: Path, ca: Ca) -> None:
    one, other = ca.issue("one"), ca.issue("other")
    with pytest.raises(TlsError, match="does not match"):
        TlsFiles(one.cert, other.key)
    with pytest.raises(TlsError, match="cannot read"):
        TlsFiles(one.cert, tmp_path / "absent.key")
    with pytest.raises(TlsError, match="client CA file"):
        TlsFiles(one.cert, one.key, one.key)
