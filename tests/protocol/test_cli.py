"""`python -m protocol`, run as a real subprocess: byte-exact round trips, streaming, and every error path
(one line on stderr, exit code 2, never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from protocol import hpke, jws, stream
from protocol.b64 import b64url_encode
from protocol.keys import device_id_for, public_key_to_pem
from protocol.messages import Order
from tests.protocol.test_jws import DEVICE, NOW, ORDER, RECEIPT

KEY_HEX = "11" * 32
ROOT = Path(__file__).resolve().parents[2]


def run(args: Sequence[str | Path], data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "protocol", *map(str, args)],
        input=data,
        capture_output=True,
        cwd=ROOT,
        check=False,
    )


def assert_ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout


def assert_bad_input(result: subprocess.CompletedProcess[bytes], fragment: str) -> str:
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert err.startswith("protocol: ")
    assert fragment in err, err
    return err


def write_pem(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, public: bool) -> Path:
    if public:
        path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ec.EllipticCurvePrivateKey, Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    key = ec.generate_private_key(ec.SECP256R1())
    return key, write_pem(d / "priv.pem", key, public=False), write_pem(d / "pub.pem", key, public=True)


# --- content stream v1 ----------------------------------------------------------------------------


@pytest.mark.parametrize("aead", ["aes-256-gcm", "chacha20-poly1305"])
@pytest.mark.parametrize("length", [0, 1024, 3 * 1024 + 1])
def test_stream_round_trip_byte_exact(aead: str, length: int) -> None:
    plaintext = os.urandom(length)
    ciphertext = assert_ok(
        run(["stream-encrypt", "--key-hex", KEY_HEX, "--aead", aead, "--segment-size", "1024"], plaintext)
    )
    assert len(ciphertext) == stream.ciphertext_length(length, 1024)
    assert stream.decrypt(ciphertext, bytes.fromhex(KEY_HEX)) == plaintext
    assert assert_ok(run(["stream-decrypt", "--key-hex", KEY_HEX], ciphertext)) == plaintext


def test_stream_decrypt_of_library_output_and_default_segment_size() -> None:
    plaintext = os.urandom(200_000)
    ciphertext = stream.encrypt(plaintext, bytes.fromhex(KEY_HEX))
    assert assert_ok(run(["stream-decrypt", "--key-hex", KEY_HEX.upper()], ciphertext)) == plaintext
    default = assert_ok(run(["stream-encrypt", "--key-hex", KEY_HEX], plaintext))
    assert stream.Header.parse(default[: stream.HEADER_SIZE]).segment_size == stream.DEFAULT_SEGMENT_SIZE
    assert stream.Header.parse(default[: stream.HEADER_SIZE]).aead == "aes-256-gcm"


def test_stream_encrypt_streams_before_stdin_ends() -> None:
    """Ciphertext of complete segments appears while stdin is still open: the CLI never reads all of stdin."""
    segment = 65536
    data = os.urandom(4 * segment + 1)
    prefix_len = stream.HEADER_SIZE + 2 * (segment + stream.TAG_SIZE)
    got_prefix = threading.Event()
    chunks: list[bytes] = []
    command = [
        sys.executable,
        "-m",
        "protocol",
        "stream-encrypt",
        "--key-hex",
        KEY_HEX,
        "--segment-size",
        "65536",
    ]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
    ) as proc:
        assert proc.stdin is not None
        out = proc.stdout
        assert out is not None

        def drain() -> None:
            chunks.append(out.read(prefix_len))
            got_prefix.set()
            chunks.append(out.read())

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
            # A liveness guard, not a timing assertion: a CLI that waited for EOF would never get here.
            streamed = got_prefix.wait(timeout=120)
        finally:
            proc.stdin.close()
            reader.join()
    assert streamed, "no ciphertext before stdin was closed"
    assert proc.returncode == 0
    assert stream.decrypt(b"".join(chunks), bytes.fromhex(KEY_HEX)) == data


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(["stream-encrypt"], "--key-hex", id="missing-key"),
        pytest.param(["stream-encrypt", "--key-hex", "xyz"], "not hex", id="not-hex"),
        pytest.param(["stream-encrypt", "--key-hex", "11" * 31], "32 bytes", id="short-key"),
        pytest.param(["stream-encrypt", "--key-hex", "11" * 33], "32 bytes", id="long-key"),
        pytest.param(
            ["stream-encrypt", "--key-hex", KEY_HEX, "--segment-size", "big"], "segment-size", id="nan"
        ),
        pytest.param(
            ["stream-encrypt", "--key-hex", KEY_HEX, "--segment-size", "1023"], "segment size", id="s<1K"
        ),
        pytest.param(
            ["stream-encrypt", "--key-hex", KEY_HEX, "--segment-size", str(16 * 1024 * 1024 + 1)],
            "segment size",
            id="s>16M",
        ),
        pytest.param(["stream-encrypt", "--key-hex", KEY_HEX, "--aead", "aes-128-gcm"], "--aead", id="aead"),
        pytest.param(["stream-decrypt"], "--key-hex", id="decrypt-missing-key"),
        pytest.param(["stream-decrypt", "--key-hex", "1"], "not hex", id="odd-hex"),
        pytest.param([], "command", id="no-command"),
        pytest.param(["frobnicate"], "invalid choice", id="unknown-command"),
        pytest.param(["stream-encrypt", "--key-hex", KEY_HEX, "--bogus"], "--bogus", id="unknown-option"),
    ],
)
def test_stream_usage_errors(args: list[str], fragment: str) -> None:
    result = run(args, b"data")
    assert_bad_input(result, fragment)
    assert result.stdout == b""


def _good_stream(length: int = 3000) -> bytes:
    return stream.encrypt(os.urandom(length), bytes.fromhex(KEY_HEX), segment_size=1024)


@pytest.mark.parametrize(
    ("data", "args", "fragment"),
    [
        pytest.param(b"", [], "Truncated", id="empty"),
        pytest.param(
            b"not a stream at all, just some text that is long enough" * 2, [], "BadHeader", id="garbage"
        ),
        pytest.param(_good_stream()[:-1], [], "", id="truncated-tag"),
        pytest.param(_good_stream()[: stream.HEADER_SIZE + 1040], [], "Truncated", id="truncated-boundary"),
        pytest.param(_good_stream() + b"x", [], "", id="trailing"),
        pytest.param(
            _good_stream()[:50] + b"\x00" + _good_stream()[51:], [], "AuthenticationFailed", id="flip"
        ),
        pytest.param(
            stream.encrypt(b"x" * 5000, bytes.fromhex(KEY_HEX), segment_size=4096),
            ["--max-segment-size", "2048"],
            "SegmentTooLarge",
            id="segment-too-large",
        ),
        pytest.param(_good_stream(), ["--max-segment-size", "5"], "max_segment_size", id="bad-max"),
    ],
)
def test_stream_decrypt_bad_streams(data: bytes, args: list[str], fragment: str) -> None:
    assert_bad_input(run(["stream-decrypt", "--key-hex", KEY_HEX, *args], data), fragment)


def test_stream_decrypt_wrong_key() -> None:
    err = assert_bad_input(
        run(["stream-decrypt", "--key-hex", "22" * 32], _good_stream()), "AuthenticationFailed"
    )
    assert "segment 0" in err


# --- HPKE -----------------------------------------------------------------------------------------


def test_hpke_round_trip_with_openssl_keys(tmp_path: Path) -> None:
    """openssl makes the keys (PKCS#8 and SEC1 private PEMs); the CLI seals and opens byte-exactly."""
    pkcs8 = tmp_path / "k8.pem"
    sec1 = tmp_path / "k1.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", pkcs8],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", sec1],
        check=True,
        capture_output=True,
    )
    for private in (pkcs8, sec1):
        public = tmp_path / (private.stem + ".pub.pem")
        subprocess.run(
            ["openssl", "pkey", "-in", private, "-pubout", "-out", public], check=True, capture_output=True
        )
        plaintext = bytes(range(256)) * 3 + b"\x00\r\n\x1a"
        info = hpke.content_key_info("ord_1").hex()
        sealed = assert_ok(
            run(["hpke-seal", "--public-key", public, "--info-hex", info, "--aad-hex", "00ff"], plaintext)
        )
        assert len(sealed) == hpke.OVERHEAD + len(plaintext)
        opened = run(["hpke-open", "--private-key", private, "--info-hex", info, "--aad-hex", "00ff"], sealed)
        assert assert_ok(opened) == plaintext


