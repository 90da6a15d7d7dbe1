"""The KEM key carries the PIN (issue 12 #7): without it the TPM computes no ECDH, so a stolen board is no
ECDH oracle for the wrapped content keys the PC relayed. Wrong PINs on it count against the lockout."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from device_os.tpm import TpmWrongPin
from protocol.attestation import (
    ATTR_NO_DA,
    ATTR_USER_WITH_AUTH,
    TpmPublic,
    check_kem_key,
    check_payment_key,
    parse_public,
)
from protocol.errors import AttestationError
from tests.tpm.conftest import PIN, Provisioned

pytestmark = pytest.mark.swtpm
NEW_PIN = b"135791"


def test_the_kem_key_is_pin_bound_and_da_protected(provisioned: Provisioned) -> None:
    tpm = provisioned.tpm
    kem = tpm.create_kem_key(PIN)
    public = parse_public(kem.public)
    assert public.attributes & ATTR_USER_WITH_AUTH
    assert not public.attributes & ATTR_NO_DA
    check_kem_key(public)  # still what the center accepts as a KEM key


@pytest.mark.parametrize("check", [check_kem_key, check_payment_key])
@pytest.mark.parametrize("flaw", ["no-pin", "no-da", "auth-policy"])
def test_the_center_refuses_a_key_usable_without_the_pin(
    provisioned: Provisioned, check: Callable[[TpmPublic], object], flaw: str
) -> None:
    """A reflashed board could certify a KEM key without the PIN (a free ECDH oracle): the center's check
    refuses it, as it refuses such a payment key."""
    tpm = provisioned.tpm
    blob = tpm.create_kem_key(PIN) if check is check_kem_key else tpm.create_payment_key(PIN)
    public = parse_public(blob.public)
    check(public)
    flawed = {
        "no-pin": dataclasses.replace(public, attributes=public.attributes & ~ATTR_USER_WITH_AUTH),
        "no-da": dataclasses.replace(public, attributes=public.attributes | ATTR_NO_DA),
        "auth-policy": dataclasses.replace(public, auth_policy=b"\x01" * 32),
    }[flaw]
    with pytest.raises(AttestationError, match=r"PIN|dictionary-attack|authPolicy"):
        check(flawed)


def test_ecdh_needs_the_pin_and_a_pin_change_reauthorizes(provisioned: Provisioned) -> None:
    tpm = provisioned.tpm
    kem_blob, pay = tpm.create_kem_key(PIN), tpm.create_payment_key(PIN)
    peer = ec.generate_private_key(ec.SECP256R1())
    expected = peer.exchange(ec.ECDH(), tpm.public_key(kem_blob))
    kem, _ = tpm.load_hot_keys(kem_blob, pay, b"999999")
    before = tpm.da_status().failed_tries
    with pytest.raises(TpmWrongPin):
        kem.exchange(ec.ECDH(), peer.public_key())
    assert tpm.da_status().failed_tries == before + 1  # a guess costs a try, as on the payment key
    kem, _ = tpm.load_hot_keys(kem_blob, pay, PIN)
    assert kem.exchange(ec.ECDH(), peer.public_key()) == expected
    # ObjectChangeAuth: the same key under the new PIN; the old PIN no longer opens the new blob.
    new_kem, new_pay = tpm.change_auth(kem_blob, PIN, NEW_PIN), tpm.change_auth(pay, PIN, NEW_PIN)
    assert new_kem.public == kem_blob.public
    kem, _ = tpm.load_hot_keys(new_kem, new_pay, NEW_PIN)
    assert kem.exchange(ec.ECDH(), peer.public_key()) == expected
    kem, _ = tpm.load_hot_keys(new_kem, new_pay, PIN)
    with pytest.raises(TpmWrongPin):
        kem.exchange(ec.ECDH(), peer.public_key())


def test_without_any_pin_the_tpm_refuses_ecdh(provisioned: Provisioned) -> None:
    """Cross-check below the adapter, as code on a stolen board would try: load the blob with tpm2-pytss and
    ask for ECDH_ZGen with an empty authValue."""
    from tpm2_pytss import ESAPI, TSS2_Exception
    from tpm2_pytss.types import TPM2B_ECC_POINT, TPM2B_PRIVATE, TPM2B_PUBLIC, TPMS_ECC_POINT

    kem_blob = provisioned.tpm.create_kem_key(PIN)
    provisioned.tpm.close()
    with ESAPI(provisioned.swtpm.tcti) as esys:
        srk = esys.tr_from_tpmpublic(0x81000001)
        public, _ = TPM2B_PUBLIC.unmarshal(kem_blob.public)
        private, _ = TPM2B_PRIVATE.unmarshal(kem_blob.private)
        handle = esys.load(srk, private, public)
        point = TPM2B_ECC_POINT(
            TPMS_ECC_POINT(x=public.publicArea.unique.ecc.x, y=public.publicArea.unique.ecc.y)
        )
        for auth in (b"", b"wrong"):
            esys.tr_set_auth(handle, auth)
            with pytest.raises(TSS2_Exception) as refused:
                esys.ecdh_zgen(handle, point)
            assert int(refused.value.rc) & 0xFFF in (0x98E, 0x921)  # TPM_RC_AUTH_FAIL (or already lockout)
        esys.flush_context(handle)
    assert provisioned.reopen().da_status().failed_tries == 2
