"""`center serve` as a real uvicorn process on loopback: HTTP, HTTPS with a self-signed certificate, keys."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.center.conftest import Media, add, catalog_for, live_center

pytestmark = pytest.mark.integration


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_plain_http_on_loopback_with_keys_created(tmp_path: Path, media: Media) -> None:
    from center.settings import CenterSettings

    data = tmp_path / "c"
    item_id = add(catalog_for(CenterSettings(data_dir=data)), media.video, title="Clip")
    with live_center(data) as server:
        for name in ("root.pem", "signing.pem", "payment.pem", "data.key"):
            assert stat.S_IMODE((data / "keys" / name).stat().st_mode) == 0o600
        with httpx.Client(base_url=server.url) as http:
            listing = http.get("/v1/items").json()
            assert [i["item_id"] for i in listing["items"]] == [item_id]
            preview = http.get(f"/v1/items/{item_id}/previews/0", headers={"Range": "bytes=0-99"})
            assert preview.status_code == 206
            assert len(preview.content) == 100
            assert http.get("/.well-known/coffer").json()["issuer"] == server.url
            assert "server" not in http.get("/v1/health").headers


def test_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    with live_center(
        tmp_path / "c", "--tls-cert", str(cert), "--tls-key", str(key), scheme="https", verify=context
    ) as server:
        assert server.url.startswith("https://")
        with httpx.Client(base_url=server.url, verify=context) as http:
            r = http.get("/v1/health")
            assert r.status_code == 200
            assert r.headers["strict-transport-security"].startswith("max-age=")
            assert http.get("/.well-known/coffer").json()["issuer"] == server.url
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url.replace("https://", "http://") + "/v1/health", timeout=5)
