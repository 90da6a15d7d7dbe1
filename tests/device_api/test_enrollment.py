"""Flow 3 over HTTP against the real center (tests/support/center.py): identity, credential activation,
enrollment with a pinned root and with trust on first use; what the center never signs (another root, another
device, a replayed or reordered enrollment) comes from the forger."""

from __future__ import annotations

import base64
import datetime
import os
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from protocol._ecdsa import P256_ORDER
from protocol.attestation import (
    CertifyEvidence,
    check_ek_public,
    check_kem_key,
    check_payment_key,
    make_credential,
    parse_public,
    verify_certify,
    verify_ek_certificate,
)
from protocol.b64 import b64url_decode, b64url_encode
from protocol.keys import device_id_for, public_key_from_jwk, public_key_from_pem
from tests.device_api.conftest import MakeLive
from tests.device_api.live import LiveDevice, auth
from tests.support.center import Account, RealCenter, attest, enroll
from tests.support.forger import Forger
from tests.support.swtpm import SwtpmInstance

pytestmark = [pytest.mark.swtpm, pytest.mark.integration]


def _problem(r, slug: str, status: int) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.json()["type"] == f"urn:coffer:problem:{slug}"


def _enroll(live: LiveDevice, token: str, body: dict[str, object]):  # type: ignore[no-untyped-def]
    return live.client.post("/v1/enrollment", json=body, headers=auth(token))


def test_identity_is_what_the_center_verifies(unlocked: tuple[LiveDevice, str], swtpm: SwtpmInstance) -> None:
    live, _ = unlocked
    ident = live.identity()
    ak = public_key_from_pem(ident["attestation_key"])
    assert device_id_for(ak) == ident["device_id"] == live.device.device_id
    nonce = b64url_decode(ident["certify_nonce"])
    ak_public = b64url_decode(ident["attestation_key_public"])
    for name, check, pem, jwk in (
        ("kem", check_kem_key, ident["kem_key"], ident["kem_jwk"]),
        ("payment", check_payment_key, ident["payment_key"], ident["payment_jwk"]),
    ):
        certified = verify_certify(
            CertifyEvidence.from_json(ident["certify"][name]), nonce=nonce, ak_public=ak_public
        )
        key = check(certified)
        assert key.public_numbers() == public_key_from_pem(pem).public_numbers()
        assert key.public_numbers() == public_key_from_jwk(jwk).public_numbers()
    assert parse_public(ak_public).ec_public_key().public_numbers() == ak.public_numbers()
    pem = ident["ek_certificate"].encode()
    certificate = x509.load_pem_x509_certificate(pem)
    roots = [x509.load_pem_x509_certificate(swtpm.ca_cert.read_bytes())]
    intermediates = [x509.load_pem_x509_certificate(swtpm.intermediate_cert.read_bytes())]
    der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    verify_ek_certificate(der, roots, intermediates, now=datetime.datetime.now(datetime.UTC))
    check_ek_public(b64url_decode(ident["ek_public"]), certificate)


