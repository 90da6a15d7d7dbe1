"""The storefront in headless Debian Chromium (Playwright): images decode, audio and video load metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from center.settings import CenterSettings
from tests.center.conftest import Media, add, catalog_for, live_center

pytestmark = [pytest.mark.integration, pytest.mark.browser]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

MEDIA_READY = """() => {
  const media = [...document.querySelectorAll('audio, video')];
  return media.length > 0 && media.every(m => m.readyState >= 1 && !m.error);
}"""
IMAGES_READY = """() => {
  const imgs = [...document.querySelectorAll('img')];
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def test_storefront_plays_in_chromium(tmp_path: Path, media: Media, artifacts: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    data = tmp_path / "c"
    catalog = catalog_for(CenterSettings(data_dir=data))
    add(catalog, media.image, title="A picture", description="Gradient & shapes")
    add(catalog, media.text, title="A story")
    add(catalog, media.audio, title="A tune")
    add(catalog, media.video, title="A clip")
    add(catalog, media.pdf, title="A paper")
    video_item = add(catalog, media.other, media.video, title="A bundle")
    add(catalog, media.other, title="An archive", preview=media.trial)

    with live_center(data) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            csp_violations: list[str] = []
            page.on(
                "console", lambda m: csp_violations.append(m.text) if "Content Security" in m.text else None
            )
            page.goto(server.url + "/", wait_until="load")
            page.wait_for_function(IMAGES_READY, timeout=30_000)
            page.wait_for_function(MEDIA_READY, timeout=30_000)
            counts = page.evaluate("""() => ({
                img: document.querySelectorAll('img').length,
                audio: document.querySelectorAll('audio').length,
                video: document.querySelectorAll('video').length,
                widths: [...document.querySelectorAll('img')].map(i => i.naturalWidth),
                states: [...document.querySelectorAll('audio, video')].map(m => m.readyState),
                durations: [...document.querySelectorAll('audio, video')].map(m => m.duration),
            })""")
            assert counts["img"] == 2  # the picture and the PDF's first page
            assert counts["audio"] == 1
            assert counts["video"] == 2  # the clip and the bundle's first previewable member
            assert all(w > 0 for w in counts["widths"])
            assert all(s >= 1 for s in counts["states"])
            assert all(d > 0 for d in counts["durations"])
            assert page.locator("pre.excerpt").count() == 2  # the story and the PDF's text
            assert page.locator("a.trial").count() == 1
            assert csp_violations == []
            page.screenshot(path=str(artifacts / "storefront.png"), full_page=True)

            page.goto(f"{server.url}/items/{video_item}", wait_until="load")
            page.wait_for_function(MEDIA_READY, timeout=30_000)
            page.screenshot(path=str(artifacts / "item.png"), full_page=True)
        finally:
            browser.close()
    assert (artifacts / "storefront.png").stat().st_size > 0
