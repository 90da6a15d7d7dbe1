"""`center` CLI: item add|list|show|remove, keys show, db upgrade; one-line errors, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from center.__main__ import main
from center.blobs import LocalBlobStore
from center.db.engine import make_engine, session_factory
from center.errors import DatabaseUnavailableError
from center.services.catalog import CatalogService, NewItem, parse_price
from tests.center.conftest import Media


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _rows(data: Path) -> int:
    engine = create_engine(f"sqlite:///{data / 'center.db'}")
    with engine.connect() as conn:
        count = int(conn.execute(text("SELECT count(*) FROM items")).scalar_one())
    engine.dispose()
    return count


def _blobs(data: Path) -> list[Path]:
    return [p for p in (data / "blobs").rglob("*") if p.is_file()] if (data / "blobs").exists() else []


def test_add_list_show_remove(capsys: pytest.CaptureFixture[str], tmp_path: Path, media: Media) -> None:
    data = tmp_path / "c"
    code, out, err = run(
        capsys,
        "item",
        "add",
        str(media.image),
        "--title",
        "Picture",
        "--price",
        "500",
        "--currency",
        "JPY",
        "--description",
        "Nice",
        "--data",
        str(data),
        "--json",
    )
    assert code == 0, err
    item = json.loads(out)
    assert item["price"] == {"amount": 500, "currency": "JPY"}
    assert item["content_length"] == media.image.stat().st_size
    assert item["media_kind"] == "image"
    assert item["previews"][0]["kind"] == "image"

    code, out, _ = run(capsys, "item", "list", "--data", str(data), "--json")
    assert code == 0
    assert [i["item_id"] for i in json.loads(out)] == [item["item_id"]]
    code, out, _ = run(capsys, "item", "list", "--data", str(data))
    assert code == 0
    assert item["item_id"] in out
    code, out, _ = run(capsys, "item", "show", item["item_id"], "--data", str(data))
    assert code == 0
    assert "Picture" in out
    assert "preview  0: image image/webp" in out
    code, out, _ = run(capsys, "item", "remove", item["item_id"], "--data", str(data))
    assert code == 0
    code, out, err = run(capsys, "item", "show", item["item_id"], "--data", str(data))
    assert code == 2
    assert err.count("\n") == 1
    assert "no item" in err


@pytest.mark.parametrize(
    ("price", "currency"),
    [
        ("-5", "JPY"),
        ("5.0", "JPY"),
        ("1e3", "JPY"),
        ("abc", "JPY"),
        (" 5", "JPY"),
        ("05", "JPY"),
        ("9007199254740992", "JPY"),
        ("500", "jpy"),
        ("500", "JPYX"),
        ("500", ""),
    ],
)
def test_bad_price_is_one_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, media: Media, price: str, currency: str
) -> None:
    data = tmp_path / "c"
    code, _out, err = run(
        capsys,
        "item",
        "add",
        str(media.text),
        "--title",
        "T",
        "--price",
        price,
        "--currency",
        currency,
        "--data",
        str(data),
    )
    assert code == 2
    assert err.startswith("center: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert not _blobs(data)


def test_unpreviewable_needs_a_trial_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, media: Media
) -> None:
    data = tmp_path / "c"
    run(capsys, "db", "upgrade", "--data", str(data))
    code, _, err = run(
        capsys,
        "item",
        "add",
        str(media.other),
        "--title",
        "Archive",
        "--price",
        "100",
        "--currency",
        "USD",
        "--data",
        str(data),
    )
    assert code == 2
    assert "--preview" in err
    assert err.count("\n") == 1
    assert _rows(data) == 0
    assert not _blobs(data)

    code, out, err = run(
        capsys,
        "item",
        "add",
        str(media.other),
        "--title",
        "Archive",
        "--price",
        "100",
        "--currency",
        "USD",
        "--preview",
        str(media.trial),
        "--data",
        str(data),
        "--json",
    )
    assert code == 0, err
    previews = json.loads(out)["previews"]
    assert [(p["kind"], p["generated"]) for p in previews] == [("file", False)]
    assert _rows(data) == 1


def test_trial_over_the_size_rule_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, media: Media
) -> None:
    data = tmp_path / "c"
    run(capsys, "db", "upgrade", "--data", str(data))
    code, _, err = run(
        capsys,
        "item",
        "add",
        str(media.trial),
        "--title",
        "Tiny",
        "--price",
        "1",
        "--currency",
        "EUR",
        "--preview",
        str(media.other),
        "--data",
        str(data),
    )
    assert code == 2
    assert "limit" in err
    assert _rows(data) == 0
    assert not _blobs(data)


def test_missing_file_and_missing_data_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COFFER_CENTER_DATA_DIR", raising=False)
    code, _, err = run(
        capsys,
        "item",
        "add",
        str(tmp_path / "nope"),
        "--title",
        "T",
        "--price",
        "1",
        "--currency",
        "JPY",
        "--data",
        str(tmp_path / "c"),
    )
    assert code == 2
    assert "not a readable file" in err
    code, _, err = run(capsys, "item", "list")
    assert code == 2
    assert "--data" in err
    assert err.count("\n") == 1
    code, _, err = run(capsys, "item", "add", "--title", "T")
    assert code == 2
    assert err.count("\n") == 1


def test_keys_show_prints_the_root_fingerprint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from center.keys import load_or_create

    keys = load_or_create(tmp_path / "c" / "keys", "http://127.0.0.1:1")
    code, out, _ = run(capsys, "keys", "show", "--data", str(tmp_path / "c"))
    assert code == 0
    assert out.strip() == keys.root_fingerprint
    code, out, _ = run(capsys, "keys", "show", "--data", str(tmp_path / "c"), "--json")
    assert json.loads(out)["root_fingerprint"] == keys.root_fingerprint
    code, _, err = run(capsys, "keys", "show", "--data", str(tmp_path / "empty"))
    assert code == 1
    assert err.count("\n") == 1


def test_serve_refuses_plain_http_off_loopback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "serve", "--data", str(tmp_path / "c"), "--listen", "0.0.0.0:8443")
    assert code == 1
    assert "plain HTTP" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_failed_commit_leaves_no_orphan_blobs(tmp_path: Path, media: Media) -> None:
    """Blobs are written first; when the row cannot be committed they are deleted again."""
    engine = make_engine(f"sqlite:///{tmp_path / 'unmigrated.db'}")  # no tables: the commit fails
    blobs = LocalBlobStore(tmp_path / "blobs")
    catalog = CatalogService(session_factory(engine), blobs, tmp_path / "tmp")
    with pytest.raises(DatabaseUnavailableError):
        catalog.add_item(NewItem([media.image, media.text], "T", parse_price(1, "JPY")))
    assert not _blobs(tmp_path)
