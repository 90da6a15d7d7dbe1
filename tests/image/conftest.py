"""Fixtures of the image tiers: the built image unpacked once per session (tests/image/artifacts.py).

The `image` and `qemu` tiers need `make image` first; without a built image they fail (never skip) with
`ImageMissing`, so a run that forgot the build cannot pass."""

from __future__ import annotations

import os

import pytest

from tests.image.artifacts import Image, unpack


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return unpack(tmp_path_factory.mktemp("image"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The image tiers run when asked for: `make test` and `make image-test` build the image first and set
    COFFER_IMAGE_TESTS=1; `-m "image or qemu"` asks explicitly. Any other run leaves them out (deselected,
    reported as such, never counted as passed): a run without a built image cannot pass them by accident."""
    expression = config.getoption("markexpr") or ""
    if os.environ.get("COFFER_IMAGE_TESTS") == "1" or "image" in expression or "qemu" in expression:
        return
    chosen = [i for i in items if not (i.get_closest_marker("image") or i.get_closest_marker("qemu"))]
    dropped = [i for i in items if i not in chosen]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = chosen
