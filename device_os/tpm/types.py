"""Plain values the TPM adapter hands out: key blobs, provisioned keys, DA status. No TSS import here."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from device_os.tpm.errors import BadBlob
from protocol.b64 import b64url_decode, b64url_encode
from protocol.errors import EncodingError

__all__ = ["DaStatus", "KeyBlob", "ProvisionedKeys"]


def _split_tpm2b(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 2 > len(data):
        raise BadBlob("key blob truncated")
    (size,) = struct.unpack_from(">H", data, offset)
    end = offset + 2 + size
    if size == 0 or end > len(data):
        raise BadBlob("key blob truncated")
    return data[offset:end], end


@dataclass(frozen=True)
class KeyBlob:
    """A TPM-wrapped key: marshalled TPM2B_PUBLIC || TPM2B_PRIVATE (each with its 2-byte size), the form
    tpm2-tools writes with `tpm2_create -u/-r`. The private part is encrypted under the storage root key and
    is useless outside this TPM; it is safe to store on disk."""

    public: bytes
    private: bytes

    def to_bytes(self) -> bytes:
        return self.public + self.private

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyBlob:
        public, offset = _split_tpm2b(data, 0)
        private, offset = _split_tpm2b(data, offset)
        if offset != len(data):
            raise BadBlob("trailing bytes after the key blob")
        return cls(public=public, private=private)

    def to_json(self) -> str:
        return b64url_encode(self.to_bytes())

    @classmethod
    def from_json(cls, value: object) -> KeyBlob:
        if not isinstance(value, str):
            raise BadBlob("key blob must be a base64url string")
        try:
            return cls.from_bytes(b64url_decode(value))
        except EncodingError as exc:
            raise BadBlob("key blob is not base64url") from exc


@dataclass(frozen=True)
class ProvisionedKeys:
    """What provisioning made and the device stores beside its state: the attestation key. (The KEM key is
    PIN-bound and made at setup; a `kem` member written by earlier versions is ignored.)"""

    ak: KeyBlob

    def to_json(self) -> dict[str, object]:
        return {"v": 1, "ak": self.ak.to_json()}

    @classmethod
    def from_json(cls, obj: object) -> ProvisionedKeys:
        if not isinstance(obj, dict) or set(obj) - {"kem"} != {"v", "ak"} or obj["v"] != 1:
            raise BadBlob("provisioned keys must be {v: 1, ak}")
        return cls(ak=KeyBlob.from_json(obj["ak"]))

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> ProvisionedKeys:
        try:
            return cls.from_json(json.loads(data))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadBlob("provisioned keys are not JSON") from exc


@dataclass(frozen=True)
class DaStatus:
    """Dictionary-attack state: TPM_PT_LOCKOUT_COUNTER, _MAX_AUTH_FAIL, _LOCKOUT_INTERVAL, _LOCKOUT_RECOVERY
    and TPMA_PERMANENT inLockout / lockoutAuthSet."""

    failed_tries: int
    max_tries: int
    recovery_time: int
    lockout_recovery: int
    in_lockout: bool
    lockout_auth_set: bool

    @property
    def tries_left(self) -> int:
        return max(0, self.max_tries - self.failed_tries)