def test_activate_credential(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    ident = live.identity()
    secret = os.urandom(32)
    name = parse_public(b64url_decode(ident["attestation_key_public"])).name
    blob, encrypted = make_credential(b64url_decode(ident["ek_public"]), name, secret)
    body = {"credential_blob": b64url_encode(blob), "encrypted_secret": b64url_encode(encrypted)}
    before = live.snapshot()
    r = live.client.post("/v1/activate", json=body, headers=auth(token))
    assert r.status_code == 200, r.text
    assert b64url_decode(r.json()["secret"]) == secret
    # bound to another object name: the TPM refuses
    other = bytes([name[0], name[1]]) + bytes(len(name) - 2)
    blob, encrypted = make_credential(b64url_decode(ident["ek_public"]), other, secret)
    r = live.client.post(
        "/v1/activate",
        json={"credential_blob": b64url_encode(blob), "encrypted_secret": b64url_encode(encrypted)},
        headers=auth(token),
    )
    _problem(r, "attestation-failed", 422)
    r = live.client.post(
        "/v1/activate", json={"credential_blob": "AAAA", "encrypted_secret": "AAAA"}, headers=auth(token)
    )
    _problem(r, "attestation-failed", 422)
    assert live.snapshot() == before
    # the device still works afterwards (activation borrowed the hot keys' TPM slots)
    r = live.client.get("/v1/statement", params={"nonce": "n" * 16}, headers=auth(token))
    assert r.status_code == 200, r.text


def test_enrollment_pins_on_first_use(
    unlocked: tuple[LiveDevice, str], real_center: RealCenter, center_http: httpx.Client
) -> None:
    live, token = unlocked
    device_id = live.device.device_id
    answer = attest(center_http, live.client, token)
    body = {"enrollment": answer["enrollment"], "root_jwk": answer["root_jwk"]}
    r = _enroll(live, token, body)
    assert r.status_code == 200, r.text
    assert r.json()["root_fingerprint"] == real_center.root_fingerprint
    assert r.json()["keyset_version"] == 1
    assert live.client.get("/v1/wallet", headers=auth(token)).json()["enrolled"] is True
    before = live.snapshot()
    again = _enroll(live, token, body)  # the same enrollment again: no commit
    assert again.status_code == 200
    assert live.snapshot() == before
    other = Forger()  # a center under another root
    _problem(_enroll(live, token, other.enrollment_request(device_id)), "untrusted-keyset", 422)
    assert live.snapshot() == before


def test_enrollment_signed_by_another_root_is_refused(unlocked: tuple[LiveDevice, str]) -> None:
    live, token = unlocked
    device_id = live.device.device_id
    before = live.snapshot()
    forged = Forger(keyset_signer=ec.generate_private_key(ec.SECP256R1()))  # claims root A, signed by B
    _problem(_enroll(live, token, forged.enrollment_request(device_id)), "untrusted-keyset", 422)
    center = Forger()
    _problem(_enroll(live, token, center.enrollment_request("dev_" + "a" * 32)), "wrong-device", 422)
    body = center.enrollment_request(device_id)
    body["root_jwk"] = {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}
    r = _enroll(live, token, body)
    assert r.status_code in (400, 422), r.text
    assert live.snapshot() == before
    assert live.client.get("/v1/wallet", headers=auth(token)).json()["enrolled"] is False


def test_enrollment_with_a_pinned_root(
    make_live: MakeLive, real_center: RealCenter, center_http: httpx.Client
) -> None:
    pinned, other = real_center.root_fingerprint, Forger()
    live = make_live(pinned_root_fingerprint=pinned)
    live.setup()
    token = live.unlock()
    device_id = live.device.device_id
    before = live.snapshot()
    _problem(_enroll(live, token, other.enrollment_request(device_id)), "untrusted-keyset", 422)
    assert live.snapshot() == before
    account = enroll(center_http, live.client, token)  # the pinned (real) center
    assert account.accepted["root_fingerprint"] == pinned


def _high_s(token: str) -> str:
    """The same JWS with its signature's second form (r, n - s): it verifies too."""
    head, payload, signature = token.split(".")
    raw = b64url_decode(signature)
    s = int.from_bytes(raw[32:], "big")
    return f"{head}.{payload}.{b64url_encode(raw[:32] + (P256_ORDER - s).to_bytes(32, 'big'))}"


def _token_hash(live: LiveDevice) -> str:
    record = live.device.wallet().body.enrollment
    assert record is not None
    return record.device_token_hash


def test_enrollment_replay_commits_nothing_and_never_rolls_back(
    enrolled: tuple[LiveDevice, str], account: Account, forger: Forger, center_http: httpx.Client
) -> None:
    """Issue 12, finding 1: the same enrollment in either signature form is answered without a commit (no
    NV_Increment); an older or equally old different one is refused; only a strictly newer one (the real
    center enrolling the device again) commits."""
    live, token = enrolled
    record = live.device.wallet().body.enrollment
    assert record is not None
    assert record.enrollment == account.enrollment
    current = {"enrollment": record.enrollment, "root_jwk": account.root_jwk}  # what the fixture posted
    before = live.snapshot()
    token_hash = _token_hash(live)
    for _ in range(3):  # both signature forms, alternating: not one NV_Increment
        for form in (record.enrollment, _high_s(record.enrollment)):
            r = _enroll(live, token, {**current, "enrollment": form})
            assert r.status_code == 200, r.text
            assert r.json()["counter"] == before.counter
    # the same payload signed again by the center's key (another r): the same enrollment, no commit either
    r = _enroll(live, token, {**current, "enrollment": forger.resign(record.enrollment)})
    assert r.status_code == 200, r.text
    assert live.snapshot() == before
    # a different enrollment of the same age (another token, same iat): refused
    other_token = forger.resign(record.enrollment, device_token_hash="A" * 43)
    _problem(_enroll(live, token, {**current, "enrollment": other_token}), "already-enrolled", 409)
    assert live.snapshot() == before
    # strictly newer: the real center enrolls the device again (a later second: a newer iat) -> one commit
    # (ActivateCredential on the way commits nothing), the new token hash
    time.sleep(1.1)  # not a timing assertion: the center's iat has a one-second resolution
    newer = enroll(center_http, live.client, token).enrollment
    after = live.snapshot()
    assert after.counter == before.counter + 1
    newer_hash = _token_hash(live)
    assert newer_hash != token_hash
    # the older one again, in either form, and the newer one's second form: no commit, no rollback
    for form in (record.enrollment, _high_s(record.enrollment)):
        _problem(_enroll(live, token, {**current, "enrollment": form}), "already-enrolled", 409)
    r = _enroll(live, token, {**current, "enrollment": _high_s(newer)})
    assert r.status_code == 200, r.text
    assert live.snapshot() == after
    assert _token_hash(live) == newer_hash


def test_without_a_pinned_root_enrollment_needs_explicit_trust_on_first_use(
    make_live: MakeLive, real_center: RealCenter, center_http: httpx.Client
) -> None:
    """Issue 12, finding 3: no pinned root and no COFFER_DEVICE_TRUST_FIRST_CENTER: enrollment is refused
    (the PC cannot enroll the board under a root of its own); health and identity say how it is pinned."""
    fingerprint = real_center.root_fingerprint
    strict = make_live(trust_first_center=False)
    strict.setup()
    token = strict.unlock()
    assert strict.client.get("/v1/health").json()["root_pinning"] == "none"
    ident = strict.identity()
    assert (ident["root_pinning"], ident["pinned_root_fingerprint"]) == ("none", None)
    before = strict.snapshot()
    answer = attest(center_http, strict.client, token)  # the real center's enrollment for this device
    r = _enroll(strict, token, {"enrollment": answer["enrollment"], "root_jwk": answer["root_jwk"]})
    _problem(r, "untrusted-keyset", 422)
    assert "COFFER_DEVICE_TRUST_FIRST_CENTER" in r.json()["detail"]
    assert strict.snapshot() == before
    assert strict.client.get("/v1/wallet", headers=auth(token)).json()["enrolled"] is False
    assert strict.client.post("/v1/lock", headers=auth(token)).status_code == 204  # the TPM is shared below

    tofu = make_live(trust_first_center=True)
    assert tofu.client.get("/v1/health").json()["root_pinning"] == "trust-first"
    pinned = make_live(pinned_root_fingerprint=fingerprint)
    assert pinned.client.get("/v1/health").json()["root_pinning"] == "pinned"
    pinned.setup()
    ident = pinned.identity()
    assert (ident["root_pinning"], ident["pinned_root_fingerprint"]) == ("pinned", fingerprint)
