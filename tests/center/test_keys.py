"""Keys (DESIGN.md "Keys"): generated once, 0600 files in a 0700 directory, root-signed key set."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from center.errors import KeyStoreError
from center.keys import DATA, KEYSET, PAYMENT, ROOT, SIGNING, load_or_create
from protocol import jws
from protocol.messages import Keyset

ISSUER = "http://127.0.0.1:8440"


def test_first_start_creates_private_files(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    keys = load_or_create(keys_dir, ISSUER)
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for name in (ROOT, SIGNING, PAYMENT, DATA, KEYSET):
        assert stat.S_IMODE((keys_dir / name).stat().st_mode) == 0o600, name
    assert len(keys.data_key) == 32
    assert "PRIVATE" not in repr(keys)
    assert keys.data_key.hex() not in repr(keys)
    assert not [p for p in keys_dir.iterdir() if p.name.endswith(".tmp")]


def test_keys_are_loaded_afterwards(tmp_path: Path) -> None:
    first = load_or_create(tmp_path / "keys", ISSUER)
    again = load_or_create(tmp_path / "keys", ISSUER)
    assert again.root_fingerprint == first.root_fingerprint
    assert again.keyset_jws == first.keyset_jws
    assert again.keyset_version == 1
    assert again.data_key == first.data_key


def test_root_fingerprint_is_sha256_of_spki(tmp_path: Path) -> None:
    keys = load_or_create(tmp_path / "keys", ISSUER)
    spki = keys.root.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert keys.root_fingerprint == hashlib.sha256(spki).hexdigest()


def test_keyset_is_signed_by_root(tmp_path: Path) -> None:
    keys = load_or_create(tmp_path / "keys", ISSUER)
    payload = jws.verify(keys.keyset_jws, Keyset, keys=keys.root.public_key(), now=2**31)
    assert payload.iss == ISSUER
    assert payload.version == 1
    assert payload.signing_jwk.public_key().public_numbers() == keys.signing.public_key().public_numbers()
    assert payload.payment_jwk.public_key().public_numbers() == keys.payment.public_key().public_numbers()


def test_new_issuer_or_key_means_a_new_keyset_version(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    load_or_create(keys_dir, ISSUER)
    assert load_or_create(keys_dir, "https://center.example").keyset_version == 2
    (keys_dir / SIGNING).unlink()  # rotation: a new signing key
    rotated = load_or_create(keys_dir, "https://center.example")
    assert rotated.keyset_version == 3
    assert json.loads((keys_dir / KEYSET).read_text())["version"] == 3


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_key_is_refused(tmp_path: Path, mode: int) -> None:
    keys_dir = tmp_path / "keys"
    load_or_create(keys_dir, ISSUER)
    (keys_dir / SIGNING).chmod(mode)
    with pytest.raises(KeyStoreError, match="group or others"):
        load_or_create(keys_dir, ISSUER)


def test_open_key_directory_is_refused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    load_or_create(keys_dir, ISSUER)
    keys_dir.chmod(0o755)
    with pytest.raises(KeyStoreError, match="directory"):
        load_or_create(keys_dir, ISSUER)


def test_missing_root_is_not_silently_replaced(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    load_or_create(keys_dir, ISSUER)
    (keys_dir / ROOT).unlink()
    with pytest.raises(KeyStoreError, match="root key"):
        load_or_create(keys_dir, ISSUER)


def test_tampered_keyset_is_refused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    other = load_or_create(tmp_path / "other", ISSUER)
    load_or_create(keys_dir, ISSUER)
    (keys_dir / KEYSET).write_text(json.dumps({"version": 1, "keyset": other.keyset_jws}))
    with pytest.raises(KeyStoreError, match="signed by the root"):
        load_or_create(keys_dir, ISSUER)
