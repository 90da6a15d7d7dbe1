"""Content stream v1 throughput against raw AEAD throughput, measured in the same run.

For 64 KiB and 1 MiB segments and both AEADs: the reference is the AEAD alone (cryptography's `encrypt()`
/ `decrypt()` of one segment-sized buffer over and over with a fixed key and nonce, as many bytes as the
stream); the subject is `Encryptor.update()` fed plaintext in segment-sized `bytes` chunks, and
`Decryptor.update()` fed the same stream's ciphertext re-cut into segment-sized chunks (so every segment
straddles two chunks, as from a socket). Decrypt lines also carry `aligned_mib_s` and `aligned_ratio`: a
second Decryptor fed the same ciphertext one whole segment per chunk (no reassembly copy, as decrypt_file
reads). Memory stays bounded: ciphertext exists one round (at most 16 MiB) at a time; only update() and
finalize() are timed (process CPU time), round by round beside the reference. Best of `--repeat` runs.
One JSON object per line:

    {"bench": "stream", "aead": ..., "segment_size": ..., "op": "encrypt"|"decrypt",
     "mib_s": ..., "raw_aead_mib_s": ..., "ratio": ...[, "aligned_mib_s": ..., "aligned_ratio": ...]}

    python -m bench.stream [--size-mib N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from protocol.stream import AEADS, Decryptor, Encryptor

SEGMENT_SIZES = (64 * 1024, 1024 * 1024)
ROUND_BYTES = 16 * 1024 * 1024
MIB = 1024 * 1024
# CPU time of this process: on a shared machine, time spent waiting for a core does not count against either
# side (cache effects of other load still do).
_clock = time.process_time


def _run(aead: str, segment_size: int, total: int) -> tuple[float, ...]:
    """Seconds for (raw encrypt, raw decrypt, stream encrypt, stream decrypt, aligned stream decrypt) of
    `total` bytes.

    Round by round (16 MiB), the four are timed back to back, so a change in machine load hits reference and
    subject alike. Stream output is dropped as it comes, as the raw reference's is. A twin Encryptor (same key
    and salt, so the same stream) makes each round's ciphertext for the Decryptor, untimed.
    """
    raw = (AESGCM if aead == "aes-256-gcm" else ChaCha20Poly1305)(os.urandom(32))
    nonce, aad = bytes(12), bytes(42)
    chunk = os.urandom(segment_size)
    raw_ciphertext = raw.encrypt(nonce, chunk, aad)
    key, salt = os.urandom(32), os.urandom(32)
    enc = Encryptor(key, aead=aead, segment_size=segment_size, salt=salt)
    twin = Encryptor(key, aead=aead, segment_size=segment_size, salt=salt)
    dec, aligned_dec = Decryptor(key), Decryptor(key)
    times = [0.0] * 5
    count = total // segment_size
    per_round = max(1, ROUND_BYTES // segment_size)
    pending = b""  # ciphertext not yet fed to the decryptor (less than one chunk)
    while count:
        n = min(per_round, count)
        count -= n
        segments = [twin.update(chunk) for _ in range(n)] + ([] if count else [twin.finalize()])
        data = pending + b"".join(segments)
        cut = len(data) - len(data) % segment_size if count else len(data)
        pieces = [data[i : i + segment_size] for i in range(0, cut, segment_size)]
        pending = data[cut:]
        del data

        t0 = _clock()
        for _ in range(n):
            raw.encrypt(nonce, chunk, aad)
        t1 = _clock()
        for _ in range(n):
            raw.decrypt(nonce, raw_ciphertext, aad)
        t2 = _clock()
        for _ in range(n):
            enc.update(chunk)
        if not count:
            enc.finalize()
        t3 = _clock()
        for piece in pieces:
            dec.update(piece)
        if not count:
            dec.finalize()
        t4 = _clock()
        for segment in segments:
            aligned_dec.update(segment)
        if not count:
            aligned_dec.finalize()
        t5 = _clock()
        for i, spent in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            times[i] += spent
    return tuple(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-mib", type=int, default=256, help="plaintext MiB per measurement (default 256)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement; the best counts (default 3)"
    )
    args = parser.parse_args(argv)
    total = args.size_mib * MIB
    mib = total / MIB
    for aead in AEADS:
        for segment_size in SEGMENT_SIZES:
            runs = [_run(aead, segment_size, total) for _ in range(args.repeat)]
            raw_enc, raw_dec, enc, dec, aligned = (min(column) for column in zip(*runs, strict=True))
            for op, subject, reference in (("encrypt", enc, raw_enc), ("decrypt", dec, raw_dec)):
                line: dict[str, object] = {
                    "bench": "stream",
                    "aead": aead,
                    "segment_size": segment_size,
                    "op": op,
                    "mib_s": round(mib / subject, 1),
                    "raw_aead_mib_s": round(mib / reference, 1),
                    "ratio": round(reference / subject, 3),
                }
                if op == "decrypt":
                    line["aligned_mib_s"] = round(mib / aligned, 1)
                    line["aligned_ratio"] = round(reference / aligned, 3)
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
