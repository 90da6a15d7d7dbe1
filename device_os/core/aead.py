"""The device's AEAD (DESIGN.md "Content stream v1"): ChaCha20-Poly1305 where the CPU lacks AES."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

AeadName = Literal["aes-256-gcm", "chacha20-poly1305"]
AeadChoice = Literal["auto", "aes-256-gcm", "chacha20-poly1305"]


def cpu_has_aes(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when /proc/cpuinfo lists the `aes` flag (x86 `flags`, arm64 `Features`)."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features") and "aes" in value.split():
            return True
    return False


def resolve(choice: AeadChoice, cpuinfo: Path = Path("/proc/cpuinfo")) -> AeadName:
    if choice != "auto":
        return choice
    return "aes-256-gcm" if cpu_has_aes(cpuinfo) else "chacha20-poly1305"


def cipher(name: AeadName, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if name == "aes-256-gcm":
        return AESGCM(key)
    return ChaCha20Poly1305(key)
