"""Small generated media (no numpy): the demo catalog and the tests build their files with these."""

from __future__ import annotations

import math
import struct
import wave
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
from PIL import Image, ImageDraw


def make_image(path: Path, width: int = 1200, height: int = 800, fmt: str = "PNG") -> Path:
    """A colourful gradient with shapes (PNG by default)."""
    im = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(im)
    for y in range(0, height, 4):
        draw.rectangle((0, y, width, y + 4), fill=(y * 255 // height, 80, 255 - y * 255 // height))
    for i in range(12):
        x, y = (i * 97) % width, (i * 53) % height
        draw.ellipse((x, y, x + width // 6, y + height // 6), fill=((i * 40) % 256, 200, (i * 70) % 256))
    draw.text((20, 20), "Coffer sample image", fill=(255, 255, 255))
    im.save(path, fmt)
    return path


def make_text(path: Path, paragraphs: int = 60) -> Path:
    """A Markdown document in UTF-8 (with non-ASCII text)."""
    lines = ["# A sample story", ""]
    for i in range(paragraphs):
        lines.append(f"## Chapter {i + 1}")
        lines.append(
            f"Paragraph {i + 1}: the center sells content; 暗号化された内容 — ünïcödé text, line {i}."
        )
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def make_wav(path: Path, seconds: float = 5.0, rate: int = 16000) -> Path:
    """A mono 16-bit WAV: a rising tone with a tremolo."""
    n = int(seconds * rate)
    frames = bytearray()
    for i in range(n):
        t = i / rate
        amp = 0.4 * (0.75 + 0.25 * math.sin(2 * math.pi * 3 * t))
        frames += struct.pack("<h", int(32767 * amp * math.sin(2 * math.pi * (220 + 40 * t) * t)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


def make_video(
    path: Path,
    seconds: float = 2.0,
    width: int = 640,
    height: int = 480,
    fps: int = 24,
    codec: str = "mpeg4",
    fmt: str = "mp4",
) -> Path:
    """A moving-shapes video (MPEG-4 Part 2 in MP4 by default: a codec Chromium cannot play, so the trailer
    has to be re-encoded)."""
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = cast(av.VideoStream, out.add_stream(codec, rate=fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 1_500_000
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            im = Image.new("RGB", (width, height), (20, 20 + i * 3 % 200, 60))
            draw = ImageDraw.Draw(im)
            x = (i * 11) % (width - 80)
            draw.rectangle((x, height // 3, x + 80, height // 3 + 80), fill=(250, 200, 40))
            draw.ellipse((width - x - 60, height // 2, width - x, height // 2 + 60), fill=(40, 220, 250))
            draw.text((10, 10), f"frame {i}", fill=(255, 255, 255))
            frame = av.VideoFrame.from_image(im)  # type: ignore[no-untyped-call]
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(path: Path, pages: int = 3) -> Path:
    """A small PDF with text on each page (Helvetica), written by hand: no PDF library needed."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    font_obj = 3 + 2 * pages
    for i in range(pages):
        lines = [f"Coffer sample document, page {i + 1}"] + [
            f"Line {j}: content sold by the center and wrapped to a TPM." for j in range(30)
        ]
        ops = (
            ["BT /F1 11 Tf 50 780 Td 14 TL"]
            + [f"({_pdf_escape(line)}) '" for line in lines]
            + ["ET", "0.2 0.4 0.8 rg 50 50 200 120 re f"]
        )
        stream = "\n".join(ops).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_obj} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path
