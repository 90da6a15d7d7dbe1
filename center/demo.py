"""A sample catalog for `make demo`: an image, a text, an audio clip and a short video (and a PDF).

`build_demo_catalog(data_dir)` generates the media with Pillow and PyAV (no numpy), registers them through the
catalog service (keys are created too) and returns the item ids; `center serve --data DIR` then serves them.
Idempotent: a data directory that already holds items is left as it is.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from center import samples
from center.blobs import LocalBlobStore
from center.db.engine import make_engine, session_factory, upgrade
from center.keys import load_or_create
from center.services.catalog import CatalogService, NewItem, parse_price
from center.settings import DEFAULT_LISTEN, CenterSettings

SAMPLES = (
    ("image", "Sunset gradient", 300, "A 1200×800 picture; the storefront shows a 320 px WebP thumbnail."),
    ("text", "A short story", 150, "A Markdown story; the storefront shows its first lines."),
    ("audio", "Rising tone", 200, "A 40 s synthesized tune; the preview is its first 30 s as Opus."),
    ("video", "Moving shapes", 500, "A 12 s MPEG-4 clip; the trailer is its first 10 s as VP8 WebM."),
    ("pdf", "Sample paper", 250, "A three-page PDF; the preview is its first page and an excerpt."),
)


def _make(kind: str, directory: Path) -> Path:
    if kind == "image":
        return samples.make_image(directory / "sunset.png")
    if kind == "text":
        return samples.make_text(directory / "story.md")
    if kind == "audio":
        return samples.make_wav(directory / "tone.wav", seconds=40.0, rate=16000)
    if kind == "video":
        return samples.make_video(directory / "shapes.mp4", seconds=12.0, width=640, height=480, fps=24)
    return samples.make_pdf(directory / "paper.pdf")


def build_demo_catalog(data_dir: Path, listen: str = DEFAULT_LISTEN) -> list[str]:
    """Create keys and the sample items in `data_dir`; returns the item ids (the existing ones if built)."""
    settings = CenterSettings(data_dir=data_dir, listen=listen)
    settings.prepare_data_dir()
    load_or_create(settings.keys_dir, settings.issuer_url())
    engine = make_engine(settings.sqlalchemy_url())
    try:
        upgrade(engine)
        catalog = CatalogService(
            session_factory(engine), LocalBlobStore(settings.blobs_dir), settings.data_dir / "tmp"
        )
        existing = catalog.list_items(100).items
        if existing:
            return [i.item_id for i in existing]
        ids = []
        with tempfile.TemporaryDirectory(prefix="coffer-demo-") as tmp:
            for kind, title, price, description in SAMPLES:
                path = _make(kind, Path(tmp))
                item = catalog.add_item(NewItem([path], title, parse_price(price, "JPY"), description))
                ids.append(item.item_id)
        return ids
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """`python -m center.demo DATA_DIR [HOST:PORT]`: build the catalog and say how to serve and browse it."""
    args = sys.argv[1:] if argv is None else argv
    data_dir = Path(args[0]) if args else Path(".demo/center")
    listen = args[1] if len(args) > 1 else DEFAULT_LISTEN
    ids = build_demo_catalog(data_dir, listen)
    url = CenterSettings(data_dir=data_dir, listen=listen).issuer_url()
    print(f"center demo: {len(ids)} items in {data_dir}")
    print(f"center demo: serve with: center serve --data {data_dir} --listen {listen}")
    print(f"center demo: then browse {url}/ (JSON: {url}/v1/items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
