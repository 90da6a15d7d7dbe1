"""Key identities (DESIGN.md "Keys"): RFC 7638 thumbprints against two JOSE libraries, device_id and the root
fingerprint computed independently, strict JWK and PEM parsing."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey
from jwcrypto import jwk as jwcrypto_jwk

from protocol import keys
from protocol.b64 import b64url_encode
from protocol.errors import EncodingError

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P = 2**256 - 2**224 + 2**192 + 2**96 - 1
# SEC 1 generator of P-256 (the public key of private scalar 1).
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
# RFC 5480 SubjectPublicKeyInfo prefix for id-ecPublicKey / prime256v1 with a 65-byte uncompressed point.
P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


def generator_key() -> ec.EllipticCurvePublicKey:
    return ec.derive_private_key(1, ec.SECP256R1()).public_key()


# --- RFC 7638 thumbprint --------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(scalar=st.integers(min_value=1, max_value=N - 1))
def test_thumbprint_matches_jwcrypto_and_joserfc(scalar: int) -> None:
    key = ec.derive_private_key(scalar, ec.SECP256R1()).public_key()
    ours = keys.jwk_thumbprint(key)
    assert ours == jwcrypto_jwk.JWK.from_pyca(key).thumbprint()
    assert ours == ECKey.import_key(key).thumbprint()
    assert len(ours) == 43


def test_thumbprint_of_coordinates_with_leading_zeros() -> None:
    """x or y below 2^248 must still be 32 bytes in the JWK (RFC 7518 §6.2.1.2), or the thumbprint changes."""
    found = 0
    for scalar in range(1, 3000):
        key = ec.derive_private_key(scalar, ec.SECP256R1()).public_key()
        numbers = key.public_numbers()
        if numbers.x < 2**248 or numbers.y < 2**248:
            found += 1
            jwk = keys.jwk_from_public_key(key)
            assert len(jwk["x"]) == len(jwk["y"]) == 43
            assert keys.jwk_thumbprint(key) == jwcrypto_jwk.JWK.from_pyca(key).thumbprint()
            assert keys.public_key_from_jwk(jwk).public_numbers() == numbers
    assert found > 0


def test_thumbprint_by_hand_for_the_generator() -> None:
    """RFC 7638 §3.3's construction, done here with hashlib on a literal JSON string."""
    x = base64.urlsafe_b64encode(GX.to_bytes(32, "big")).rstrip(b"=").decode()
    y = base64.urlsafe_b64encode(GY.to_bytes(32, "big")).rstrip(b"=").decode()
    canonical = '{"crv":"P-256","kty":"EC","x":"' + x + '","y":"' + y + '"}'
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert keys.jwk_thumbprint(generator_key()) == expected


# --- device_id ------------------------------------------------------------------------------------


def test_device_id_known_answer() -> None:
    """Computed independently: SPKI DER assembled from the RFC 5480 prefix, hashlib, base64.b32encode."""
    der = P256_SPKI_PREFIX + b"\x04" + GX.to_bytes(32, "big") + GY.to_bytes(32, "big")
    assert keys.spki_der(generator_key()) == der
    expected = "dev_" + base64.b32encode(hashlib.sha256(der).digest()[:20]).decode().lower()
    assert expected == "dev_ltjff6ym5cjsinx27dgncbajqg4j5zfn"
    assert keys.device_id_for(generator_key()) == expected
    assert keys.device_id_from_spki(der) == expected


@settings(max_examples=25, deadline=None)
@given(scalar=st.integers(min_value=1, max_value=N - 1))
def test_device_id_format(scalar: int) -> None:
    device_id = keys.device_id_for(ec.derive_private_key(scalar, ec.SECP256R1()).public_key())
    assert len(device_id) == 4 + 32
    assert device_id.startswith("dev_")
    assert set(device_id[4:]) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert keys.is_device_id(device_id)


@pytest.mark.parametrize(
    "value",
    [
        "dev_" + "a" * 31,
        "dev_" + "a" * 33,
        "dev_" + "A" * 32,
        "dev_" + "1" * 32,
        "dev_" + "a" * 31 + "=",
        "DEV_" + "a" * 32,
        "dev-" + "a" * 32,
        "dev_" + "a" * 32 + "\n",
        "",
    ],
)
def test_is_device_id_rejects(value: str) -> None:
    assert not keys.is_device_id(value)


