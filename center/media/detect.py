"""Decide what a file is by opening it with decoders, never by its name (issue 5).

Order: Pillow (a restricted list of raster formats) → pdfium → UTF-8 text without NUL → PyAV (an allow-list of
real audio/video containers, opened from a file object so ffmpeg gets no file-name hint, and at least one
frame
must decode) → `other`.
"""

from __future__ import annotations

import codecs
import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import pypdfium2 as pdfium
from PIL import Image

from protocol.api.catalog import MediaKind

#: Raster formats we accept as images (Pillow's guessers for formats without magic numbers are left out).
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")
#: ffmpeg demuxer names of audio/video containers; raw elementary streams and oddities (bin, tty, h263) are
#: not.
AV_CONTAINERS = frozenset(
    {
        "matroska",
        "webm",
        "mov",
        "mp4",
        "m4a",
        "ogg",
        "mp3",
        "wav",
        "flac",
        "avi",
        "mpegts",
        "mpeg",
        "aac",
        "flv",
        "asf",
        "aiff",
        "w64",
        "caf",
        "3gp",
    }
)
TEXT_SNIFF_LIMIT = 64 * 1024 * 1024
_TEXT_MEDIA = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Detected:
    kind: MediaKind
    media_type: str
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None


def _image(path: Path) -> Detected | None:
    Image.init()
    formats = [f for f in IMAGE_FORMATS if f in Image.OPEN]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=formats) as im:
                im.verify()
                fmt = im.format or "PNG"
                size = im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None
    return Detected("image", Image.MIME.get(fmt, "application/octet-stream"), size[0], size[1])


def _pdf(path: Path) -> Detected | None:
    try:
        pdf = pdfium.PdfDocument(path)
    except (pdfium.PdfiumError, OSError, ValueError):
        return None
    try:
        pages = len(pdf)
    finally:
        pdf.close()
    return Detected("pdf", "application/pdf") if pages > 0 else None


def _text(path: Path) -> Detected | None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    seen = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            if b"\x00" in chunk:
                return None
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return None
            seen += len(chunk)
            if seen >= TEXT_SNIFF_LIMIT:
                return Detected("text", _TEXT_MEDIA)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return None
    return Detected("text", _TEXT_MEDIA) if seen else None


def container_media_type(format_names: str, video: bool) -> str:
    names = set(format_names.split(","))
    top = "video" if video else "audio"
    if names & {"matroska", "webm"}:
        return f"{top}/webm"
    if names & {"mov", "mp4", "m4a", "3gp"}:
        return f"{top}/mp4"
    if "ogg" in names:
        return f"{top}/ogg"
    if "mp3" in names:
        return "audio/mpeg"
    if "wav" in names:
        return "audio/wav"
    if "flac" in names:
        return "audio/flac"
    return "application/octet-stream"


def _av(path: Path) -> Detected | None:
    with open(path, "rb") as fh:
        try:
            container = av.open(fh, mode="r")
        except (av.FFmpegError, OSError, ValueError):
            return None
        with container:
            if not set(container.format.name.split(",")) & AV_CONTAINERS:
                return None
            videos = [
                s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic
            ]
            audios = list(container.streams.audio)
            stream = videos[0] if videos else (audios[0] if audios else None)
            if stream is None:
                return None
            try:
                frame = next(iter(container.decode(stream)), None)
            except (av.FFmpegError, ValueError):
                return None
            if frame is None:
                return None
            duration = container.duration // 1000 if container.duration else None
            if videos:
                cc = videos[0].codec_context
                return Detected(
                    "video", container_media_type(container.format.name, True), cc.width, cc.height, duration
                )
            return Detected("audio", container_media_type(container.format.name, False), duration_ms=duration)


def detect(path: Path) -> Detected:
    """The media kind of the file at `path`, decided by decoders."""
    for probe in (_image, _pdf, _text, _av):
        found = probe(path)
        if found is not None:
            return found
    return Detected("other", "application/octet-stream")
