"""Advertising previews (the patent's M', ST2), generated at registration (issue 5).

image → WebP thumbnail ≤ 320 px; text → a UTF-8 excerpt; PDF → first page as WebP ≤ 320 px wide + a text
excerpt; audio → the first 30 s as Opus in WebM; video → the first 10 s, ≤ 360p, VP8 in WebM, muted. All
play in
Debian's Chromium. Size rule: each preview ≤ max(10 % of the original, 64 KiB) and ≤ 2 MiB; a preview that
comes
out too big is re-encoded smaller (quality, bitrate, resolution, then duration) and refused in the end.
"""

from __future__ import annotations

import codecs
import io
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import pypdf
import pypdfium2 as pdfium
from PIL import Image, ImageOps

from center.errors import PreviewTooLargeError, UnsupportedMediaError
from center.media.detect import Detected
from protocol.api.catalog import PreviewKind

F = TypeVar("F", av.AudioFrame, av.VideoFrame)
MIN_LIMIT = 64 * 1024
MAX_PREVIEW = 2 * 1024 * 1024
THUMB_PX = 320
TEXT_EXCERPT_BYTES = 2048
AUDIO_SECONDS = 30.0
AUDIO_BITRATE = 32_000
VIDEO_SECONDS = 10.0
VIDEO_MAX_SHORT_SIDE = 360
VIDEO_MAX_LONG_SIDE = 640
VIDEO_FPS = 24
VIDEO_BITRATE = 400_000