def test_hpke_interop_with_the_library(keypair: tuple[ec.EllipticCurvePrivateKey, Path, Path]) -> None:
    key, private, public = keypair
    info = hpke.payment_info("ord_7")
    sealed = assert_ok(run(["hpke-seal", "--public-key", public, "--info-hex", info.hex()], b"payment"))
    assert hpke.open(key, sealed, info=info) == b"payment"
    sealed = hpke.seal(key.public_key(), b"", info=info)
    assert assert_ok(run(["hpke-open", "--private-key", private, "--info-hex", info.hex()], sealed)) == b""


@pytest.fixture(scope="module")
def bad_pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(65537, 2048)
    p256 = ec.generate_private_key(ec.SECP256R1())
    encrypted = d / "encrypted.pem"
    encrypted.write_bytes(
        p256.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    garbage = d / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    return {
        "p384-public": write_pem(d / "p384.pub.pem", p384, public=True),
        "p384-private": write_pem(d / "p384.pem", p384, public=False),
        "rsa-public": write_pem(d / "rsa.pub.pem", rsa_key, public=True),
        "private-as-public": write_pem(d / "p256.pem", p256, public=False),
        "encrypted": encrypted,
        "garbage": garbage,
        "directory": d,
        "missing": d / "no-such-file.pem",
    }


@pytest.mark.parametrize(
    ("which", "fragment"),
    [
        ("p384-public", "P-256"),
        ("rsa-public", "P-256"),
        ("private-as-public", "--public-key"),
        ("garbage", "--public-key"),
        ("directory", "cannot read"),
        ("missing", "cannot read"),
    ],
)
def test_hpke_seal_bad_public_key(bad_pems: dict[str, Path], which: str, fragment: str) -> None:
    result = run(["hpke-seal", "--public-key", bad_pems[which], "--info-hex", "00"], b"x")
    assert_bad_input(result, fragment)
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("which", "fragment"),
    [
        ("p384-private", "P-256"),
        ("encrypted", "unencrypted"),
        ("garbage", "--private-key"),
        ("p384-public", "--private-key"),
        ("missing", "cannot read"),
    ],
)
def test_hpke_open_bad_private_key(bad_pems: dict[str, Path], which: str, fragment: str) -> None:
    assert_bad_input(
        run(["hpke-open", "--private-key", bad_pems[which], "--info-hex", "00"], b"x" * 100), fragment
    )


