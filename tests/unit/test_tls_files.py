"""``TlsFiles``: which changes on disk are taken, and that a pair is taken only whole (the
servers that use it are tested in tests/integration/runtime/test_tls*.py)."""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelfleet_runtime.tls import Material, TlsError, TlsFiles, not_after
from tests.helpers.tls import Ca, publish, self_signed


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


# --- notAfter, for modelfleet_tls_certificate_expiry_timestamp_seconds ----------------------


@pytest.mark.parametrize(
    "when",
    [
        datetime.datetime(1999, 6, 1, 12, 0, 0),  # UTCTime, 19YY
        datetime.datetime(2049, 12, 31, 23, 59, 59),  # UTCTime, 20YY
        datetime.datetime(2050, 1, 1, 0, 0, 0),  # GeneralizedTime from 2050 on (RFC 5280)
        datetime.datetime(9999, 12, 31, 23, 59, 59),  # "no well-defined expiration"
    ],
)
def test_not_after_reads_both_time_encodings(when: datetime.datetime) -> None:
    expected = when.replace(tzinfo=datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key, "t", datetime.datetime(1990, 1, 1, tzinfo=datetime.UTC), expected)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert not_after(der) == expected.timestamp()
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert Material(pem, b"", None).not_after() == expected.timestamp()
    with pytest.raises((ValueError, IndexError)):
        not_after(der[:60])  # cut inside the issuer


def test_not_after_of_a_file_that_is_no_certificate_is_none(ca: Ca) -> None:
    assert Material(b"not a certificate", b"", None).not_after() is None
    issued = ca.issue("server", days=30)
    found = Material(issued.cert.read_bytes(), b"", None).not_after()
    cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    assert found == cert.not_valid_after_utc.timestamp()
