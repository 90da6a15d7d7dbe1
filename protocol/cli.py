"""`python -m protocol`: Coffer's wire formats as filters, stdin to stdout (operators, scripts, debugging).

    stream-encrypt --key-hex HEX [--aead aes-256-gcm|chacha20-poly1305] [--segment-size N]
    stream-decrypt --key-hex HEX [--max-segment-size N]
    hpke-seal      --public-key PEM_FILE  --info-hex HEX [--aad-hex HEX]
    hpke-open      --private-key PEM_FILE --info-hex HEX [--aad-hex HEX]
    jws-verify     --public-key PEM_FILE [--typ T] [--now UNIX_TIME] [--audience DEVICE_ID]

The stream commands are streaming (constant memory; content stream v1, protocol.stream); `stream-decrypt`
writes plaintext as segments authenticate, so on failure the bytes already written must be discarded. HPKE
(RFC 9180 base mode, protocol.hpke) is single-shot and reads its whole input (at most 16 MiB). `jws-verify`
prints the verified payload as JSON. Any bad input ends with one line `protocol: <what went wrong>` on stderr
and exit code 2; success is 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NoReturn, TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocol import hpke, stream
from protocol.errors import EncodingError, HpkeError, ProtocolError
from protocol.keys import public_key_from_pem

EXIT_OK = 0
EXIT_BAD_INPUT = 2
MAX_HPKE_INPUT = 16 * 1024 * 1024
CONTENT_KEY_BYTES = 32


class CliError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m protocol", description="Coffer wire formats: stdin to stdout.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    enc = commands.add_parser("stream-encrypt", help="content stream v1: encrypt stdin")
    enc.add_argument("--key-hex", required=True, help="the 32-byte content key, hex")
    enc.add_argument("--aead", choices=sorted(stream.AEADS), default="aes-256-gcm")
    enc.add_argument("--segment-size", type=int, default=stream.DEFAULT_SEGMENT_SIZE)

    dec = commands.add_parser("stream-decrypt", help="content stream v1: decrypt and verify stdin")
    dec.add_argument("--key-hex", required=True, help="the 32-byte content key, hex")
    dec.add_argument("--max-segment-size", type=int, default=stream.MAX_SEGMENT_SIZE)

    seal = commands.add_parser("hpke-seal", help="HPKE base mode: seal stdin to a P-256 public key")
    seal.add_argument("--public-key", required=True, type=Path, help="PEM SubjectPublicKeyInfo file")
    seal.add_argument("--info-hex", required=True)
    seal.add_argument("--aad-hex", default="")

    open_ = commands.add_parser("hpke-open", help="HPKE base mode: open stdin with a P-256 private key")
    open_.add_argument("--private-key", required=True, type=Path, help="PEM private key file (unencrypted)")
    open_.add_argument("--info-hex", required=True)
    open_.add_argument("--aad-hex", default="")

    verify = commands.add_parser("jws-verify", help="verify a compact JWS from stdin; print its payload")
    verify.add_argument("--public-key", required=True, type=Path, help="PEM SubjectPublicKeyInfo file")
    verify.add_argument("--typ", help="required kind, e.g. coffer-order (default: the header's typ)")
    verify.add_argument("--now", type=int, help="judge exp against this Unix time (default: the clock)")
    verify.add_argument("--audience", help="require this device_id")
    return parser


def _hex(value: str, option: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise CliError(f"{option} is not hex") from None


def _content_key(value: str) -> bytes:
    key = _hex(value, "--key-hex")
    if len(key) != CONTENT_KEY_BYTES:
        raise CliError(f"--key-hex must be {CONTENT_KEY_BYTES} bytes ({2 * CONTENT_KEY_BYTES} hex digits)")
    return key


def _read_file(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None


def _public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        return public_key_from_pem(_read_file(path, "--public-key"))
    except EncodingError as exc:
        raise CliError(f"--public-key: {exc}") from None


def _private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    data = _read_file(path, "--private-key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CliError("--private-key: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CliError("--private-key: not a P-256 key")
    return key


def _read_bounded(src: BinaryIO, limit: int) -> bytes:
    data = src.read(limit + 1)
    if len(data) > limit:
        raise CliError(f"input is larger than {limit} bytes")
    return data


def _stream_encrypt(args: argparse.Namespace, stdin: BinaryIO, stdout: BinaryIO) -> None:
    key = _content_key(args.key_hex)
    stream.encrypt_file(stdin, stdout, key, aead=args.aead, segment_size=args.segment_size)


def _stream_decrypt(args: argparse.Namespace, stdin: BinaryIO, stdout: BinaryIO) -> None:
    key = _content_key(args.key_hex)
    stream.decrypt_file(stdin, stdout, key, max_segment_size=args.max_segment_size)


def _hpke_seal(args: argparse.Namespace, stdin: BinaryIO, stdout: BinaryIO) -> None:
    recipient = _public_key(args.public_key)
    info, aad = _hex(args.info_hex, "--info-hex"), _hex(args.aad_hex, "--aad-hex")
    stdout.write(hpke.seal(recipient, _read_bounded(stdin, MAX_HPKE_INPUT), info=info, aad=aad))


def _hpke_open(args: argparse.Namespace, stdin: BinaryIO, stdout: BinaryIO) -> None:
    private = _private_key(args.private_key)
    info, aad = _hex(args.info_hex, "--info-hex"), _hex(args.aad_hex, "--aad-hex")
    sealed = _read_bounded(stdin, MAX_HPKE_INPUT + hpke.OVERHEAD)
    stdout.write(hpke.open(private, sealed, info=info, aad=aad))


def _jws_verify(args: argparse.Namespace, stdin: BinaryIO, stdout: BinaryIO) -> None:
    # Imported here: the pydantic models cost ~0.1 s of start-up that the stream and HPKE filters never need.
    from protocol import jws
    from protocol.messages import PAYLOAD_TYPES

    if args.typ is not None and args.typ not in PAYLOAD_TYPES:
        raise CliError(f"--typ must be one of {', '.join(sorted(PAYLOAD_TYPES))}")
    key = _public_key(args.public_key)
    raw = _read_bounded(stdin, jws.MAX_TOKEN_LENGTH + 2).strip(b" \t\r\n")
    try:
        token = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CliError("the token is not ASCII") from None
    typ = args.typ or jws.unverified_header(token).get("typ")
    kind = PAYLOAD_TYPES.get(typ) if isinstance(typ, str) else None
    if kind is None:
        raise CliError(f"unknown JWS typ {typ!r}")
    now = int(time.time()) if args.now is None else args.now
    payload = jws.verify(token, kind, keys=key, now=now, audience=args.audience)
    body = json.dumps(payload.model_dump(mode="json", exclude_none=True), sort_keys=True)
    stdout.write(body.encode("utf-8") + b"\n")


_COMMANDS: dict[str, Callable[[argparse.Namespace, BinaryIO, BinaryIO], None]] = {
    "stream-encrypt": _stream_encrypt,
    "stream-decrypt": _stream_decrypt,
    "hpke-seal": _hpke_seal,
    "hpke-open": _hpke_open,
    "jws-verify": _jws_verify,
}


def main(
    argv: list[str] | None = None,
    *,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command; returns the exit code (0 success, 2 bad input). Streams default to the process's."""
    err = sys.stderr if stderr is None else stderr
    try:
        args = _parser().parse_args(argv)
        out = sys.stdout.buffer if stdout is None else stdout
        _COMMANDS[args.command](args, sys.stdin.buffer if stdin is None else stdin, out)
        out.flush()
    except HpkeError:
        print("protocol: HPKE open failed (wrong key, info or aad, or tampered input)", file=err)
        return EXIT_BAD_INPUT
    except (CliError, ProtocolError, ValueError, OSError) as exc:
        kind = "" if isinstance(exc, CliError) else f"{type(exc).__name__}: "
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"protocol: {kind}{message}", file=err)
        return EXIT_BAD_INPUT
    return EXIT_OK
