"""`make demo` piece: a TPM round trip on a throw-away swtpm.

Provision (EK certificate from a local CA, attestation and KEM keys, wallet counter, DA lockout), seal and
unseal the DEK under a PIN (and a wrong PIN refused), an HPKE content key opened by the TPM-held KEM key,
a payment signature verified in software, TPM2_Certify and credential activation checked by the center's
pure-software verifiers, the NV counter incremented, and the TPM command count (the purchase hot path is
four commands: ECDH_ZGen, Sign, NV_Increment, and NV_Read checking the counter: docs/device-purchases.md).
`run(console_print)` takes any print-like callable; `python -m scripts.demo_tpm` runs it.
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from device_os.tpm import Tpm, TpmWrongPin
from protocol import attestation, hpke
from protocol.keys import device_id_for
from scripts.swtpm import Swtpm, copy_state, provision_template

PIN = b"314159"


def _verify_raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"TPM demo failed: {what}")


def run(console_print: Callable[[str], object]) -> None:
    say = console_print
    with tempfile.TemporaryDirectory(prefix="coffer-demo-tpm-") as tmp:
        base = Path(tmp)
        template = provision_template(base / "template")
        sw = Swtpm(copy_state(template, base / "tpm")).start()
        say(f"TPM: swtpm on {sw.tcti} (EK certificates from a local CA)")
        try:
            with Tpm.open(sw.tcti) as tpm:
                keys = tpm.provision(None)
                ak = tpm.public_key(keys.ak)
                status = tpm.da_status()
                say(f"provisioned: device_id {device_id_for(ak)}; wallet counter {tpm.counter_read()}")
                say(
                    f"  lockout: {status.max_tries} tries, one back every {status.recovery_time} s, "
                    f"lockout auth set and forgotten: {status.lockout_auth_set}"
                )

                cert = attestation.verify_ek_certificate(
                    tpm.ek_certificate(),
                    [x509.load_pem_x509_certificate(template.ca_cert.read_bytes())],
                    [x509.load_pem_x509_certificate(template.intermediate_cert.read_bytes())],
                    now=datetime.datetime.now(datetime.UTC),
                )
                ek_public = tpm.ek_public()
                attestation.check_ek_public(ek_public, cert)
                say(f"EK certificate issued by {cert.issuer.rfc4514_string()}: chain and EK key verified")

                payment = tpm.create_payment_key(PIN)
                dek = os.urandom(32)
                sealed_dek = tpm.seal(dek, PIN)
                _check(tpm.unseal(sealed_dek, PIN) == dek, "unseal")
                say("DEK sealed under the PIN and unsealed again")
                try:
                    tpm.unseal(sealed_dek, b"000000")
                except TpmWrongPin as exc:
                    say(f"  a wrong PIN is refused by the TPM: {exc.tries_left} tries left")

                nonce = os.urandom(16)
                evidence = tpm.certify(keys.ak, payment, nonce, pin=PIN)
                certified = attestation.check_payment_key(
                    attestation.verify_certify(evidence, nonce=nonce, ak_public=keys.ak.public)
                )
                _check(certified == tpm.public_key(payment), "certify")
                say("TPM2_Certify of the payment key checked (TPM-resident, PIN-bound, DA-protected)")

                challenge = os.urandom(32)
                blob, secret = attestation.make_credential(
                    ek_public, attestation.parse_public(keys.ak.public).name, challenge
                )
                _check(tpm.activate_credential(keys.ak, blob, secret) == challenge, "activation")
                say("MakeCredential (software) -> ActivateCredential (TPM, EK + AK): the challenge came back")

                kem, payer = tpm.load_hot_keys(tpm.create_kem_key(PIN), payment, PIN)
                order_id = "ord_demo"
                content_key = os.urandom(32)
                wrapped = hpke.seal(kem.public_key(), content_key, info=hpke.content_key_info(order_id))
                before = tpm.commands
                opened = hpke.open(kem, wrapped, info=hpke.content_key_info(order_id))
                _check(opened == content_key, "HPKE")
                say(
                    f"HPKE content key opened by the TPM KEM key ({tpm.commands - before} command: ECDH_ZGen)"
                )

                message = b'{"order_id":"ord_demo","counter":1}'
                signature = payer.sign(message)
                _verify_raw(payer.public_key(), signature, message)
                say(f"payment signature (raw r||s, {len(signature)} bytes) verified in software")

                before = tpm.commands
                kem.exchange(ec.ECDH(), kem.public_key())
                payer.sign(b"payment")
                tpm.counter_increment()
                counter = tpm.counter_read()  # the commit reads the counter back (docs/device-purchases.md)
                hot = tpm.recent_commands()[-4:]
                say(f"purchase hot path: {tpm.commands - before} TPM commands {hot}; counter now {counter}")
                say(f"TPM commands in this demo: {tpm.commands} (+{tpm.retries} resent on TPM_RC_RETRY)")
        finally:
            sw.kill()


def main() -> int:
    run(print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
