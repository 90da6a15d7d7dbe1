"""Fakes for unit tests of the logic ABOVE the TPM interface only (STYLE.md 7): a counter and software keys.

Everything that touches the TPM is tested against a real swtpm (test_device_*.py, test_campaign.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from device_os.core import statedoc
from device_os.core.aead import AeadName
from device_os.core.body import StateBody
from device_os.core.content import ContentStore
from device_os.core.kernel import Session
from device_os.core.store import StateStore
from device_os.core.wallet import Wallet
from protocol.jws import SoftwareSigner
from protocol.keys import device_id_for


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class FakeCounter:
    value: int = 7
    fail_next: bool = False
    increments: int = 0

    def read(self) -> int:
        return self.value

    def increment(self) -> int:
        if self.fail_next:
            self.fail_next = False
            raise OSError("counter unreachable")
        self.value += 1
        self.increments += 1
        return self.value


@dataclass
class SoftDevice:
    """A wallet over a fake counter and software keys, in `directory`."""

    directory: Path
    aead: AeadName = "aes-256-gcm"
    counter: FakeCounter = field(default_factory=FakeCounter)
    kem: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    payer_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    dek: bytes = b"\x11" * 32

    def __post_init__(self) -> None:
        self.device_id = device_id_for(ec.generate_private_key(ec.SECP256R1()).public_key())
        self.store = StateStore(self.directory, self.counter)
        self.content = ContentStore(self.directory / "content")
        self.store.recover()
        body = StateBody(device_id=self.device_id)
        self.store.commit(
            lambda c: statedoc.build(
                c, body.encode(), dek=self.dek, device_id=self.device_id, aead=self.aead
            ),
            first=True,
        )
        self.session = Session(
            device_id=self.device_id,
            aead=self.aead,
            dek=self.dek,
            payer=SoftwareSigner(self.payer_key),
            kem=self.kem,
            store=self.store,
            content=self.content,
        )
        self.wallet = Wallet(self.session, body, trust_first_center=True)

    def reload(self) -> Wallet:
        """A wallet rebuilt from disk (as after a restart)."""
        self.store.recover()
        doc = statedoc.parse(self.store.read(), dek=self.dek, device_id=self.device_id, aead=self.aead)
        self.wallet = Wallet(self.session, StateBody.decode(doc.plaintext), trust_first_center=True)
        return self.wallet

    def snapshot(self) -> tuple[int, bytes, list[str]]:
        """(counter, state bytes, content listing): equal before and after = "no state change"."""
        return self.counter.value, self.store.state_path.read_bytes(), self.content.listing()


def chunks(data: bytes, size: int = 7000) -> list[bytes]:
    """`data` as a terminal would upload it: in chunks that do not fall on segment boundaries."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]
