"""The center's keys (DESIGN.md "Keys"): root, signing, payment (ECDSA/ECDH P-256) and the 256-bit data key.

Generated on first start into `DATA_DIR/keys/` (directory 0700, files 0600, each written atomically: temp
file,
fsync, rename, fsync of the directory) and loaded afterwards. A key file readable by group or others is
refused.
The root-signed key set (`coffer-keyset` JWS) is kept in `keyset.json` with its version; when the signing key,
payment key or issuer no longer match it, a new version is signed (rotation = a new version).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from center.errors import KeyStoreError
from protocol import jws
from protocol.errors import JwsError
from protocol.keys import root_fingerprint
from protocol.messages import Jwk, Keyset

ROOT, SIGNING, PAYMENT = "root.pem", "signing.pem", "payment.pem"
DATA = "data.key"
KEYSET = "keyset.json"
DATA_KEY_BYTES = 32


@dataclass(frozen=True)
class CenterKeys:
    """The loaded keys. `data_key` never leaves the process; `repr` hides the private parts."""

    root: ec.EllipticCurvePrivateKey
    signing: ec.EllipticCurvePrivateKey
    payment: ec.EllipticCurvePrivateKey
    data_key: bytes
    keyset_jws: str
    keyset_version: int

    def __repr__(self) -> str:
        return f"CenterKeys(root_fingerprint={self.root_fingerprint!r}, keyset_version={self.keyset_version})"

    @property
    def root_fingerprint(self) -> str:
        return root_fingerprint(self.root.public_key())

    @property
    def root_jwk(self) -> Jwk:
        return Jwk.from_public_key(self.root.public_key())


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically create `path` with mode 0600: temp file in the same directory, fsync, rename, fsync dir."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_private_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise KeyStoreError(f"cannot open key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise KeyStoreError(f"key file {path} is not a regular file")
        if mode & 0o077:
            raise KeyStoreError(
                f"key file {path} is accessible by group or others (mode {mode & 0o777:o}); chmod 600"
            )
        return fh.read()


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_ec(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(_read_private_file(path), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyStoreError(f"key file {path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyStoreError(f"key file {path} is not a P-256 key")
    return key


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialize first-start key generation between processes (several workers starting at once)."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _prepare_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = directory.stat().st_mode
    if mode & 0o077:
        raise KeyStoreError(f"key directory {directory} is accessible by group or others; chmod 700")


def _sign_keyset(
    root: ec.EllipticCurvePrivateKey,
    signing: ec.EllipticCurvePrivateKey,
    payment: ec.EllipticCurvePrivateKey,
    issuer: str,
    version: int,
) -> str:
    payload = Keyset(
        iss=issuer,
        iat=int(time.time()),
        version=version,
        signing_jwk=Jwk.from_public_key(signing.public_key()),
        payment_jwk=Jwk.from_public_key(payment.public_key()),
    )
    return jws.sign(payload, jws.SoftwareSigner(root))


def _current_keyset(path: Path, root: ec.EllipticCurvePrivateKey) -> tuple[str, Keyset] | None:
    if not path.exists():
        return None
    try:
        stored = json.loads(_read_private_file(path))
        token = stored["keyset"]
        payload = jws.verify(token, Keyset, keys=root.public_key(), now=int(time.time()))
    except (ValueError, KeyError, TypeError, JwsError) as exc:
        raise KeyStoreError(f"{path} does not hold a key set signed by the root key") from exc
    return token, payload


def load_or_create(keys_dir: Path, issuer: str | None, *, create: bool = True) -> CenterKeys:
    """Load the keys from `keys_dir`, generating any that are missing on first start (when `create`).

    `issuer=None` with `create=False` (admin commands that only need the data key) accepts the stored key
    set whatever issuer it names."""
    if issuer is None and create:
        raise ValueError("creating keys needs the issuer")
    _prepare_dir(keys_dir)
    with _locked(keys_dir):
        root_path = keys_dir / ROOT
        if not root_path.exists():
            others = [name for name in (SIGNING, PAYMENT, DATA, KEYSET) if (keys_dir / name).exists()]
            if others or not create:
                raise KeyStoreError(
                    f"root key {root_path} is missing; refusing to make a new center identity"
                )
            write_private_file(root_path, _pem(ec.generate_private_key(ec.SECP256R1())))
        for name in (SIGNING, PAYMENT):
            if not (keys_dir / name).exists():
                if not create:
                    raise KeyStoreError(f"key file {keys_dir / name} is missing")
                write_private_file(keys_dir / name, _pem(ec.generate_private_key(ec.SECP256R1())))
        if not (keys_dir / DATA).exists():
            if not create:
                raise KeyStoreError(f"key file {keys_dir / DATA} is missing")
            write_private_file(keys_dir / DATA, secrets.token_bytes(DATA_KEY_BYTES))
        root, signing, payment = (_load_ec(keys_dir / n) for n in (ROOT, SIGNING, PAYMENT))
        data_key = _read_private_file(keys_dir / DATA)
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyStoreError(f"data key {keys_dir / DATA} is not {DATA_KEY_BYTES} bytes")

        current = _current_keyset(keys_dir / KEYSET, root)
        wanted = (
            Jwk.from_public_key(signing.public_key()),
            Jwk.from_public_key(payment.public_key()),
            issuer or "",
        )
        if current is not None and (
            (current[1].signing_jwk, current[1].payment_jwk, current[1].iss) == wanted
            or (not create and issuer is None and current[1].signing_jwk == wanted[0])
        ):
            token, version = current[0], current[1].version
        elif create:
            version = 1 if current is None else current[1].version + 1
            token = _sign_keyset(root, signing, payment, issuer or "", version)
            write_private_file(keys_dir / KEYSET, json.dumps({"version": version, "keyset": token}).encode())
        else:
            raise KeyStoreError(
                "the key set does not match the keys and issuer; start the server to re-sign it"
            )
    return CenterKeys(root, signing, payment, data_key, token, version)


def load_root_public(keys_dir: Path) -> ec.EllipticCurvePublicKey:
    """The root public key only (`center keys show`), without creating anything."""
    return _load_ec(keys_dir / ROOT).public_key()