def size_limit(original_length: int) -> int:
    """The most bytes a preview of an original of `original_length` bytes may have."""
    return min(MAX_PREVIEW, max(MIN_LIMIT, original_length // 10))


@dataclass(frozen=True)
class PreviewData:
    kind: PreviewKind
    media_type: str
    data: bytes
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    generated: bool = True


def _fit(im: Image.Image, max_w: int, max_h: int) -> Image.Image:
    out = im.copy()
    out.thumbnail((max_w, max_h), Image.Resampling.LANCZOS)
    return out


def _webp_ladder(im: Image.Image, limit: int, max_w: int = THUMB_PX, max_h: int = THUMB_PX) -> PreviewData:
    """Encode `im` as WebP within `limit` bytes: lower the quality, then the size."""
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.getbands() or im.mode == "P" else "RGB")
    for px_w, px_h in (
        (max_w, max_h),
        (max_w * 3 // 4, max_h * 3 // 4),
        (max_w // 2, max_h // 2),
        (max_w // 4, max_h // 4),
    ):
        thumb = _fit(im, px_w, px_h)
        for quality in (80, 60, 40, 20):
            buf = io.BytesIO()
            thumb.save(buf, "WEBP", quality=quality, method=4)
            if buf.tell() <= limit:
                return PreviewData("image", "image/webp", buf.getvalue(), thumb.width, thumb.height)
    raise PreviewTooLargeError("no thumbnail fits the preview size limit")


def image_preview(path: Path, limit: int) -> PreviewData:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.seek(0)
                frame = ImageOps.exif_transpose(im)
                frame.load()
    except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise UnsupportedMediaError(f"cannot decode the image: {exc}") from exc
    return _webp_ladder(frame, limit)


def text_excerpt(text: str, budget: int) -> str:
    """At most `budget` UTF-8 bytes from the start of `text`, cut at a line end if one is near, else at a
    character boundary (never inside a UTF-8 sequence)."""
    raw = text.encode("utf-8")
    if len(raw) <= budget:
        return text
    cut = raw[:budget].decode("utf-8", errors="ignore")
    line_end = cut.rfind("\n")
    if line_end >= len(cut) // 2:
        return cut[: line_end + 1]
    return cut


def text_preview(path: Path, limit: int) -> PreviewData:
    """The first lines of a text: at most 2 KiB and at most a quarter of the text (never all of it)."""
    length = path.stat().st_size
    budget = min(TEXT_EXCERPT_BYTES, limit, max(1, length // 4))
    with open(path, "rb") as fh:
        head = fh.read(budget + 4)
    text = codecs.getincrementaldecoder("utf-8")(errors="strict").decode(head)  # a cut sequence waits
    excerpt = text_excerpt(text, budget)
    if not excerpt:
        excerpt = text[:1]
    return PreviewData("text", "text/plain; charset=utf-8", excerpt.encode("utf-8"))


def pdf_previews(path: Path, limit: int) -> list[PreviewData]:
    """First page rendered (pdfium) as WebP ≤ 320 px wide; a text excerpt (pypdf) when the PDF has text."""
    try:
        pdf = pdfium.PdfDocument(path)
    except (pdfium.PdfiumError, OSError) as exc:
        raise UnsupportedMediaError("cannot open the PDF") from exc
    try:
        page = pdf[0]
        try:
            width, _height = page.get_size()
            bitmap = page.render(scale=min(2.0, THUMB_PX / max(width, 1.0)))
            image = bitmap.to_pil()
            bitmap.close()
        finally:
            page.close()
    finally:
        pdf.close()
    previews = [_webp_ladder(image, limit, THUMB_PX, THUMB_PX * 3 // 2)]
    text = ""
    try:
        reader = pypdf.PdfReader(path)
        for page_obj in reader.pages[:3]:
            text += page_obj.extract_text() or ""
            if len(text.encode("utf-8")) > TEXT_EXCERPT_BYTES:
                break
    except (pypdf.errors.PyPdfError, ValueError, KeyError, OSError):
        text = ""
    text = text.strip()
    if text:
        excerpt = text_excerpt(text, min(TEXT_EXCERPT_BYTES, limit, max(1, len(text.encode("utf-8")) // 2)))
        previews.append(PreviewData("text", "text/plain; charset=utf-8", excerpt.encode("utf-8")))
    return previews


def _frames_until(frames: Iterable[F], seconds: float) -> Iterator[F]:
    for frame in frames:
        if frame.time is not None and frame.time >= seconds:
            return
        yield frame


def _encode_audio(path: Path, seconds: float, bitrate: int) -> tuple[bytes, int]:
    out = io.BytesIO()
    samples = 0
    with open(path, "rb") as fh, av.open(fh, mode="r") as src, av.open(out, mode="w", format="webm") as dst:
        stream = dst.add_stream("libopus", rate=48000, layout="mono")
        stream.bit_rate = bitrate
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in _frames_until(src.decode(src.streams.audio[0]), seconds):
            for piece in resampler.resample(frame):
                samples += piece.samples
                dst.mux(stream.encode(piece))
        for piece in resampler.resample(None):
            samples += piece.samples
            dst.mux(stream.encode(piece))
        dst.mux(stream.encode(None))
    return out.getvalue(), samples * 1000 // 48000


def _clip_seconds(seconds: float, duration_ms: int | None) -> float:
    return min(seconds, duration_ms / 1000) if duration_ms else seconds


def audio_preview(path: Path, limit: int, duration_ms: int | None = None) -> PreviewData:
    """The first 30 s as Opus (mono, 48 kHz) in WebM; lower bitrate, then shorter, until it fits."""
    for seconds in (AUDIO_SECONDS, 15.0, 8.0):
        budget_rate = int(limit * 8 * 0.85 / max(0.5, _clip_seconds(seconds, duration_ms)))
        bitrate = min(AUDIO_BITRATE, budget_rate)
        for rate in (bitrate, bitrate * 3 // 4, bitrate // 2):
            if rate < 6000:
                break
            try:
                data, duration_ms = _encode_audio(path, seconds, rate)
            except (av.FFmpegError, ValueError, IndexError) as exc:
                raise UnsupportedMediaError("cannot decode the audio") from exc
            if len(data) <= limit:
                return PreviewData("audio", "audio/webm", data, duration_ms=duration_ms)
    raise PreviewTooLargeError("no audio clip fits the preview size limit")


def _even(x: float) -> int:
    return max(2, int(x) // 2 * 2)


def _video_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    long_side = short_side * 16 // 9
    scale = min(1.0, short_side / min(width, height), long_side / max(width, height))
    return _even(width * scale), _even(height * scale)


def _encode_video(path: Path, seconds: float, short_side: int, bitrate: int) -> tuple[bytes, int, int, int]:
    out = io.BytesIO()
    last_pts = -1
    with open(path, "rb") as fh, av.open(fh, mode="r") as src, av.open(out, mode="w", format="webm") as dst:
        ist = next(s for s in src.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
        ist.thread_type = "AUTO"
        width, height = _video_size(ist.codec_context.width, ist.codec_context.height, short_side)
        fps = min(VIDEO_FPS, math.ceil(float(ist.average_rate or VIDEO_FPS)))
        ost = dst.add_stream("libvpx", rate=fps)
        ost.width, ost.height, ost.pix_fmt = width, height, "yuv420p"
        ost.bit_rate = bitrate
        ost.codec_context.time_base = Fraction(1, fps)
        ost.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "qmax": "63",
            "maxrate": str(bitrate),
            "bufsize": str(bitrate),
        }
        for frame in _frames_until(src.decode(ist), seconds):
            pts = round((frame.time or 0.0) * fps)
            if pts <= last_pts:
                continue
            last_pts = pts
            scaled = frame.reformat(width=width, height=height, format="yuv420p")
            scaled.pts = pts
            scaled.time_base = Fraction(1, fps)
            dst.mux(ost.encode(scaled))
        dst.mux(ost.encode(None))
    duration_ms = (last_pts + 1) * 1000 // fps if last_pts >= 0 else 0
    return out.getvalue(), width, height, duration_ms


def video_preview(path: Path, limit: int, duration_ms: int | None = None) -> PreviewData:
    """A muted trailer: the first 10 s, at most 360p and 24 fps, VP8 in WebM; smaller until it fits."""
    for seconds in (VIDEO_SECONDS, 5.0):
        budget_rate = int(limit * 8 * 0.8 / max(0.5, _clip_seconds(seconds, duration_ms)))
        for short_side, ceiling in ((360, VIDEO_BITRATE), (240, 200_000), (180, 100_000), (120, 50_000)):
            rate = max(20_000, min(ceiling, budget_rate))
            try:
                data, width, height, duration_ms = _encode_video(path, seconds, short_side, rate)
            except (av.FFmpegError, ValueError, StopIteration) as exc:
                raise UnsupportedMediaError("cannot decode the video") from exc
            if data and len(data) <= limit:
                return PreviewData("video", "video/webm", data, width, height, duration_ms)
    raise PreviewTooLargeError("no video trailer fits the preview size limit")


GENERATORS: dict[str, Callable[[Path, int, Detected], list[PreviewData]]] = {
    "image": lambda p, limit, _d: [image_preview(p, limit)],
    "text": lambda p, limit, _d: [text_preview(p, limit)],
    "pdf": lambda p, limit, _d: pdf_previews(p, limit),
    "audio": lambda p, limit, d: [audio_preview(p, limit, d.duration_ms)],
    "video": lambda p, limit, d: [video_preview(p, limit, d.duration_ms)],
}


def generate(path: Path, detected: Detected, limit: int) -> list[PreviewData]:
    """Previews of the file at `path`, each within `limit` bytes; [] for kinds we cannot preview."""
    generator = GENERATORS.get(detected.kind)
    if generator is None:
        return []
    previews = generator(path, limit, detected)
    for p in previews:
        if len(p.data) > limit:
            raise PreviewTooLargeError(f"the {p.kind} preview is {len(p.data)} bytes; the limit is {limit}")
    return previews


_TRIAL_KINDS: dict[str, PreviewKind] = {"image": "image", "text": "text", "audio": "audio", "video": "video"}


def trial_preview(path: Path, detected: Detected, limit: int) -> PreviewData:
    """The seller's own trial file, served as it is; same size rule."""
    length = path.stat().st_size
    if length == 0:
        raise UnsupportedMediaError("the trial file is empty")
    if length > limit:
        raise PreviewTooLargeError(
            f"the trial file is {length} bytes; the limit is {limit} "
            "(10 % of the content or 64 KiB, at most 2 MiB)"
        )
    kind = _TRIAL_KINDS.get(detected.kind, "file")
    media_type = (
        detected.media_type
        if kind != "file"
        else ("application/pdf" if detected.kind == "pdf" else "application/octet-stream")
    )
    return PreviewData(
        kind,
        media_type,
        path.read_bytes(),
        detected.width,
        detected.height,
        detected.duration_ms,
        generated=False,
    )
