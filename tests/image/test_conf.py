"""image/coffer.conf.in as the device service reads it (no image needed): what an image built with and without
`CENTER_ROOT` does about the center root."""

from __future__ import annotations

from pathlib import Path

from device_os.api.settings import load_settings

TEMPLATE = Path(__file__).parents[2] / "image" / "coffer.conf.in"


def _conf(tmp_path: Path, center_root: str) -> Path:
    conf = tmp_path / "coffer.conf"
    conf.write_text(TEMPLATE.read_text().replace("@CENTER_ROOT@", center_root))
    return conf


def test_an_image_without_center_root_refuses_enrollment(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "")
    settings = load_settings(environ={"COFFER_DEVICE_DATA_DIR": str(tmp_path)}, config_file=conf)
    assert settings.pinned_root_fingerprint is None
    assert settings.root_pinning() == "none"
    assert settings.listen == "192.168.7.1:8470"


def test_an_image_with_center_root_pins_it(tmp_path: Path) -> None:
    fingerprint = "ab" * 32
    settings = load_settings(
        environ={"COFFER_DEVICE_DATA_DIR": str(tmp_path)}, config_file=_conf(tmp_path, fingerprint)
    )
    assert settings.pinned_root_fingerprint == fingerprint
    assert settings.root_pinning() == "pinned"
