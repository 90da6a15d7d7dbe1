"""The power-cut campaign (issue 4): SIGKILL the device process at every named step of the commit protocol and
the content store and at random moments, during credits and debits; sometimes cut the TPM too.

Size: COFFER_CAMPAIGN=N crash points (default 200); every named step is hit at least 5 times for credits and
for debits. The counts per step are printed and written to test-artifacts/device-campaign.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.device.harness import Campaign, CampaignError

pytestmark = [pytest.mark.swtpm, pytest.mark.slow]

DEFAULT_POINTS = 200


def test_power_cut_campaign(tmp_path: Path, swtpm_factory, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    target = int(os.environ.get("COFFER_CAMPAIGN", DEFAULT_POINTS))
    campaign = Campaign(
        tmp_path, lambda: swtpm_factory(), target=target, seed=int(os.environ.get("COFFER_SEED", 4))
    )
    try:
        report = campaign.run()
    except CampaignError:
        print(json.dumps(campaign.report(), indent=1))
        raise
    out = Path(__file__).resolve().parents[2] / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "device-campaign.json").write_text(json.dumps(report, indent=1) + "\n")
    with capsys.disabled():
        print("\npower-cut campaign:", json.dumps(report, indent=1))
    assert report["crash_points"] >= target
    assert campaign.missing() == []
    assert report["tpm_kills"] >= 1
