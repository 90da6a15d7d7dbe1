"""Whole-flow fixtures: the center's generated media and engine clean-up (tests/center/conftest.py)."""

from __future__ import annotations

from tests.center.conftest import _dispose_engines, media, postgres  # noqa: F401 - fixtures re-used
