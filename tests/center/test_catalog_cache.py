"""The catalog's page cache on SQLite asks `PRAGMA data_version` (center.db.changes) before its version query:
while nothing was committed anywhere, a listing runs no SQL on the server's pool; any commit, by this service,
another engine or another process, is seen by the next listing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text

from center.db.changes import commit_watch
from center.services.catalog import CatalogService
from center.settings import CenterSettings
from tests.center.conftest import Media, add, catalog_for

REPO = Path(__file__).resolve().parents[2]


class Statements:
    """Counts the SQL statements an engine runs."""

    def __init__(self, catalog: CatalogService) -> None:
        self.engine = catalog._sessions.kw["bind"]
        self.count = 0
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: object) -> None:
        self.count += 1

    def during(self, action: object) -> int:
        before = self.count
        assert callable(action)
        action()
        return self.count - before


@pytest.fixture
def watched(settings: CenterSettings) -> tuple[CatalogService, Statements]:
    catalog = catalog_for(settings)
    return catalog, Statements(catalog)


def titles(catalog: CatalogService) -> list[str]:
    return [i.title for i in catalog.list_items().items]


def test_an_unchanged_catalog_is_listed_without_sql(
    watched: tuple[CatalogService, Statements], media: Media
) -> None:
    catalog, statements = watched
    add(catalog, media.text, title="First")
    first = catalog.listing()
    assert statements.during(catalog.listing) == 0  # the stamp did not move: the page as it was
    assert catalog.listing() is first


def test_a_commit_by_the_same_engine_is_seen_at_once(
    watched: tuple[CatalogService, Statements], media: Media
) -> None:
    catalog, _ = watched
    add(catalog, media.text, title="First")
    assert titles(catalog) == ["First"]
    add(catalog, media.image, title="Second")
    assert titles(catalog) == ["First", "Second"]
    catalog.remove_item(catalog.list_items().items[0].item_id)
    assert titles(catalog) == ["Second"]


def test_an_unrelated_commit_costs_one_version_query_not_a_new_page(
    watched: tuple[CatalogService, Statements], media: Media
) -> None:
    catalog, statements = watched
    add(catalog, media.text, title="First")
    page = catalog.listing()
    with statements.engine.begin() as conn:  # a write elsewhere (orders, payments) moves data_version
        conn.execute(text("CREATE TABLE unrelated (x INTEGER)"))
    assert statements.during(catalog.listing) == 1  # the version query, which says: the same catalog
    assert catalog.listing() is page
    assert statements.during(catalog.listing) == 0


def test_a_commit_by_another_process_is_seen_at_once(
    watched: tuple[CatalogService, Statements], settings: CenterSettings, media: Media
) -> None:
    catalog, _ = watched
    add(catalog, media.text, title="First")
    assert titles(catalog) == ["First"]
    database = settings.data_dir / "center.db"
    assert database.is_file()
    # another process (as `center item remove` would be) takes the item off the catalog
    subprocess.run(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
         "c.execute('UPDATE items SET removed_at = 1'); c.commit()", str(database)],
        check=True, cwd=REPO,
    )  # fmt: skip
    assert titles(catalog) == []


def test_no_watch_where_it_could_not_see_commits(tmp_path: Path) -> None:
    memory = create_engine("sqlite://")
    postgres = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connected
    missing = create_engine(f"sqlite:///{tmp_path / 'absent.db'}")
    try:
        assert commit_watch(memory) is None  # private to each connection: a watch would see nothing
        assert commit_watch(postgres) is None
        assert commit_watch(missing) is None
    finally:
        for engine in (memory, postgres, missing):
            engine.dispose()