# --- root fingerprint -----------------------------------------------------------------------------


def test_root_fingerprint_matches_openssl(tmp_path: Path) -> None:
    """openssl makes the key, exports the SPKI DER and hashes it; we read the PEM and must agree."""
    private_pem = tmp_path / "root.pem"
    public_pem = tmp_path / "root.pub.pem"
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            private_pem,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["openssl", "pkey", "-in", private_pem, "-pubout", "-out", public_pem],
        check=True,
        capture_output=True,
    )
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", public_pem, "-outform", "DER"], check=True, capture_output=True
    ).stdout
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-r"], input=der, check=True, capture_output=True
    ).stdout.split()[0]
    key = keys.public_key_from_pem(public_pem.read_bytes())
    assert keys.root_fingerprint(key) == digest.decode()
    assert keys.root_fingerprint(key) == hashlib.sha256(der).hexdigest()


def test_root_fingerprint_known_answer() -> None:
    der = P256_SPKI_PREFIX + b"\x04" + GX.to_bytes(32, "big") + GY.to_bytes(32, "big")
    assert keys.root_fingerprint(generator_key()) == hashlib.sha256(der).hexdigest()
    assert keys.root_fingerprint(generator_key()) == (
        "5cd252fb0ce8932436faf8ccd1040981b89ee4ad6b9fe9e2a2b7e71aacb27cd3"
    )


# --- JWK and PEM parsing --------------------------------------------------------------------------


def test_jwk_round_trip_exact_members() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwk = keys.jwk_from_public_key(key)
    assert set(jwk) == {"kty", "crv", "x", "y"}
    assert keys.public_key_from_jwk(jwk).public_numbers() == key.public_numbers()
    theirs = jwcrypto_jwk.JWK.from_pyca(key).export_public(as_dict=True)
    assert theirs.pop("kid") == keys.jwk_thumbprint(key)
    assert jwk == theirs


def _jwk(**changes: object) -> dict[str, object]:
    jwk: dict[str, object] = dict(keys.jwk_from_public_key(generator_key()))
    jwk.update(changes)
    return {k: v for k, v in jwk.items() if v is not ...}


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param(_jwk(kty="RSA"), id="kty"),
        pytest.param(_jwk(crv="P-384"), id="crv"),
        pytest.param(_jwk(crv=...), id="no-crv"),
        pytest.param(_jwk(x=...), id="no-x"),
        pytest.param(_jwk(y=1), id="y-not-string"),
        pytest.param(_jwk(d=b64url_encode(b"\x01" * 32)), id="private-d"),
        pytest.param(_jwk(x=b64url_encode(GX.to_bytes(33, "big"))), id="x-33-bytes"),
        pytest.param(_jwk(x=b64url_encode(GX.to_bytes(32, "big"))[:-1]), id="x-short"),
        pytest.param(_jwk(y=b64url_encode(((GY + 1) % P).to_bytes(32, "big"))), id="off-curve"),
        pytest.param(_jwk(x=b64url_encode(b"\x00" * 32), y=b64url_encode(b"\x00" * 32)), id="zero-point"),
        pytest.param(_jwk(x=base64.urlsafe_b64encode(GX.to_bytes(32, "big")).decode()), id="padded"),
        pytest.param(["EC"], id="not-object"),
    ],
)
def test_public_key_from_jwk_rejects(jwk: object) -> None:
    with pytest.raises(EncodingError):
        keys.public_key_from_jwk(jwk)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()).public_key(), id="p384"),
        pytest.param(lambda: rsa.generate_private_key(65537, 2048).public_key(), id="rsa"),
        pytest.param(lambda: ed25519.Ed25519PrivateKey.generate().public_key(), id="ed25519"),
    ],
)
def test_pem_of_another_key_type_is_rejected(make: object) -> None:
    public = make()  # type: ignore[operator]
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(EncodingError):
        keys.public_key_from_pem(pem)


@pytest.mark.parametrize(
    "pem", [b"", b"garbage", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_unreadable_pem_is_rejected(pem: bytes) -> None:
    with pytest.raises(EncodingError):
        keys.public_key_from_pem(pem)


def test_pem_round_trip() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = keys.public_key_to_pem(key)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert keys.public_key_from_pem(pem).public_numbers() == key.public_numbers()
    with pytest.raises(EncodingError):
        keys.jwk_from_public_key(ec.generate_private_key(ec.SECP384R1()).public_key())
