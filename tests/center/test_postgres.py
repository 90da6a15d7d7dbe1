"""The catalog on a real PostgreSQL 15 (started by the `postgres` fixture), served by a real uvicorn."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

from center.db.engine import make_engine, upgrade
from center.settings import CenterSettings
from tests.center.conftest import Media, Postgres, add, catalog_for, live_center

pytestmark = pytest.mark.integration


def test_migrations_items_and_api_on_postgres(postgres: Postgres, tmp_path: Path, media: Media) -> None:
    engine = make_engine(postgres.url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    assert {"items", "item_files", "previews", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()

    settings = CenterSettings(data_dir=tmp_path / "c", database_url=postgres.url)
    catalog = catalog_for(settings)
    first = add(catalog, media.image, title="Picture", price=1200)
    second = add(catalog, media.text, media.pdf, title="Reading", price=2500)
    catalog.remove_item(first)

    with (
        live_center(tmp_path / "c", "--database-url", postgres.url) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        assert http.get("/v1/health").json() == {"status": "ok", "database": "ok"}
        items = http.get("/v1/items").json()["items"]
        assert [i["item_id"] for i in items] == [second]
        detail = http.get(f"/v1/items/{second}").json()
        assert detail["bundle"] is True
        assert [f["name"] for f in detail["files"]] == ["paper.bin", "story.md"]
        # paper.bin (a PDF) sorts first: its first page and its text excerpt
        assert [p["kind"] for p in detail["previews"]] == ["image", "text"]
        assert http.get(detail["previews"][0]["url"]).headers["content-type"] == "image/webp"
        assert "Reading" in http.get("/").text
