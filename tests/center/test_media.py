"""Kind detection by decoders and preview generation for every media kind (issue 5)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from center.errors import PreviewTooLargeError
from center.media import previews
from center.media.detect import detect
from tests.center.conftest import Media


def test_size_limit_rule() -> None:
    assert previews.size_limit(1000) == 64 * 1024
    assert previews.size_limit(10 * 1024 * 1024) == 1024 * 1024
    assert previews.size_limit(100 * 1024 * 1024) == 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("image", "image"),
        ("jpeg", "image"),
        ("text", "text"),
        ("audio", "audio"),
        ("video", "video"),
        ("pdf", "pdf"),
        ("other", "other"),
        ("trial", "other"),
    ],
)
def test_kind_comes_from_decoders_not_names(media: Media, name: str, kind: str) -> None:
    assert detect(getattr(media, name)).kind == kind


def test_misleading_names_do_not_matter(media: Media, tmp_path: Path) -> None:
    # The same bytes under the "right" names give the same kinds as under the misleading ones.
    for src, name in (
        (media.image, "a.png"),
        (media.audio, "a.wav"),
        (media.pdf, "a.pdf"),
        (media.other, "a.mp4"),
    ):
        renamed = tmp_path / name
        renamed.write_bytes(src.read_bytes())
        assert detect(renamed) == detect(src)


def test_binary_noise_named_like_media_is_other(tmp_path: Path) -> None:
    noise = tmp_path / "movie.mp4"
    noise.write_bytes(bytes((i * 2654435761 >> 7) & 0xFF for i in range(200_000)))
    assert detect(noise).kind == "other"


def _check_limit(original: Path, made: list[previews.PreviewData]) -> None:
    limit = previews.size_limit(original.stat().st_size)
    for p in made:
        assert 0 < len(p.data) <= limit <= previews.MAX_PREVIEW


@pytest.mark.parametrize("name", ["image", "jpeg"])
def test_image_thumbnail(media: Media, name: str) -> None:
    path = getattr(media, name)
    made = previews.generate(path, detect(path), previews.size_limit(path.stat().st_size))
    assert [p.kind for p in made] == ["image"]
    with Image.open(io.BytesIO(made[0].data)) as im:
        assert im.format == "WEBP"
        assert max(im.size) <= 320
        assert (im.width, im.height) == (made[0].width, made[0].height)
    _check_limit(path, made)


def test_thumbnail_shrinks_to_fit_a_tight_limit(media: Media) -> None:
    with Image.open(media.jpeg) as im:
        rgb = im.convert("RGB")
    small = previews._webp_ladder(rgb, 3000)
    assert len(small.data) <= 3000
    with pytest.raises(PreviewTooLargeError):
        previews._webp_ladder(rgb, 40)


def test_text_excerpt(media: Media) -> None:
    made = previews.generate(media.text, detect(media.text), 65536)
    assert [p.kind for p in made] == ["text"]
    excerpt = made[0].data.decode("utf-8")
    whole = media.text.read_text("utf-8")
    assert whole.startswith(excerpt)
    assert 0 < len(made[0].data) <= min(2048, len(whole.encode()) // 4)


@given(st.text(min_size=0, max_size=400), st.integers(min_value=1, max_value=300))
def test_text_excerpt_is_a_valid_utf8_prefix(text: str, budget: int) -> None:
    cut = previews.text_excerpt(text, budget)
    assert text.startswith(cut)
    assert len(cut.encode("utf-8")) <= budget or cut == text


def test_pdf_first_page_and_excerpt(media: Media) -> None:
    made = previews.generate(media.pdf, detect(media.pdf), previews.size_limit(media.pdf.stat().st_size))
    assert [p.kind for p in made] == ["image", "text"]
    with Image.open(io.BytesIO(made[0].data)) as im:
        assert im.width <= 320
        assert im.height > im.width  # an A4 page
    assert made[1].data.decode("utf-8").startswith("Coffer sample document, page 1")
    _check_limit(media.pdf, made)


def _probe(data: bytes) -> tuple[str, str, float, int | None]:
    with av.open(io.BytesIO(data), mode="r") as c:
        stream = c.streams[0]
        duration = float(c.duration or 0) / 1_000_000
        height = c.streams.video[0].codec_context.height if c.streams.video else None
        return c.format.name, stream.codec_context.name, duration, height


def test_audio_clip_is_opus_in_webm(media: Media) -> None:
    made = previews.generate(
        media.audio, detect(media.audio), previews.size_limit(media.audio.stat().st_size)
    )
    assert [(p.kind, p.media_type) for p in made] == [("audio", "audio/webm")]
    fmt, codec, duration, _ = _probe(made[0].data)
    assert "webm" in fmt
    assert codec == "opus"
    assert 3.5 < duration < 4.5
    _check_limit(media.audio, made)


def test_audio_clip_is_cut_at_30_seconds(media: Media) -> None:
    path = media.long_audio
    made = previews.generate(path, detect(path), previews.size_limit(path.stat().st_size))
    _fmt, _codec, duration, _ = _probe(made[0].data)
    assert 29.0 < duration <= 30.2
    assert made[0].duration_ms is not None
    assert made[0].duration_ms <= 30_200
    _check_limit(path, made)


def test_video_trailer_is_vp8_webm_at_most_360p(media: Media) -> None:
    made = previews.generate(
        media.video, detect(media.video), previews.size_limit(media.video.stat().st_size)
    )
    assert [(p.kind, p.media_type) for p in made] == [("video", "video/webm")]
    fmt, codec, duration, height = _probe(made[0].data)
    assert "webm" in fmt
    assert codec == "vp8"
    assert height is not None
    assert height <= 360
    assert 1.5 < duration <= 2.5
    _check_limit(media.video, made)


def test_video_trailer_is_cut_at_10_seconds(tmp_path: Path) -> None:
    from center import samples

    long_video = samples.make_video(
        tmp_path / "long.mkv", seconds=12.0, width=320, height=240, fps=8, codec="mpeg4", fmt="matroska"
    )
    made = previews.generate(long_video, detect(long_video), previews.size_limit(long_video.stat().st_size))
    _fmt, _codec, duration, _ = _probe(made[0].data)
    assert duration <= 10.2
    _check_limit(long_video, made)


def test_other_kinds_have_no_generated_preview(media: Media) -> None:
    assert previews.generate(media.other, detect(media.other), 65536) == []


def test_trial_file_obeys_the_size_rule(media: Media, tmp_path: Path) -> None:
    trial = previews.trial_preview(media.trial, detect(media.trial), 65536)
    assert (trial.kind, trial.generated) == ("file", False)
    big = tmp_path / "big.dat"
    big.write_bytes(b"\x00\x01" * 40_000)
    with pytest.raises(PreviewTooLargeError):
        previews.trial_preview(big, detect(big), 65536)
