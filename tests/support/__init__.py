"""Test support code shared by the test tiers (swtpm fixtures live in tests/support/swtpm.py)."""