def test_hpke_option_errors(keypair: tuple[ec.EllipticCurvePrivateKey, Path, Path]) -> None:
    _, private, public = keypair
    assert_bad_input(run(["hpke-seal", "--public-key", public], b"x"), "--info-hex")
    assert_bad_input(run(["hpke-seal", "--info-hex", "00"], b"x"), "--public-key")
    assert_bad_input(
        run(["hpke-seal", "--public-key", public, "--info-hex", "0g"], b"x"), "--info-hex is not hex"
    )
    assert_bad_input(
        run(["hpke-seal", "--public-key", public, "--info-hex", "00", "--aad-hex", "q"], b"x"), "--aad-hex"
    )
    assert_bad_input(run(["hpke-open", "--private-key", private, "--info-hex", "zz"], b"x"), "--info-hex")
    assert_bad_input(run(["hpke-open", "--info-hex", "00"], b"x"), "--private-key")


def test_hpke_open_failures_are_opaque(keypair: tuple[ec.EllipticCurvePrivateKey, Path, Path]) -> None:
    key, private, _ = keypair
    info = hpke.content_key_info("ord_1")
    sealed = hpke.seal(key.public_key(), b"k" * 32, info=info, aad=b"a")
    other = ec.generate_private_key(ec.SECP256R1())
    messages = set()
    for data, info_hex, aad_hex in (
        (sealed, info.hex(), "61"),  # control: opens
        (sealed, hpke.content_key_info("ord_2").hex(), "61"),
        (sealed, info.hex(), ""),
        (sealed[:-1], info.hex(), "61"),
        (sealed[:10], info.hex(), "61"),
        (b"", info.hex(), "61"),
        (sealed[:70] + bytes([sealed[70] ^ 1]) + sealed[71:], info.hex(), "61"),
        (hpke.seal(other.public_key(), b"k" * 32, info=info, aad=b"a"), info.hex(), "61"),
    ):
        result = run(
            ["hpke-open", "--private-key", private, "--info-hex", info_hex, "--aad-hex", aad_hex], data
        )
        if data is sealed and info_hex == info.hex() and aad_hex == "61":
            assert assert_ok(result) == b"k" * 32
            continue
        messages.add(assert_bad_input(result, "HPKE open failed"))
        assert result.stdout == b""
    assert len(messages) == 1


