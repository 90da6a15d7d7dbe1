"""Shared pieces of the benchmarks: latency statistics and the real center (tests/support/center.py) that
enrolls the benchmarked device, funds it and signs its orders."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.center import Account, RealCenter, enroll, ok, shared_center


def latency_ms(samples: list[float], *, tail: int = 99, digits: int = 3) -> dict[str, float]:
    """Median, the `tail` percentile and the maximum of samples in seconds, as milliseconds."""
    ordered = sorted(samples)
    high = ordered[min(len(ordered) - 1, int(tail / 100 * len(ordered)))]
    return {
        "median": round(statistics.median(ordered) * 1000, digits),
        f"p{tail}": round(high * 1000, digits),
        "max": round(ordered[-1] * 1000, digits),
    }


@contextlib.contextmanager
def real_center(work: Path, ek_ca: Path) -> Iterator[tuple[RealCenter, httpx.Client]]:
    """`center serve` on loopback trusting `ek_ca` (the swtpm template's CA), and a client for it."""
    with shared_center(work, ek_ca) as center, center.client() as http:
        yield center, http


def enroll_and_fund(
    center: RealCenter, http: httpx.Client, device: httpx.Client, token: str, funds: int
) -> Account:
    """Flow 3 through the real center, then a prepaid credit it issued, redeemed and applied (flow 6)."""
    account = enroll(http, device, token)
    if funds:
        credit = account.prepaid(center, funds)
        ok(device.post("/v1/credits", json={"credit": credit}, headers={"Authorization": f"Bearer {token}"}))
    return account
