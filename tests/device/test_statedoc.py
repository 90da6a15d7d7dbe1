"""The state document codec (DESIGN.md "Device state and crash safety"): layout, AEAD, fail-closed parsing."""

from __future__ import annotations

import pytest

from device_os.core import statedoc
from device_os.core.aead import cpu_has_aes, resolve
from device_os.core.statedoc import BadStateDocumentError

DEK = bytes(range(32))
DEV = "dev_" + "a" * 32
AEADS = ["aes-256-gcm", "chacha20-poly1305"]


@pytest.mark.parametrize("aead", AEADS)
def test_roundtrip_and_layout(aead: str) -> None:
    doc = statedoc.build(42, b'{"x":1}', dek=DEK, device_id=DEV, aead=aead)  # type: ignore[arg-type]
    assert doc[:4] == b"CST1"
    assert doc[4:12] == (42).to_bytes(8, "big")
    assert len(doc) == 12 + 32 + 12 + len(b'{"x":1}') + 16
    assert statedoc.parse_header(doc) == 42
    parsed = statedoc.parse(doc, dek=DEK, device_id=DEV, aead=aead)  # type: ignore[arg-type]
    assert parsed.counter == 42
    assert parsed.plaintext == b'{"x":1}'


def test_pinned_parts_are_deterministic() -> None:
    a = statedoc._build_from_parts(
        1, b"body", dek=DEK, device_id=DEV, aead="aes-256-gcm", salt=b"s" * 32, nonce=b"n" * 12
    )
    b = statedoc._build_from_parts(
        1, b"body", dek=DEK, device_id=DEV, aead="aes-256-gcm", salt=b"s" * 32, nonce=b"n" * 12
    )
    assert a == b
    assert statedoc.build(1, b"body", dek=DEK, device_id=DEV, aead="aes-256-gcm") != a  # fresh salt, nonce


@pytest.mark.parametrize("aead", AEADS)
def test_every_bit_flip_fails(aead: str) -> None:
    doc = statedoc.build(3, b"hello state", dek=DEK, device_id=DEV, aead=aead)  # type: ignore[arg-type]
    for i in range(len(doc)):
        bad = bytearray(doc)
        bad[i] ^= 0x01
        with pytest.raises(BadStateDocumentError):
            statedoc.parse(bytes(bad), dek=DEK, device_id=DEV, aead=aead)  # type: ignore[arg-type]


def test_wrong_key_device_aead_and_truncation_fail() -> None:
    doc = statedoc.build(3, b"hello", dek=DEK, device_id=DEV, aead="aes-256-gcm")
    with pytest.raises(BadStateDocumentError):
        statedoc.parse(doc, dek=b"\x00" * 32, device_id=DEV, aead="aes-256-gcm")
    with pytest.raises(BadStateDocumentError):
        statedoc.parse(doc, dek=DEK, device_id="dev_" + "b" * 32, aead="aes-256-gcm")
    with pytest.raises(BadStateDocumentError):
        statedoc.parse(doc, dek=DEK, device_id=DEV, aead="chacha20-poly1305")
    for cut in (0, 5, 12, 40, len(doc) - 1):
        with pytest.raises(BadStateDocumentError):
            statedoc.parse(doc[:cut], dek=DEK, device_id=DEV, aead="aes-256-gcm")


def test_header_parse() -> None:
    assert statedoc.parse_header(None) is None
    assert statedoc.parse_header(b"CST1\x00") is None
    assert statedoc.parse_header(b"XST1" + bytes(8)) is None
    assert statedoc.parse_header(statedoc.build_header(2**64 - 1)) == 2**64 - 1
    with pytest.raises(ValueError, match="counter"):
        statedoc.build_header(2**64)


def test_aead_choice(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with_aes = tmp_path / "a"
    with_aes.write_text("processor: 0\nflags\t\t: fpu sse2 aes avx\n")
    arm = tmp_path / "b"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n")
    arm_aes = tmp_path / "c"
    arm_aes.write_text("Features\t: fp asimd aes pmull sha1\n")
    assert cpu_has_aes(with_aes)
    assert not cpu_has_aes(arm)
    assert cpu_has_aes(arm_aes)
    assert not cpu_has_aes(tmp_path / "missing")
    assert resolve("auto", with_aes) == "aes-256-gcm"
    assert resolve("auto", arm) == "chacha20-poly1305"
    assert resolve("chacha20-poly1305", with_aes) == "chacha20-poly1305"
    assert resolve("aes-256-gcm", arm) == "aes-256-gcm"