# --- JWS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[jws.SoftwareSigner, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    return jws.SoftwareSigner(key), write_pem(tmp_path_factory.mktemp("jws") / "pub.pem", key, public=True)


def test_jws_verify_prints_the_payload(signer: tuple[jws.SoftwareSigner, Path]) -> None:
    sig, pub = signer
    token = jws.sign(ORDER, sig)
    out = assert_ok(run(["jws-verify", "--public-key", pub, "--now", str(NOW)], token.encode() + b"\n"))
    assert out.endswith(b"\n")
    assert Order.model_validate_json(out) == ORDER
    out = assert_ok(
        run(
            [
                "jws-verify",
                "--public-key",
                pub,
                "--typ",
                "coffer-order",
                "--now",
                str(NOW),
                "--audience",
                DEVICE,
            ],
            token.encode(),
        )
    )
    assert Order.model_validate_json(out) == ORDER


def test_jws_verify_defaults_now_to_the_clock(signer: tuple[jws.SoftwareSigner, Path]) -> None:
    sig, pub = signer
    assert_ok(run(["jws-verify", "--public-key", pub], jws.sign(RECEIPT, sig).encode()))  # no exp
    expired = jws.sign(ORDER, sig)  # exp = NOW + 600, long past
    assert_bad_input(run(["jws-verify", "--public-key", pub], expired.encode()), "JwsExpired")


@pytest.mark.parametrize(
    ("make", "args", "fragment"),
    [
        pytest.param(lambda t: t, ["--typ", "coffer-receipt"], "typ", id="typ-mismatch"),
        pytest.param(lambda t: t, ["--typ", "coffer-nope"], "--typ", id="typ-unknown-choice"),
        pytest.param(lambda t: t, ["--now", str(NOW + 600)], "JwsExpired", id="expired"),
        pytest.param(lambda t: t, ["--now", "soon"], "--now", id="now-not-int"),
        pytest.param(
            lambda t: t,
            ["--audience", device_id_for(ec.generate_private_key(ec.SECP256R1()).public_key())],
            "JwsWrongAudience",
            id="audience",
        ),
        pytest.param(
            lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1], [], "JwsError", id="bad-signature"
        ),
        pytest.param(lambda t: "not.a.token", [], "JwsError", id="garbage"),
        pytest.param(lambda t: "", [], "JwsError", id="empty"),
        pytest.param(lambda t: t + "é", [], "ASCII", id="non-ascii"),
        pytest.param(lambda t: t.replace(".", "..", 1), [], "JwsError", id="four-parts"),
    ],
)
def test_jws_verify_errors(
    signer: tuple[jws.SoftwareSigner, Path], make: object, args: list[str], fragment: str
) -> None:
    sig, pub = signer
    token: str = make(jws.sign(ORDER, sig))  # type: ignore[operator]
    result = run(["jws-verify", "--public-key", pub, "--now", str(NOW), *args], token.encode())
    assert_bad_input(result, fragment)
    assert result.stdout == b""


def test_jws_verify_wrong_key_and_unknown_typ(
    signer: tuple[jws.SoftwareSigner, Path], tmp_path: Path
) -> None:
    sig, pub = signer
    other = write_pem(tmp_path / "other.pem", ec.generate_private_key(ec.SECP256R1()), public=True)
    assert_bad_input(
        run(["jws-verify", "--public-key", other, "--now", str(NOW)], jws.sign(ORDER, sig).encode()), "kid"
    )
    header = b64url_encode(b'{"alg":"ES256","typ":"coffer-unknown","kid":"x"}')
    token = f"{header}.{b64url_encode(b'{}')}.{b64url_encode(bytes(64))}"
    assert_bad_input(run(["jws-verify", "--public-key", pub], token.encode()), "unknown JWS typ")
    assert_bad_input(run(["jws-verify", "--public-key", tmp_path / "none.pem"], b"x"), "cannot read")
    assert public_key_to_pem(sig.public_key()).encode() == pub.read_bytes()


def test_help_exits_zero() -> None:
    result = run(["--help"])
    assert result.returncode == 0
    for command in ("stream-encrypt", "stream-decrypt", "hpke-seal", "hpke-open", "jws-verify"):
        assert command.encode() in result.stdout
